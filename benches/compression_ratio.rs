//! What permessage-deflate saves on small JSON messages, by mode and path: the
//! compressed size as a share of the original, through the engine's own codec
//! (zlib-rs, raw deflate, window 15). Sizes, not time, so no criterion: the
//! messages are made by a seeded generator and the figures are the same on every
//! run.
//!
//!   cargo bench -p wsreactor-benches --bench compression_ratio
//!
//! A message compressed alone is what `Compression::Shared` does for every send,
//! and what both modes do for published, broadcast and `Sender` messages (encoded
//! and compressed once for every subscriber: no connection's context can be used).
//! With context is `Compression::Dedicated` for `Socket::send`.

use wsreactor::proto::deflate::{Deflater, Direction};

/// A xorshift generator: reproducible messages.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

const WORDS: [&str; 11] = [
    "hello", "there", "how", "are", "you", "the", "build", "is", "green", "again", "today",
];

fn reading(r: &mut Rng, i: u64) -> String {
    let kind = ["temperature", "humidity", "pressure"][r.next(3) as usize];
    format!(
        "{{\"sensor\":\"s-{:04}\",\"kind\":\"{kind}\",\"value\":{}.{:02},\"unit\":\"C\",\"ts\":{},\"seq\":{i}}}",
        r.next(10_000),
        r.next(60) as i64 - 20,
        r.next(100),
        1_765_000_000_000 + i * 37
    )
}

fn tick(r: &mut Rng, i: u64) -> String {
    let symbol = ["AAPL", "MSFT", "NVDA"][r.next(3) as usize];
    format!(
        "{{\"symbol\":\"{symbol}\",\"price\":{}.{:02},\"seq\":{i}}}",
        100 + r.next(200),
        r.next(100)
    )
}

fn chat(r: &mut Rng, i: u64) -> String {
    let words: Vec<&str> = (0..5 + r.next(20))
        .map(|_| WORDS[r.next(WORDS.len() as u64) as usize])
        .collect();
    format!(
        "{{\"type\":\"message\",\"room\":\"general\",\"user\":\"user{}\",\"text\":\"{}\",\"ts\":{}}}",
        1 + r.next(500),
        words.join(" "),
        1_765_000_000 + i
    )
}

/// Compressed bytes of `messages`: each alone, or one after another with context.
fn compressed(messages: &[String], level: u32, context: bool) -> usize {
    let direction = Direction {
        window_bits: 15,
        context_takeover: context,
    };
    let mut deflater = Deflater::new(direction, level);
    let mut out = Vec::new();
    let mut total = 0;
    for message in messages {
        out.clear();
        assert!(deflater.compress(message.as_bytes(), &mut out));
        total += out.len();
        if !context {
            deflater.reset();
        }
    }
    total
}

fn main() {
    type Make = fn(&mut Rng, u64) -> String;
    let kinds: [(&str, Make); 3] = [
        ("sensor reading", reading),
        ("market tick", tick),
        ("chat message", chat),
    ];
    println!(
        "| message | mean size | level | alone (shared; every publish) | with context (dedicated send) |"
    );
    println!("|---|---|---|---|---|");
    for (name, make) in kinds {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let messages: Vec<String> = (0..2000).map(|i| make(&mut rng, i)).collect();
        let raw: usize = messages.iter().map(String::len).sum();
        for level in [1, 6, 9] {
            let alone = compressed(&messages, level, false);
            let context = compressed(&messages, level, true);
            println!(
                "| {name} | {} B | {level} | {:.0} % | {:.0} % |",
                raw / messages.len(),
                100.0 * alone as f64 / raw as f64,
                100.0 * context as f64 / raw as f64
            );
        }
    }
}
