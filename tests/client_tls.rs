//! `wss://` (feature `tls`): echo through a TLS server made for the test, trusted
//! through a CA file or a root store; every way trust fails, each an error that says
//! so; and senders on several threads sharing one TLS session.
//!
//! The server is test-only: rustls over a std `TcpStream` in a thread, feeding
//! tungstenite's server role (the oracle). Certificates are made at run time by rcgen.
#![cfg(feature = "tls")]

#[path = "util/echo_round.rs"]
mod echo_round;
#[path = "util/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use server::PATIENCE;
use wsreactor::client::{self, ClientBuilder, Error, Incoming, crypto_provider};
use wsreactor::proto::CloseFrame;
use wsreactor::{CloseCode, Message};

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own, so that another test CA is not taken for its issuer.
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let name = format!("wsreactor test CA {}", MADE.fetch_add(1, Ordering::Relaxed));
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        roots
    }

    /// A server certificate for `names`, and its key.
    fn leaf(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }
}

/// A TLS echo server for `connections` connections, presenting `leaf`.
fn tls_echo(
    (cert, key): (CertificateDer<'static>, PrivateKeyDer<'static>),
    connections: usize,
) -> (SocketAddr, JoinHandle<()>) {
    let config = Arc::new(
        ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = thread::spawn(move || {
        for _ in 0..connections {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(PATIENCE)).unwrap();
            let tls = ServerConnection::new(Arc::clone(&config)).unwrap();
            // A client that refuses the certificate ends the handshake: next one.
            let Ok(mut ws) = tungstenite::accept(StreamOwned::new(tls, tcp)) else {
                continue;
            };
            while let Ok(message) = ws.read() {
                if (message.is_text() || message.is_binary()) && ws.send(message).is_err() {
                    break;
                }
            }
        }
    });
    (addr, thread)
}

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("wsreactor-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn wss_echoes_messages_pings_and_the_close_handshake_trusting_a_ca_file() {
    let ca = Ca::new();
    let (addr, server) = tls_echo(ca.leaf(&["localhost"]), 1);
    let ca_file = TempFile::new("ca.pem", &ca.pem);
    let mut client = ClientBuilder::new(format!("wss://localhost:{}/", addr.port()))
        .ca_file(&ca_file.0)
        .connect()
        .expect("connects over TLS");
    // Sizes past rustls' 64 KiB buffer and its 16 KiB records.
    echo_round::sizes_text_and_ping(&mut client, &[0, 125, 16_384, 70_000, 1 << 20]);
    client.close(CloseCode(4321), "done").unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Close(Some(CloseFrame {
            code: CloseCode(4321),
            reason: "done"
        }))
    );
    assert!(matches!(client.recv(), Err(Error::Closed)));
    server.join().unwrap();
}

/// rustls can decrypt more during the handshake's last read than that read takes:
/// a 101 whose head ends inside a full 16 KiB record, with a whole message after it.
/// The rest stays in rustls and must reach `recv` without waiting for the socket,
/// where nothing more will come.
#[test]
fn bytes_decrypted_beyond_the_handshake_read_reach_recv() {
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["127.0.0.1"]);
    let config = Arc::new(
        ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut tls = StreamOwned::new(ServerConnection::new(config).unwrap(), tcp);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tls.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        let accept = wsreactor::proto::handshake::accept_key(key.as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nX-Padding: {}\r\n\r\n",
            std::str::from_utf8(&accept).unwrap(),
            "p".repeat(2000)
        );
        // Record 1: the first 1,000 bytes of the head. Record 2: exactly 16 KiB, the
        // rest of the head and a binary message.
        let (first, rest) = response.as_bytes().split_at(1000);
        let payload_len = 16_384 - rest.len() - 4;
        let mut second = rest.to_vec();
        second.extend_from_slice(&[0x82, 126]);
        second.extend_from_slice(&(payload_len as u16).to_be_bytes());
        second.extend(std::iter::repeat_n(b'm', payload_len));
        assert_eq!(second.len(), 16_384);
        tls.write_all(first).unwrap();
        tls.flush().unwrap();
        thread::sleep(Duration::from_millis(50));
        tls.write_all(&second).unwrap();
        tls.flush().unwrap();
        // Wait for the client to be done, sending nothing more.
        let _ = tls.read(&mut byte);
        payload_len
    });
    let mut client = ClientBuilder::new(format!("wss://{addr}/"))
        .root_certificates(ca.roots())
        .read_timeout(Some(PATIENCE))
        .connect()
        .unwrap();
    let received = match client.recv() {
        Ok(Incoming::Message(Message::Binary(bytes))) => Ok(bytes.len()),
        other => Err(format!("{other:?}")),
    };
    drop(client);
    let sent = server.join().unwrap();
    assert_eq!(received, Ok(sent));
}

