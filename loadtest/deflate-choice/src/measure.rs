//! The measurements: heap held per compressor and decompressor, messages/s and ratio, inflate
//! speed, and where compression stops paying. Each returns numbers; `main.rs` prints them.

use crate::codec::{Lib, Setting};
use crate::counting::live_bytes;
use std::hint::black_box;

/// Heap bytes a codec holds: once created, and once it has handled its first message.
#[derive(Clone, Copy, Debug)]
pub struct Held {
    pub created: usize,
    pub after_first: usize,
}

/// A buffer large enough for any compressed form of a message of `len` bytes (stored blocks
/// cost 5 bytes per 16 KiB at worst; the flush adds a few).
pub fn out_buffer(len: usize) -> Vec<u8> {
    vec![0; len + len / 8 + 1024]
}

/// The heap a compressor holds. Buffers the caller owns are allocated before the first
/// reading, so only the compressor itself (boxed, as a connection would hold it) is counted.
pub fn compressor_held(lib: Lib, setting: Setting, first: &[u8]) -> Held {
    let mut out = out_buffer(first.len());
    let before = live_bytes();
    let mut c = lib.deflater(setting);
    let created = live_bytes() - before;
    black_box(c.compress(first, &mut out));
    let after_first = live_bytes() - before;
    drop(c);
    Held {
        created,
        after_first,
    }
}

/// The heap a decompressor holds, the first message coming from C zlib at the same window.
pub fn decompressor_held(lib: Lib, window_bits: u8, first: &[u8]) -> Held {
    let mut payload = out_buffer(first.len());
    let mut out = out_buffer(first.len());
    let setting = Setting {
        window_bits,
        ..Setting::default_at(6)
    };
    let n = Lib::Zlib.deflater(setting).compress(first, &mut payload);
    let before = live_bytes();
    let mut d = lib.inflater(window_bits);
    let created = live_bytes() - before;
    let m = d.decompress(&payload[..n], &mut out);
    assert_eq!(
        &out[..m],
        first,
        "{} inflated the first message wrongly",
        lib.name()
    );
    let after_first = live_bytes() - before;
    drop(d);
    Held {
        created,
        after_first,
    }
}

/// The CPU time this thread has used, in seconds. Rates are per CPU-second rather than per
/// wall-clock second: on a shared machine the time the thread waits for its core is not the
/// library's.
pub fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant libc knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// One timed run: messages per CPU-second and the bytes before and after.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub per_sec: f64,
    pub original: u64,
    pub compressed: u64,
}

/// Compresses `count` messages taken in turn from `messages` with a new compressor, kept
/// across messages (`takeover`) or reset after each.
pub fn compress_run(
    lib: Lib,
    setting: Setting,
    messages: &[Vec<u8>],
    count: usize,
    takeover: bool,
) -> Run {
    let longest = messages.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = out_buffer(longest);
    let mut c = lib.deflater(setting);
    let (mut original, mut compressed) = (0u64, 0u64);
    let start = thread_cpu_secs();
    for message in messages.iter().cycle().take(count) {
        let n = c.compress(message, &mut out);
        black_box(&out[..n]);
        if !takeover {
            c.reset();
        }
        original += message.len() as u64;
        compressed += n as u64;
    }
    let secs = thread_cpu_secs() - start;
    Run {
        per_sec: count as f64 / secs,
        original,
        compressed,
    }
}

/// Payloads of `count` messages taken in turn from `messages`, from C zlib at `setting`:
/// one stream (`takeover`) or one per message.
pub fn reference_payloads(
    messages: &[Vec<u8>],
    count: usize,
    setting: Setting,
    takeover: bool,
) -> Vec<Vec<u8>> {
    let longest = messages.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = out_buffer(longest);
    let mut c = Lib::Zlib.deflater(setting);
    let mut payloads = Vec::with_capacity(count);
    for message in messages.iter().cycle().take(count) {
        let n = c.compress(message, &mut out);
        payloads.push(out[..n].to_vec());
        if !takeover {
            c.reset();
        }
    }
    payloads
}

