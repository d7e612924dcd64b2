//! JSON messages like a market-data feed: trades and quotes on a few dozen symbols whose
//! prices walk, with rising timestamps and ids. Deterministic from the seed, so every run and
//! every library sees the same bytes.
//!
//! A message of a target size is filled with whole items while the next one fits, so it is
//! valid JSON and at most one item short of the target (the tables give the mean size).

use std::fmt::Write;

/// SplitMix64: small, fast, and good enough to vary prices and picks.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SYMBOLS: [&str; 24] = [
    "BTC-USD", "ETH-USD", "SOL-USD", "XRP-USD", "ADA-USD", "DOGE-USD", "AVAX-USD", "LINK-USD",
    "DOT-USD", "LTC-USD", "BCH-USD", "ETH-BTC", "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META",
    "TSLA", "JPM", "EURUSD", "GBPUSD", "USDJPY", "XAUUSD",
];

/// The feed's state: one price (in 1/100 units) per symbol, the clock and the counters.
pub struct Market {
    rng: SplitMix64,
    prices: Vec<i64>,
    time_ms: u64,
    trade_id: u64,
    seq: u64,
}

impl Market {
    /// A feed that starts from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let prices = SYMBOLS
            .iter()
            .map(|_| 100 + rng.below(5_000_000) as i64)
            .collect();
        Market {
            rng,
            prices,
            time_ms: 1_764_547_200_000,
            trade_id: 8_410_000_000,
            seq: 1,
        }
    }

    /// The next message, at most `target` bytes (and at least one item).
    pub fn message(&mut self, target: usize) -> Vec<u8> {
        if target < 256 {
            return self.tick(target).into_bytes();
        }
        self.seq += 1;
        let mut msg = String::with_capacity(target);
        write!(msg, "{{\"type\":\"update\",\"seq\":{},\"data\":[", self.seq).unwrap_or(());
        let close = "]}";
        let mut first = true;
        loop {
            let item = if self.rng.below(3) == 0 {
                self.quote()
            } else {
                self.trade()
            };
            let sep = usize::from(!first);
            if !first && msg.len() + sep + item.len() + close.len() > target {
                break;
            }
            if !first {
                msg.push(',');
            }
            msg.push_str(&item);
            first = false;
        }
        msg.push_str(close);
        msg.into_bytes()
    }

    /// A symbol, skewed towards the first ones as real feeds are.
    fn symbol(&mut self) -> usize {
        let a = self.rng.below(SYMBOLS.len() as u64);
        let b = self.rng.below(SYMBOLS.len() as u64);
        a.min(b) as usize
    }

    fn step(&mut self, s: usize) -> i64 {
        self.time_ms += self.rng.below(40);
        let p = &mut self.prices[s];
        *p = (*p + self.rng.below(21) as i64 - 10).max(1);
        *p
    }

    fn quantity(&mut self) -> String {
        let q = 1 + self.rng.below(2_000_000);
        format!("{}.{:04}", q / 10_000, q % 10_000)
    }

    fn trade(&mut self) -> String {
        let s = self.symbol();
        let p = self.step(s);
        let q = self.quantity();
        self.trade_id += 1 + self.rng.below(3);
        let side = if self.rng.below(2) == 0 {
            "buy"
        } else {
            "sell"
        };
        format!(
            "{{\"e\":\"trade\",\"s\":\"{}\",\"p\":\"{}.{:02}\",\"q\":\"{q}\",\"side\":\"{side}\",\"t\":{},\"id\":{}}}",
            SYMBOLS[s],
            p / 100,
            p % 100,
            self.time_ms,
            self.trade_id
        )
    }

    fn quote(&mut self) -> String {
        let s = self.symbol();
        let bid = self.step(s);
        let ask = bid + 1 + self.rng.below(5) as i64;
        let (bq, aq) = (self.quantity(), self.quantity());
        format!(
            "{{\"e\":\"quote\",\"s\":\"{}\",\"b\":\"{}.{:02}\",\"bq\":\"{bq}\",\"a\":\"{}.{:02}\",\"aq\":\"{aq}\",\"t\":{}}}",
            SYMBOLS[s],
            bid / 100,
            bid % 100,
            ask / 100,
            ask % 100,
            self.time_ms
        )
    }

    /// One ticker update as a lone object, its fields added in order while they fit: the
    /// small messages of a ticker (up to about 250 bytes).
    fn tick(&mut self, target: usize) -> String {
        let s = self.symbol();
        let p = self.step(s);
        let q = self.quantity();
        self.trade_id += 1;
        let side = if self.rng.below(2) == 0 {
            "buy"
        } else {
            "sell"
        };
        let (bid, ask) = (
            p - 1 - self.rng.below(3) as i64,
            p + 1 + self.rng.below(3) as i64,
        );
        let (bq, aq, volume) = (self.quantity(), self.quantity(), self.quantity());
        let change = self.rng.below(1000) as i64 - 500;
        let (high, low) = (
            p + self.rng.below(5000) as i64,
            (p - self.rng.below(5000) as i64).max(1),
        );
        let cents = |v: i64| format!("{}.{:02}", v / 100, v % 100);
        let fields = [
            format!("\"s\":\"{}\"", SYMBOLS[s]),
            format!("\"p\":\"{}\"", cents(p)),
            format!("\"q\":\"{q}\""),
            format!("\"t\":{}", self.time_ms),
            format!("\"side\":\"{side}\""),
            format!("\"id\":{}", self.trade_id),
            format!("\"b\":\"{}\"", cents(bid)),
            format!("\"bq\":\"{bq}\""),
            format!("\"a\":\"{}\"", cents(ask)),
            format!("\"aq\":\"{aq}\""),
            format!("\"v\":\"{volume}\""),
            format!(
                "\"chg\":\"{}{}.{:02}\"",
                if change < 0 { "-" } else { "" },
                change.abs() / 100,
                change.abs() % 100
            ),
            format!("\"hi\":\"{}\"", cents(high)),
            format!("\"lo\":\"{}\"", cents(low)),
        ];
        let mut msg = String::from("{");
        for (i, field) in fields.iter().enumerate() {
            if i > 0 && msg.len() + 1 + field.len() + 1 > target {
                break;
            }
            if i > 0 {
                msg.push(',');
            }
            msg.push_str(field);
        }
        msg.push('}');
        msg
    }
}

/// `count` messages of at most `target` bytes from a feed seeded with `seed`.
pub fn messages(seed: u64, target: usize, count: usize) -> Vec<Vec<u8>> {
    let mut market = Market::new(seed);
    (0..count).map(|_| market.message(target)).collect()
}
