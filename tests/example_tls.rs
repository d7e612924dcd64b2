//! The echo and chat examples' TLS flags (feature `tls`): `--tls-cert` and
//! `--tls-key` serve wss:// on `--addr`; `--tls-addr` serves it beside ws://.
//! Certificates are made by rcgen and written to PEM files, as `openssl` would.
//! The examples must be built with the feature too: `cargo test --features tls`
//! does it; tests/run.sh builds them before running this file alone.
#![cfg(feature = "tls")]

#[path = "util/tls.rs"]
mod tls;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use wsreactor::Message;
use wsreactor::client::{ClientBuilder, Incoming};

/// A built example, killed when dropped, and the PEM files it was given.
struct Example {
    child: Child,
    /// The first line it printed.
    line: String,
    files: Vec<PathBuf>,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}

fn start(name: &str, certs: &tls::Certs, extra: &[&str]) -> Example {
    let dir = std::env::temp_dir();
    let tag = format!("wsreactor-{}-{name}", std::process::id());
    let cert = dir.join(format!("{tag}-cert.pem"));
    let key = dir.join(format!("{tag}-key.pem"));
    std::fs::write(&cert, &certs.cert_pem).unwrap();
    std::fs::write(&key, &certs.key_pem).unwrap();
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    let mut child = Command::new(&bin)
        .args(["--addr", "127.0.0.1:0", "--threads", "1", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} (built by cargo test): {e}", bin.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    Example {
        child,
        line,
        files: vec![cert, key],
    }
}

/// The `HOST:PORT` after `prefix` in `line`.
fn addr_after<'a>(line: &'a str, prefix: &str) -> &'a str {
    let rest = &line[line.find(prefix).unwrap_or_else(|| panic!("{line:?}")) + prefix.len()..];
    rest.split(|c: char| c.is_whitespace() || c == '/' || c == ')' || c == ',')
        .next()
        .unwrap()
}

#[test]
fn the_echo_example_serves_wss_with_a_pem_certificate() {
    let certs = tls::certs();
    let echo = start("echo", &certs, &[]);
    assert!(echo.line.contains("(wss"), "{:?}", echo.line);
    let addr = addr_after(&echo.line, "listening on ");
    let port = addr.rsplit(':').next().unwrap();
    let mut client = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .root_certificates(certs.roots.clone())
        .read_timeout(Some(tls::PATIENCE))
        .connect()
        .unwrap();
    let big = vec![3u8; 200_000];
    client.send(Message::Binary(&big)).unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Message(Message::Binary(&big))
    );
}

#[test]
fn the_chat_example_serves_https_and_wss_beside_http_and_ws() {
    let certs = tls::certs();
    let chat = start("chat", &certs, &["--tls-addr", "127.0.0.1:0"]);
    let plain = addr_after(&chat.line, "open http://").to_owned();
    let secure = addr_after(&chat.line, "https://").to_owned();
    assert_ne!(plain, secure);
    // The page over https, asking for wss:// when it was loaded over https.
    let mut page = tls::tls_raw(secure.parse().unwrap(), &certs.client_config());
    page.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let head = tls::read_head(&mut page);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let port = secure.rsplit(':').next().unwrap();
    let mut ada = ClientBuilder::new(format!("wss://localhost:{port}/chat?room=r&name=ada"))
        .root_certificates(certs.roots.clone())
        .read_timeout(Some(tls::PATIENCE))
        .connect()
        .unwrap();
    let bob = ClientBuilder::new(format!("ws://{plain}/chat?room=r&name=bob"))
        .read_timeout(Some(tls::PATIENCE))
        .connect()
        .unwrap();
    assert_eq!(
        ada.recv().unwrap(),
        Incoming::Message(Message::Text("bob joined"))
    );
    bob.send(Message::Text("hello over ws")).unwrap();
    assert_eq!(
        ada.recv().unwrap(),
        Incoming::Message(Message::Text("bob: hello over ws"))
    );
}