/// Inflates `payloads` (from [`reference_payloads`]) with a new decompressor, reset after
/// each message unless `takeover`; with `check`, every output is compared with its message.
pub fn inflate_run(
    lib: Lib,
    window_bits: u8,
    messages: &[Vec<u8>],
    payloads: &[Vec<u8>],
    takeover: bool,
    check: bool,
) -> Run {
    let longest = messages.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = out_buffer(longest);
    let mut d = lib.inflater(window_bits);
    let (mut original, mut compressed) = (0u64, 0u64);
    let start = thread_cpu_secs();
    for (payload, message) in payloads.iter().zip(messages.iter().cycle()) {
        let n = d.decompress(payload, &mut out);
        if check {
            assert_eq!(&out[..n], &message[..], "{} inflated wrongly", lib.name());
        }
        black_box(&out[..n]);
        if !takeover {
            d.reset();
        }
        original += n as u64;
        compressed += payload.len() as u64;
    }
    let secs = thread_cpu_secs() - start;
    Run {
        per_sec: payloads.len() as f64 / secs,
        original,
        compressed,
    }
}

/// The median of runs' rates.
pub fn median(runs: &[Run]) -> f64 {
    let mut rates: Vec<f64> = runs.iter().map(|r| r.per_sec).collect();
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}

/// The length of a server's (unmasked) frame carrying `payload` bytes: RFC 6455 §5.2.
pub fn frame_len(payload: usize) -> usize {
    let header = match payload {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    header + payload
}

/// Where compression without context takeover pays, over `messages`.
#[derive(Clone, Copy, Debug)]
pub struct Payoff {
    /// Compressed frames' bytes over the original frames' bytes, as a percentage.
    pub frame_ratio: f64,
    /// The share of messages whose compressed frame is at least 10% smaller, as a percentage.
    pub paying: f64,
}

/// Each message compressed on its own (no context takeover), as frames.
pub fn payoff(lib: Lib, setting: Setting, messages: &[Vec<u8>]) -> Payoff {
    let longest = messages.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = out_buffer(longest);
    let mut c = lib.deflater(setting);
    let (mut plain, mut packed, mut paying) = (0usize, 0usize, 0usize);
    for message in messages {
        let n = c.compress(message, &mut out);
        c.reset();
        let (before, after) = (frame_len(message.len()), frame_len(n));
        plain += before;
        packed += after;
        if after * 10 <= before * 9 {
            paying += 1;
        }
    }
    Payoff {
        frame_ratio: 100.0 * packed as f64 / plain.max(1) as f64,
        paying: 100.0 * paying as f64 / messages.len().max(1) as f64,
    }
}

/// Compressed over original bytes (payloads, percent) with context takeover, one pass.
pub fn takeover_ratio(lib: Lib, setting: Setting, messages: &[Vec<u8>]) -> f64 {
    let longest = messages.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = out_buffer(longest);
    let mut c = lib.deflater(setting);
    let (mut plain, mut packed) = (0usize, 0usize);
    for message in messages {
        packed += c.compress(message, &mut out);
        plain += message.len();
    }
    100.0 * packed as f64 / plain.max(1) as f64
}

/// Every compressor's payloads inflated by every decompressor that can read them, compared
/// with the messages; returns the number of messages checked.
pub fn cross_check(messages: &[Vec<u8>], setting: Setting, takeover: bool) -> usize {
    let longest = messages.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = out_buffer(longest);
    let mut checked = 0;
    // A library that cannot shrink its window writes distances up to 32 KiB, which only a
    // 15-bit reader accepts (so libdeflate cannot serve a peer that asked for less).
    let makers = Lib::ALL
        .into_iter()
        .filter(|l| l.streams() || !takeover)
        .filter(|l| l.sets_window_bits() || setting.window_bits == 15);
    for maker in makers {
        let mut c = maker.deflater(setting);
        let mut payloads = Vec::with_capacity(messages.len());
        for message in messages {
            let n = c.compress(message, &mut out);
            payloads.push(out[..n].to_vec());
            if !takeover {
                c.reset();
            }
        }
        for reader in Lib::ALL.into_iter().filter(|l| l.streams() || !takeover) {
            // miniz_oxide and libdeflate read any window; the others get the sender's.
            let mut d = reader.inflater(setting.window_bits);
            for (payload, message) in payloads.iter().zip(messages) {
                let n = d.decompress(payload, &mut out);
                assert!(
                    out[..n] == message[..],
                    "{} could not read {} ({setting:?}, takeover {takeover})",
                    reader.name(),
                    maker.name()
                );
                if !takeover {
                    d.reset();
                }
                checked += 1;
            }
        }
    }
    checked
}
