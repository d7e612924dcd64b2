//! Which deflate library permessage-deflate (RFC 7692) should be built on: heap per
//! compressor and decompressor, messages/s and ratio on market-data-like JSON, inflate speed,
//! and the message size under which compression stops paying. Prints Markdown tables.
//!
//! Run pinned, in release: `taskset -c 1 cargo run --release` (`-- --quick` for a smoke run,
//! `-- --samples` to print one message of each size).

mod c_libs;
mod codec;
mod counting;
mod market;
mod measure;
mod rust_libs;

use codec::{Lib, Setting};
use measure::{Held, Run};

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// The seed of every message set: the same bytes on every run.
const SEED: u64 = 0x7692_0001;

/// The message sizes of the speed tables.
const SIZES: [usize; 5] = [64, 256, 1024, 4096, 16384];

/// The sizes around the threshold.
const SMALL_SIZES: [usize; 13] = [32, 48, 64, 80, 96, 112, 128, 160, 192, 256, 384, 512, 1024];

/// The windows measured for memory.
const WINDOWS: [u8; 3] = [9, 12, 15];

/// How much work one timed run does.
struct Budget {
    runs: usize,
    /// Input bytes per run (at least `MIN_MESSAGES` messages).
    bytes: usize,
    /// Distinct messages: at least this many bytes of them, cycled.
    distinct_bytes: usize,
}

const MIN_MESSAGES: usize = 256;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if std::env::args().any(|a| a == "--samples") {
        for size in SMALL_SIZES.iter().chain(&SIZES[3..]) {
            let message = market::messages(SEED, *size, 1).remove(0);
            println!("{size}: {}", String::from_utf8_lossy(&message));
        }
        return;
    }
    let budget = if quick {
        Budget {
            runs: 1,
            bytes: 256 << 10,
            distinct_bytes: 128 << 10,
        }
    } else {
        Budget {
            runs: 5,
            bytes: 2 << 20,
            distinct_bytes: 1 << 20,
        }
    };

    println!(
        "<!-- deflate-choice output; {} -->",
        if quick { "quick run" } else { "full run" }
    );
    println!(
        "C zlib {} (libz-sys, bundled); load average at start: {}",
        c_libs::zlib_version(),
        loadavg()
    );
    println!();

    let sets: Vec<(usize, Vec<Vec<u8>>)> = SIZES
        .iter()
        .map(|&size| (size, market::messages(SEED, size, distinct(size, &budget))))
        .collect();

    check_all(&sets);
    memory_tables(&sets);
    // Level 2 too: zlib-rs' level 1 is zlib-ng's "quick" strategy (fixed Huffman codes only),
    // its level 2 the first with dynamic codes.
    for level in [1, 2, 6] {
        for takeover in [true, false] {
            compress_table(&sets, level, takeover, &budget);
        }
    }
    for takeover in [true, false] {
        inflate_table(&sets, takeover, &budget);
    }
    payoff_table(quick);
    window_table(&sets);
    println!("load average at end: {}", loadavg());
}

fn distinct(size: usize, budget: &Budget) -> usize {
    (budget.distinct_bytes / size).max(64)
}

