//! Plain HTTP against a real server: send a request on a fresh connection, read the
//! response head and body.
#![allow(dead_code)]

use super::server::{PATIENCE, UPGRADE, raw, read_head, read_until_closed};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};

/// A response head: the status and the headers (names lowercased).
pub struct Head {
    pub status_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn parse(text: &str) -> Head {
        let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
        let status_line = lines.next().unwrap_or_default().to_owned();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').expect("a header line");
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        Head {
            status_line,
            headers,
        }
    }

    pub fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {:?}", self.status_line))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the comma-separated header `name` holds `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// Sends `request` on a fresh connection; returns the response head and the body,
/// after checking that the server closed the connection behind them.
pub fn exchange(addr: SocketAddr, request: &str) -> (Head, Vec<u8>) {
    let mut s = raw(addr);
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let head = Head::parse(&read_head(&mut s));
    let body = read_until_closed(&mut s);
    (head, body)
}

/// Sends `request` and reads only the response head, leaving the connection open.
pub fn exchange_until_head(addr: SocketAddr, request: &str) -> (Head, TcpStream) {
    let mut s = raw(addr);
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    (Head::parse(&read_head(&mut s)), s)
}

/// The test upgrade request with `from` replaced by `to`.
pub fn upgrade_with(from: &str, to: &str) -> String {
    assert!(UPGRADE.contains(from), "{from:?} is not in the request");
    UPGRADE.replacen(from, to, 1)
}

/// The test upgrade request with `extra` header lines added before the blank line.
pub fn upgrade_plus(extra: &str) -> String {
    format!("{}{extra}\r\n\r\n", UPGRADE.strip_suffix("\r\n").unwrap())
}

pub fn assert_empty_refusal(head: &Head, body: &[u8], status: u16) {
    assert_eq!(head.status(), status, "{}", head.status_line);
    assert_eq!(head.header("content-length"), Some("0"));
    assert!(head.has_token("connection", "close"), "{:?}", head.headers);
    assert!(body.is_empty(), "body {body:?}");
}
