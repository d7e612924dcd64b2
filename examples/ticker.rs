//! A market-data push server on topics. A client asks for symbols in the upgrade,
//! `ws://HOST/?symbols=AAPL,MSFT`, and gets a text message for every tick of those
//! symbols only:
//!
//! ```text
//! {"symbol":"AAPL","price":187.42,"seq":1234}
//! ```
//!
//! (`seq` counts that symbol's ticks). The first message is `subscribed AAPL,MSFT`.
//! A background thread makes the prices (a random walk) and publishes each tick to
//! the topic `ticks/SYMBOL` through a `Sender`; each reactor writes it to its
//! subscribers. A slow client is held to 64 KiB behind the feed: the oldest ticks
//! are dropped for it, never the newest (`BackpressurePolicy::DropOldest`), and the
//! kernel's send buffer is kept small so that stale ticks do not wait there either.
//! `/` serves a page that shows the prices; built with `--features metrics`,
//! `/metrics` answers the engine's counters in Prometheus text.
//!
//! ```text
//! cargo run --release --example ticker -- --addr 127.0.0.1:9003
//! ```
//! then open <http://127.0.0.1:9003/>.
//!
//! Flags: `--addr` (default 127.0.0.1:9003), `--threads` (default: one per core),
//! `--interval-ms` (default 100: each symbol ticks that often). It prints
//! `listening on ADDR` once ready and stops gracefully on SIGINT or SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use signal_hook::consts::{SIGINT, SIGTERM};
use wsreactor::{
    BackpressurePolicy, Config, HttpRequest, HttpResponse, Message, Request, Sender, Server,
    Socket, Upgrade,
};

/// The symbols the feed has.
const SYMBOLS: [&str; 8] = [
    "AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA", "META", "BRK.B",
];