fn per_run(size: usize, budget: &Budget) -> usize {
    (budget.bytes / size).max(MIN_MESSAGES)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn mean_len(messages: &[Vec<u8>]) -> usize {
    messages.iter().map(Vec::len).sum::<usize>() / messages.len().max(1)
}

/// Before any figure: every library reads every other's payloads, in both modes, at the
/// default window and at the smallest state; flate2's zlib-rs backend writes the bytes
/// zlib-rs does.
fn check_all(sets: &[(usize, Vec<Vec<u8>>)]) {
    let mut checked = 0;
    for (_, messages) in sets {
        let some = &messages[..messages.len().min(200)];
        for level in [1, 6] {
            for takeover in [true, false] {
                checked += measure::cross_check(some, Setting::default_at(level), takeover);
                let small = Setting {
                    level,
                    window_bits: 9,
                    mem_level: 1,
                };
                checked += measure::cross_check(some, small, takeover);
            }
            for window_bits in WINDOWS {
                let setting = Setting {
                    level,
                    window_bits,
                    mem_level: 8,
                };
                let a = measure::takeover_ratio(Lib::Flate2ZlibRs, setting, some);
                let b = measure::takeover_ratio(Lib::ZlibRs, setting, some);
                assert_eq!(a, b, "flate2 + zlib-rs and zlib-rs differ at {setting:?}");
            }
        }
    }
    println!(
        "Round trips checked: {checked} (every compressor's payloads through every decompressor, both modes, levels 1 and 6, windows 15 and 9)."
    );
    println!();
}

fn memory_tables(sets: &[(usize, Vec<Vec<u8>>)]) {
    let first = &sets
        .iter()
        .find(|(size, _)| *size == 1024)
        .map(|(_, m)| m.as_slice())
        .unwrap_or(&[])[0];
    println!(
        "### Heap held per compressor (level 6; first message {} B)",
        first.len()
    );
    println!();
    println!("| library | window bits | memLevel | after new (B) | after the first message (B) |");
    println!("|---|---:|---:|---:|---:|");
    for lib in Lib::ALL {
        let mems: &[u8] = if lib.sets_mem_level() { &[1, 8] } else { &[8] };
        let windows: &[u8] = if lib.sets_window_bits() {
            &WINDOWS
        } else {
            &[15]
        };
        let levels: &[u32] = if lib == Lib::Libdeflate {
            &[1, 6, 12]
        } else {
            &[6]
        };
        for &level in levels {
            for &window_bits in windows {
                for &mem_level in mems {
                    let setting = Setting {
                        level,
                        window_bits,
                        mem_level,
                    };
                    let held = measure::compressor_held(lib, setting, first);
                    let (w, m) = labels(lib, setting);
                    let name = if lib == Lib::Libdeflate {
                        format!("{} level {level}", lib.name())
                    } else {
                        lib.name().to_owned()
                    };
                    row_held(&name, &w, &m, held);
                }
            }
        }
    }
    println!();
    println!(
        "### Heap held per decompressor (first message {} B, from C zlib at the same window)",
        first.len()
    );
    println!();
    println!("| library | window bits | after new (B) | after the first message (B) |");
    println!("|---|---:|---:|---:|");
    for lib in Lib::ALL {
        let windows: &[u8] = if lib.sets_window_bits() {
            &WINDOWS
        } else {
            &[15]
        };
        for &window_bits in windows {
            let held = measure::decompressor_held(lib, window_bits, first);
            let (w, _) = labels(
                lib,
                Setting {
                    window_bits,
                    ..Setting::default_at(6)
                },
            );
            println!(
                "| {} | {w} | {} | {} |",
                lib.name(),
                thousands(held.created),
                thousands(held.after_first)
            );
        }
    }
    println!();
}

fn labels(lib: Lib, setting: Setting) -> (String, String) {
    let w = if lib.sets_window_bits() {
        setting.window_bits.to_string()
    } else if lib.streams() {
        "15 (fixed)".to_owned()
    } else {
        "— (whole message)".to_owned()
    };
    let m = if lib.sets_mem_level() {
        setting.mem_level.to_string()
    } else if lib == Lib::Flate2ZlibRs {
        "8 (fixed)".to_owned()
    } else {
        "—".to_owned()
    };
    (w, m)
}

fn row_held(name: &str, w: &str, m: &str, held: Held) {
    println!(
        "| {name} | {w} | {m} | {} | {} |",
        thousands(held.created),
        thousands(held.after_first)
    );
}

/// The rows of the speed tables: every library at zlib's defaults, then the two that can
/// shrink their state at the smallest state.
fn speed_rows(level: u32) -> Vec<(Lib, Setting, String)> {
    let mut rows: Vec<(Lib, Setting, String)> = Lib::ALL
        .into_iter()
        .map(|lib| {
            let setting = Setting::default_at(level);
            let label = match lib {
                Lib::Flate2Miniz | Lib::Libdeflate => lib.name().to_owned(),
                _ => format!("{} w15 m8", lib.name()),
            };
            (lib, setting, label)
        })
        .collect();
    for lib in [Lib::ZlibRs, Lib::Zlib] {
        rows.push((
            lib,
            Setting {
                level,
                window_bits: 9,
                mem_level: 1,
            },
            format!("{} w9 m1", lib.name()),
        ));
    }
    rows
}

fn size_header(sets: &[(usize, Vec<Vec<u8>>)], first: &str) {
    let mut head = format!("| {first} |");
    let mut rule = String::from("|---|");
    for (size, messages) in sets {
        head += &format!(" {} (mean {} B) |", size_label(*size), mean_len(messages));
        rule += "---:|";
    }
    println!("{head}\n{rule}");
}

/// Runs `row_count` measurements `runs` times each, interleaved (run 1 of every row, then run
/// 2, ...), so that a change in the machine's load falls on every row alike.
fn interleaved(
    row_count: usize,
    runs: usize,
    mut one: impl FnMut(usize, usize) -> Option<Run>,
) -> Vec<Vec<Run>> {
    let mut results = vec![Vec::with_capacity(runs); row_count];
    for run in 0..runs {
        for (row, result) in results.iter_mut().enumerate() {
            if let Some(r) = one(row, run) {
                result.push(r);
            }
        }
    }
    results
}

fn compress_table(sets: &[(usize, Vec<Vec<u8>>)], level: u32, takeover: bool, budget: &Budget) {
    let mode = if takeover {
        "context takeover (one compressor across messages)"
    } else {
        "no context takeover (reset after each message)"
    };
    println!(
        "### Deflate, level {level}, {mode}: messages per CPU-second (median of {}) · compressed/original bytes",
        budget.runs
    );
    println!();
    println!("Load average before: {}", loadavg());
    println!();
    size_header(sets, "library");
    let rows = speed_rows(level);
    let mut cells = vec![String::new(); rows.len()];
    for (size, messages) in sets {
        let results = interleaved(rows.len(), budget.runs, |row, _| {
            let (lib, setting, _) = &rows[row];
            (!takeover || lib.streams()).then(|| {
                measure::compress_run(*lib, *setting, messages, per_run(*size, budget), takeover)
            })
        });
        for ((cell, runs), (_, _, label)) in cells.iter_mut().zip(&results).zip(&rows) {
            let Some(first) = runs.first() else {
                *cell += " — |";
                continue;
            };
            assert!(
                runs.iter().all(|r| r.compressed == first.compressed),
                "{label} is not deterministic"
            );
            eprintln!(
                "deflate L{level} takeover={takeover} {label} {size}: {}",
                runs_text(runs)
            );
            let ratio = 100.0 * first.compressed as f64 / first.original as f64;
            *cell += &format!(" {} · {ratio:.1}% |", rate_text(measure::median(runs)));
        }
    }
    for (cell, (_, _, label)) in cells.iter().zip(&rows) {
        println!("| {label} |{cell}");
    }
    println!();
}

fn inflate_table(sets: &[(usize, Vec<Vec<u8>>)], takeover: bool, budget: &Budget) {
    let mode = if takeover {
        "context takeover"
    } else {
        "no context takeover (reset after each message)"
    };
    println!(
        "### Inflate, {mode}: messages per CPU-second (median of {}) · MB/s of output; payloads from C zlib level 6, window 15",
        budget.runs
    );
    println!();
    println!("Load average before: {}", loadavg());
    println!();
    size_header(sets, "library");
    let mut cells = vec![String::new(); Lib::ALL.len()];
    for (size, messages) in sets {
        let count = per_run(*size, budget);
        let payloads =
            measure::reference_payloads(messages, count, Setting::default_at(6), takeover);
        let results = interleaved(Lib::ALL.len(), budget.runs, |row, run| {
            let lib = Lib::ALL[row];
            (!takeover || lib.streams())
                .then(|| measure::inflate_run(lib, 15, messages, &payloads, takeover, run == 0))
        });
        for ((cell, runs), lib) in cells.iter_mut().zip(&results).zip(Lib::ALL) {
            let Some(first) = runs.first() else {
                *cell += " — |";
                continue;
            };
            eprintln!(
                "inflate takeover={takeover} {} {size}: {}",
                lib.name(),
                runs_text(runs)
            );
            let per_sec = measure::median(runs);
            let mb = per_sec * first.original as f64 / count as f64 / 1e6;
            *cell += &format!(" {} · {mb:.0} MB/s |", rate_text(per_sec));
        }
    }
    for (cell, lib) in cells.iter().zip(Lib::ALL) {
        println!("| {} |{cell}", lib.name());
    }
    println!();
}

fn payoff_table(quick: bool) {
    let count = if quick { 200 } else { 2000 };
    let columns = [
        (Lib::ZlibRs, 1),
        (Lib::ZlibRs, 2),
        (Lib::ZlibRs, 6),
        (Lib::Flate2Miniz, 1),
        (Lib::Flate2Miniz, 6),
        (Lib::Zlib, 1),
        (Lib::Zlib, 2),
        (Lib::Zlib, 6),
        (Lib::Libdeflate, 1),
        (Lib::Libdeflate, 6),
    ];
    println!(
        "### Where compression without context takeover pays: frame bytes compressed/original (share of messages whose frame shrinks by ≥ 10%)"
    );
    println!();
    println!(
        "{count} messages per size, each compressed alone (window 15, memLevel 8); server frames, so 2 header bytes up to 125 B of payload and 4 above. flate2 + zlib-rs writes the same bytes as zlib-rs."
    );
    println!();
    let mut head = String::from("| size (mean) |");
    let mut rule = String::from("|---|");
    for (lib, level) in columns {
        head += &format!(" {} L{level} |", lib.name());
        rule += "---:|";
    }
    println!("{head}\n{rule}");
    for size in SMALL_SIZES {
        let messages = market::messages(SEED, size, count);
        let mut line = format!("| {size} B ({} B) |", mean_len(&messages));
        for (lib, level) in columns {
            let p = measure::payoff(lib, Setting::default_at(level), &messages);
            line += &format!(" {:.0}% ({:.0}%) |", p.frame_ratio, p.paying);
        }
        println!("{line}");
    }
    println!();
}

fn window_table(sets: &[(usize, Vec<Vec<u8>>)]) {
    println!(
        "### Ratio by window and memLevel, context takeover: compressed/original bytes at level 1 / level 6"
    );
    println!();
    size_header(sets, "library, window bits, memLevel");
    for lib in [Lib::ZlibRs, Lib::Zlib] {
        for (window_bits, mem_level) in [(9, 1), (9, 8), (12, 1), (12, 8), (15, 1), (15, 8)] {
            let mut line = format!("| {} w{window_bits} m{mem_level} |", lib.name());
            for (_, messages) in sets {
                let at = |level| {
                    measure::takeover_ratio(
                        lib,
                        Setting {
                            level,
                            window_bits,
                            mem_level,
                        },
                        messages,
                    )
                };
                line += &format!(" {:.1}% / {:.1}% |", at(1), at(6));
            }
            println!("{line}");
        }
    }
    println!();
}

fn size_label(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn rate_text(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2}M", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1}k", per_sec / 1e3)
    } else {
        format!("{per_sec:.0}")
    }
}

fn runs_text(runs: &[Run]) -> String {
    runs.iter()
        .map(|r| rate_text(r.per_sec))
        .collect::<Vec<_>>()
        .join(" ")
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