#[test]
fn wss_to_an_ip_address_trusting_a_root_store() {
    let ca = Ca::new();
    let (addr, server) = tls_echo(ca.leaf(&["127.0.0.1"]), 1);
    let mut client = ClientBuilder::new(format!("wss://{addr}/"))
        .root_certificates(ca.roots())
        .connect()
        .unwrap();
    client.send(Message::Text("by address")).unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Message(Message::Text("by address"))
    );
    drop(client);
    server.join().unwrap();
}

fn invalid_certificate(e: &Error) -> String {
    match e {
        Error::Tls(rustls::Error::InvalidCertificate(why)) => format!("{why:?}"),
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[test]
fn a_certificate_from_an_unknown_issuer_fails_with_a_tls_error() {
    let (trusted, other) = (Ca::new(), Ca::new());
    let (addr, server) = tls_echo(other.leaf(&["127.0.0.1"]), 1);
    let e = ClientBuilder::new(format!("wss://{addr}/"))
        .root_certificates(trusted.roots())
        .connect()
        .unwrap_err();
    assert_eq!(invalid_certificate(&e), "UnknownIssuer");
    assert!(e.to_string().starts_with("TLS failed"), "{e}");
    server.join().unwrap();
}

#[test]
fn a_certificate_for_another_name_fails_with_a_tls_error() {
    let ca = Ca::new();
    let (addr, server) = tls_echo(ca.leaf(&["elsewhere.test"]), 1);
    let e = ClientBuilder::new(format!("wss://{addr}/"))
        .root_certificates(ca.roots())
        .connect()
        .unwrap_err();
    assert!(
        invalid_certificate(&e).starts_with("NotValidForName"),
        "{e:?}"
    );
    server.join().unwrap();
}

#[test]
fn danger_accept_invalid_certs_connects_to_an_untrusted_server() {
    let stranger = Ca::new();
    let (addr, server) = tls_echo(stranger.leaf(&["elsewhere.test"]), 1);
    let mut client = ClientBuilder::new(format!("wss://{addr}/"))
        .danger_accept_invalid_certs(true)
        .connect()
        .unwrap();
    client.send(Message::Text("unverified")).unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Message(Message::Text("unverified"))
    );
    drop(client);
    server.join().unwrap();
}

#[test]
fn wss_to_a_plain_ws_server_fails_with_a_tls_error() {
    let server = server::start(server::test_config(), server::Echo);
    let e = ClientBuilder::new(format!("wss://{}/", server.local_addr()))
        .danger_accept_invalid_certs(true)
        .connect()
        .unwrap_err();
    assert!(matches!(e, Error::Tls(_)), "{e:?}");
}

#[test]
fn wss_without_a_root_of_trust_or_with_a_bad_ca_file_is_refused_before_connecting() {
    // Nothing listens on port 1.
    let e = client::connect("wss://127.0.0.1:1/").unwrap_err();
    assert!(
        matches!(&e, Error::Config(why) if why.contains("no system roots")),
        "{e:?}"
    );
    let junk = TempFile::new("junk.pem", "not a certificate\n");
    let e = ClientBuilder::new("wss://127.0.0.1:1/")
        .ca_file(&junk.0)
        .connect()
        .unwrap_err();
    assert!(
        matches!(&e, Error::Config(why) if why.contains("no PEM certificate")),
        "{e:?}"
    );
    let e = ClientBuilder::new("wss://127.0.0.1:1/")
        .ca_file("/nonexistent/ca.pem")
        .connect()
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
}

/// Frames from several threads go through one TLS session: records must leave in
/// the order they were sealed, or the server's TLS layer fails the connection.
#[test]
fn senders_on_many_threads_share_one_tls_session() {
    const THREADS: usize = 4;
    const MESSAGES: usize = 30;
    let ca = Ca::new();
    let (addr, server) = tls_echo(ca.leaf(&["127.0.0.1"]), 1);
    let mut client = ClientBuilder::new(format!("wss://{addr}/"))
        .root_certificates(ca.roots())
        .read_timeout(Some(PATIENCE))
        .connect()
        .unwrap();
    let payload = |t: usize, i: usize| -> Vec<u8> {
        let mut bytes = vec![t as u8; 4 + (i * 4099 + t * 7) % 100_000];
        bytes[..4].copy_from_slice(&((t << 16 | i) as u32).to_be_bytes());
        bytes
    };
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let sender = client.sender();
            thread::spawn(move || {
                for i in 0..MESSAGES {
                    sender.send(Message::Binary(&payload(t, i))).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0; THREADS];
    for _ in 0..THREADS * MESSAGES {
        let Incoming::Message(Message::Binary(bytes)) = client.recv().unwrap() else {
            panic!("expected a binary echo");
        };
        let tag = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        let (t, i) = (tag >> 16, tag & 0xffff);
        assert_eq!(i, next[t]);
        assert!(bytes == payload(t, i));
        next[t] += 1;
    }
    for t in threads {
        t.join().unwrap();
    }
    client.close(CloseCode::NORMAL, "").unwrap();
    assert!(matches!(client.recv().unwrap(), Incoming::Close(_)));
    server.join().unwrap();
}