/// What a client may ask for at once (and the topics it holds).
const MOST_SYMBOLS: usize = SYMBOLS.len();

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>wsreactor ticker</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 30em; margin: 2em auto; }
  table { border-collapse: collapse; width: 100%; margin-top: 1em; }
  td, th { border-bottom: 1px solid #ddd; padding: .3em; text-align: right; }
  td:first-child, th:first-child { text-align: left; }
  .up { color: #080; } .down { color: #b00; }
</style>
<h1>wsreactor ticker</h1>
<form id="watch">
  <input id="symbols" value="AAPL,MSFT,NVDA" size="30">
  <button>Watch</button>
</form>
<p id="status">not connected</p>
<table><thead><tr><th>symbol</th><th>price</th><th>ticks</th></tr></thead><tbody id="rows"></tbody></table>
<script>
  const rows = document.getElementById("rows");
  const status = document.getElementById("status");
  let ws = null;
  document.getElementById("watch").onsubmit = (e) => {
    e.preventDefault();
    if (ws) ws.close();
    rows.textContent = "";
    const symbols = document.getElementById("symbols").value.replace(/\s/g, "");
    ws = new WebSocket(`ws://${location.host}/?${new URLSearchParams({ symbols })}`);
    ws.onmessage = (e) => {
      if (!e.data.startsWith("{")) { status.textContent = e.data; return; }
      const tick = JSON.parse(e.data);
      let row = document.getElementById(tick.symbol);
      if (!row) {
        row = rows.insertRow();
        row.id = tick.symbol;
        for (let i = 0; i < 3; i++) row.insertCell();
        row.cells[0].textContent = tick.symbol;
      }
      const last = parseFloat(row.cells[1].textContent);
      row.cells[1].textContent = tick.price.toFixed(2);
      row.cells[1].className = tick.price >= last ? "up" : "down";
      row.cells[2].textContent = tick.seq;
    };
    ws.onclose = (e) => { status.textContent = `disconnected (${e.code}) ${e.reason}`; };
  };
  document.getElementById("watch").requestSubmit();
</script>
"#;

/// Serves the page and accepts watchers; the ticks come from the publisher thread.
#[derive(Clone)]
struct Ticker {
    /// Renders the `metrics` facade's counters and gauges as Prometheus text.
    #[cfg(feature = "metrics")]
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
}

/// The symbols a connection watches, from its upgrade request.
#[derive(Default)]
struct Watch {
    symbols: Vec<&'static str>,
}

fn topic(symbol: &str) -> String {
    format!("ticks/{symbol}")
}

/// The symbols asked for in `?symbols=A,B`, each one the feed has, without repeats.
fn parse_symbols(list: &str) -> Result<Vec<&'static str>, String> {
    let mut symbols = Vec::new();
    for asked in list.split(',').filter(|s| !s.is_empty()) {
        let Some(&symbol) = SYMBOLS.iter().find(|s| s.eq_ignore_ascii_case(asked)) else {
            return Err(format!(
                "no symbol {asked:?}; the feed has {}\n",
                SYMBOLS.join(",")
            ));
        };
        if !symbols.contains(&symbol) {
            symbols.push(symbol);
        }
    }
    if symbols.is_empty() || symbols.len() > MOST_SYMBOLS {
        return Err(format!(
            "ask for 1 to {MOST_SYMBOLS} symbols: /?symbols={}\n",
            SYMBOLS.join(",")
        ));
    }
    Ok(symbols)
}

impl wsreactor::Handler for Ticker {
    type Session = Watch;

    fn on_upgrade(&mut self, request: &Request) -> Upgrade<Watch> {
        if request.path() != "/" {
            return Upgrade::reject(404);
        }
        let asked = request.query_param("symbols").unwrap_or_default();
        match parse_symbols(&asked) {
            Ok(symbols) => Upgrade::accept(Watch { symbols }),
            Err(why) => Upgrade::reject_with(HttpResponse::new(400, "text/plain", why)),
        }
    }

    fn on_open(&mut self, ws: &mut Socket<'_, Watch>) {
        let symbols = ws.session().symbols.clone();
        for symbol in &symbols {
            if ws.subscribe(topic(symbol)).is_err() {
                return ws.close(wsreactor::CloseCode::INTERNAL_ERROR, "cannot subscribe");
            }
        }
        let _ = ws.send_text(&format!("subscribed {}", symbols.join(",")));
    }

    fn on_http(&mut self, request: &HttpRequest<'_, '_>) -> Option<HttpResponse> {
        match request.path() {
            "/" => Some(HttpResponse::html(PAGE)),
            // With feature `metrics`: what the reactors pushed to the facade, as
            // Prometheus scrapes it.
            #[cfg(feature = "metrics")]
            "/metrics" => Some(HttpResponse::new(
                200,
                "text/plain; version=0.0.4",
                self.prometheus.render(),
            )),
            _ => None,
        }
    }
}

/// A small xorshift generator: the prices need to move, not to be unpredictable.
struct Walk(u64);

impl Walk {
    /// A step in [-0.5, 0.5).
    fn step(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }
}

/// Publishes a tick of every symbol each `interval` until `stop`.
fn publish_ticks(sender: Sender, interval: Duration, stop: Arc<AtomicBool>) {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut walk = Walk(seed);
    let mut prices: Vec<f64> = (0..SYMBOLS.len())
        .map(|i| 100.0 + 50.0 * i as f64)
        .collect();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        for (symbol, price) in SYMBOLS.iter().zip(&mut prices) {
            *price = (*price * (1.0 + walk.step() / 100.0)).max(0.01);
            let tick = format!(r#"{{"symbol":"{symbol}","price":{price:.2},"seq":{seq}}}"#);
            // Encoded once, handed to the reactors that have subscribers; a reactor
            // whose queue is full refuses it (counted in `refused`): a tick is not
            // worth waiting for, the next one follows.
            sender.publish(topic(symbol), Message::Text(&tick));
        }
        std::thread::sleep(interval);
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("ticker: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = String::from("127.0.0.1:9003");
    // The market-data settings: a reader that falls behind gets the newest ticks.
    let mut config = Config::default()
        .with_backpressure(64 * 1024, BackpressurePolicy::DropOldest)
        .with_send_buffer_size(Some(16 * 1024));
    let mut interval = Duration::from_millis(100);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--threads" => config = config.with_reactors(value()?.parse()?),
            "--interval-ms" => interval = Duration::from_millis(value()?.parse()?),
            "-h" | "--help" => {
                println!("usage: ticker [--addr HOST:PORT] [--threads N] [--interval-ms MS]");
                return Ok(());
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    // Registered before the server says it listens, so that a signal sent from
    // then on is never the default one (which would end the process at once).
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let reactors = config.reactors;
    let server = Server::bind(addr.as_str(), config)?;
    println!("listening on {} ({reactors} reactors)", server.local_addr());
    // The recorder goes in before the reactors start: they take its handles then.
    #[cfg(feature = "metrics")]
    let ticker = Ticker {
        prometheus: metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?,
    };
    #[cfg(not(feature = "metrics"))]
    let ticker = Ticker {};
    let handle = server.spawn(ticker)?;

    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (sender, stop) = (handle.sender(), stop.clone());
        std::thread::spawn(move || publish_ticks(sender, interval, stop))
    };
    // On SIGINT or SIGTERM: stop the feed, then the server (close 1001 to every
    // client, 5 s for the close handshakes); `wait` returns once it has stopped.
    let (sender, stop_feed) = (handle.sender(), stop.clone());
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            stop_feed.store(true, Ordering::Relaxed);
            sender.shutdown(Duration::from_secs(5));
        }
    });
    let served = handle.wait();
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.join();
    served?;
    let stats = handle.stats();
    println!(
        "served {} connections; {} messages sent, {} dropped for slow readers",
        stats.accepted, stats.messages_out, stats.dropped
    );
    Ok(())
}
