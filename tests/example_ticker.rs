//! The ticker example (examples/ticker.rs): a client gets the ticks of the symbols
//! it asked for in `/?symbols=...`, and only those, each symbol's in order; a
//! request for no symbol or an unknown one is refused with 400 and a hint; `/`
//! serves the page. SIGTERM stops it cleanly: every client gets close 1001.

#[path = "util/example.rs"]
mod example;
#[path = "util/server.rs"]
mod server;

use std::collections::HashMap;
use std::io::{Read, Write};

use example::{Example, connect, line, start_with};
use server::PATIENCE;

/// The ticker, ticking every 5 ms.
fn ticker() -> Example {
    start_with("ticker", &["--interval-ms", "5"])
}

/// (symbol, seq) of a tick such as `{"symbol":"AAPL","price":187.42,"seq":12}`.
fn parse_tick(text: &str) -> (String, u64) {
    let field = |name: &str| -> &str {
        let start = text
            .find(&format!("\"{name}\":"))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            + name.len()
            + 3;
        let rest = &text[start..];
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        rest[..end].trim_matches('"')
    };
    let price: f64 = field("price").parse().unwrap();
    assert!(price > 0.0, "{text}");
    (field("symbol").to_owned(), field("seq").parse().unwrap())
}

#[test]
fn a_client_gets_the_ticks_of_its_symbols_only_in_order() {
    let server = ticker();
    let mut both = connect(&server, "/?symbols=AAPL,msft");
    let mut one = connect(&server, "/?symbols=BRK%2EB");
    assert_eq!(line(&mut both), "subscribed AAPL,MSFT");
    assert_eq!(line(&mut one), "subscribed BRK.B");
    let mut last: HashMap<String, u64> = HashMap::new();
    for _ in 0..40 {
        let (symbol, seq) = parse_tick(&line(&mut both));
        assert!(symbol == "AAPL" || symbol == "MSFT", "{symbol}");
        if let Some(previous) = last.insert(symbol.clone(), seq) {
            assert!(seq > previous, "{symbol}: {seq} after {previous}");
        }
    }
    assert_eq!(last.len(), 2, "both symbols tick");
    for _ in 0..10 {
        assert_eq!(parse_tick(&line(&mut one)).0, "BRK.B");
    }
}

/// Sends a raw request and returns everything the server answers before closing.
fn raw_request(server: &Example, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

fn upgrade(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

#[test]
fn unknown_or_missing_symbols_are_refused_with_a_hint() {
    let server = ticker();
    for path in ["/?symbols=NOPE", "/", "/?symbols=", "/?other=AAPL"] {
        let answer = raw_request(&server, &upgrade(path));
        assert!(answer.starts_with("HTTP/1.1 400 "), "{path}: {answer}");
        assert!(answer.contains("AAPL,MSFT,GOOG"), "{path}: {answer}");
    }
    let answer = raw_request(&server, &upgrade("/elsewhere?symbols=AAPL"));
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
}

#[test]
fn the_page_is_served_and_head_gets_no_body() {
    let server = ticker();
    let get = raw_request(&server, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (head, body) = get.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        body.contains("new WebSocket("),
        "the page opens a WebSocket"
    );
    let length = format!("Content-Length: {}", body.len());
    assert!(head.contains(&length), "{head}");
    let head_only = raw_request(&server, "HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(head_only, format!("{head}\r\n\r\n"));
}

#[test]
fn sigterm_closes_every_client_with_1001_and_exits() {
    let server = ticker();
    let mut client = connect(&server, "/?symbols=TSLA");
    assert_eq!(line(&mut client), "subscribed TSLA");
    // The client keeps reading (and answers the close) while the server stops.
    let reader = std::thread::spawn(move || {
        loop {
            match client.read() {
                Ok(tungstenite::Message::Close(frame)) => {
                    return frame.map(|f| u16::from(f.code));
                }
                Ok(_) => {}
                Err(e) => panic!("no close frame: {e}"),
            }
        }
    });
    let (exited, printed) = server.terminate();
    assert_eq!(reader.join().unwrap(), Some(1001));
    assert!(exited, "exit status; printed {printed:?}");
    assert!(printed.contains("served 1 connections"), "{printed}");
}

/// With feature `metrics`, `/metrics` answers the engine's counters in Prometheus
/// text: the open connection and the ticks sent to it are there.
#[cfg(feature = "metrics")]
#[test]
fn metrics_are_served_in_prometheus_text() {
    let server = ticker();
    let mut client = connect(&server, "/?symbols=NVDA");
    assert_eq!(line(&mut client), "subscribed NVDA");
    for _ in 0..5 {
        assert_eq!(parse_tick(&line(&mut client)).0, "NVDA");
    }
    let sent = |text: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with("wsreactor_messages_sent_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    // Counters are pushed at the end of each reactor's loop turn.
    let started = std::time::Instant::now();
    let text = loop {
        let answer = raw_request(&server, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        if sent(body) >= 6 {
            break body.to_owned();
        }
        assert!(started.elapsed() < PATIENCE, "{body}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(
        text.contains("# TYPE wsreactor_connections_open gauge"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("wsreactor_subscriptions{") && l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        text.contains("wsreactor_handshakes_total{reactor=\"0\",transport=\"ws\"}")
            || text.contains("wsreactor_handshakes_total{reactor=\"1\",transport=\"ws\"}"),
        "{text}"
    );
}

/// Without feature `metrics` there is no `/metrics`: a plain request there gets 426.
#[cfg(not(feature = "metrics"))]
#[test]
fn without_the_metrics_feature_there_is_no_metrics_page() {
    let server = ticker();
    let answer = raw_request(&server, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
}
