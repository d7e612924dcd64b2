//! Helpers for the wss:// server tests: a CA and a server certificate made at run
//! time by rcgen, a server serving wss with them, and raw TLS clients (rustls over a
//! std `TcpStream`) that write whatever bytes a test wants inside the records.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use wsreactor::client::crypto_provider;
use wsreactor::{Config, Handler, Server, ServerHandle};

/// How long a read waits before the test calls it a hang: the same guard as
/// `util/server.rs`'s `PATIENCE` (this file is included without it). Never a
/// measure: a busy machine may take many times longer than an idle one.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A CA, a server certificate it signed for `localhost` and 127.0.0.1, in DER and PEM.
pub struct Certs {
    pub roots: RootCertStore,
    pub ca_pem: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn certs() -> Certs {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "wsreactor server test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(params, ca_key);
    let leaf =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    Certs {
        roots,
        ca_pem: ca.pem(),
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

impl Certs {
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        wsreactor::tls::server_config(self.chain.clone(), self.key.clone_key()).unwrap()
    }

    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::new(
            ClientConfig::builder_with_provider(crypto_provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(self.roots.clone())
                .with_no_client_auth(),
        )
    }
}

/// Starts `handler` serving wss only on 127.0.0.1:0.
pub fn start_tls<H: Handler>(config: Config, certs: &Certs, handler: H) -> ServerHandle {
    Server::builder()
        .config(config)
        .tls(certs.server_config())
        .bind("127.0.0.1:0")
        .and_then(|s| s.spawn(handler))
        .expect("server starts")
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr` whose handshake is done (reads time out after
/// [`PATIENCE`]).
pub fn tls_raw(addr: SocketAddr, config: &Arc<ClientConfig>) -> TlsStream {
    try_tls_raw(addr, config).expect("TLS handshake completes")
}

/// As [`tls_raw`], with the error if the handshake fails (a server that drops the
/// connection, say).
pub fn try_tls_raw(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(PATIENCE))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).unwrap();
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

pub const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A TLS connection that has completed the WebSocket upgrade (the 101 is read).
pub fn tls_ws(addr: SocketAddr, config: &Arc<ClientConfig>) -> TlsStream {
    try_tls_ws(addr, config).expect("TLS handshake and upgrade")
}

/// As [`tls_ws`], with the error if the handshake or the upgrade fails (a response
/// other than 101 is `InvalidData`).
pub fn try_tls_ws(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<TlsStream> {
    let mut s = try_tls_raw(addr, config)?;
    s.write_all(UPGRADE.as_bytes())?;
    let head = read_head(&mut s);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no 101: {head:?}"),
        ));
    }
    Ok(s)
}

/// Reads an HTTP head, byte by byte (nothing after it is consumed).
pub fn read_head(s: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A masked client frame.
pub fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x11, 0x22, 0x33, 0x44];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Reads one unmasked server frame: (opcode with FIN bit, payload).
pub fn read_frame(s: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).ok()?;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    Some((head[0], payload))
}

/// Reads until the stream ends; `Ok` if it ended with close_notify, `Err` with the
/// error otherwise (a TCP close without it is `UnexpectedEof`).
pub fn read_to_end(s: &mut TlsStream) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    s.read_to_end(&mut all).map(|_| all)
}
