//! The server's TLS 1.3 traffic keys live out of idle connections (src/tls/keys.rs):
//! made from a pool on use, let go by the reactor's sweep. Against rustls' client on
//! its plain *ring* provider (the oracle), every cipher suite the server offers
//! works, before and after the keys were swept, across key updates both ways.
#![cfg(feature = "tls")]

#[path = "util/tls.rs"]
mod tls;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::{CipherSuite, ClientConfig, HandshakeKind, SupportedCipherSuite};
use tls::{PATIENCE, TlsStream, certs, frame, read_frame, start_tls, tls_ws};
use wsreactor::{Config, Handler, Message, Socket};

#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
}

/// A client on ring's own provider offering `suite` only.
fn client_for(suite: SupportedCipherSuite, roots: &rustls::RootCertStore) -> Arc<ClientConfig> {
    let provider = CryptoProvider {
        cipher_suites: vec![suite],
        ..rustls::crypto::ring::default_provider()
    };
    let version = match suite {
        SupportedCipherSuite::Tls13(_) => &rustls::version::TLS13,
        SupportedCipherSuite::Tls12(_) => &rustls::version::TLS12,
    };
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
    )
}

/// A text message, and a binary one of many records, echoed whole.
fn echo(s: &mut TlsStream, round: u8) {
    let text = format!("round {round}");
    s.write_all(&frame(0x1, true, text.as_bytes())).unwrap();
    let big: Vec<u8> = (0..70_000u32).map(|i| (i as u8) ^ round).collect();
    s.write_all(&frame(0x2, true, &big)).unwrap();
    s.flush().unwrap();
    assert_eq!(read_frame(s), Some((0x81, text.into_bytes())));
    assert_eq!(read_frame(s), Some((0x82, big)));
}

#[test]
fn every_suite_works_before_and_after_its_keys_are_swept() {
    let certs = certs();
    // Keys unused for 100 ms go at the next sweep (sweeps run on the timer tick,
    // 250 ms here).
    let config = Config::default()
        .with_reactors(1)
        .with_tls_key_release(Duration::from_millis(100));
    let server = start_tls(config, &certs, Echo);
    let addr = server.local_addr();
    let suites = [
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ];
    let mut streams: Vec<(CipherSuite, TlsStream)> = suites
        .iter()
        .map(|&suite| {
            let mut s = tls_ws(addr, &client_for(suite, &certs.roots));
            let negotiated = s.conn.negotiated_cipher_suite().map(|n| n.suite());
            assert_eq!(negotiated, Some(suite.suite()));
            echo(&mut s, 1);
            (suite.suite(), s)
        })
        .collect();
    // A sweep lets go a key unused since the sweep before: after a second of quiet
    // (four ticks) every key here has been let go. The reactor's own turns (an idle
    // one makes one a tick) make sure it ran them, however busy the machine kept it.
    let turns = server.stats().loop_turns;
    std::thread::sleep(Duration::from_secs(1));
    let deadline = Instant::now() + PATIENCE;
    while server.stats().loop_turns < turns + 4 {
        assert!(Instant::now() < deadline, "{:?}", server.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    for (suite, s) in &mut streams {
        echo(s, 2);
        if *suite != CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 {
            // New keys both ways (the server answers with its own update).
            s.conn.refresh_traffic_keys().unwrap();
            echo(s, 3);
        }
    }
}

/// The configuration `tls::server_config` makes resumes TLS 1.3 sessions (rustls'
/// in-memory session store): a client that keeps its configuration resumes on its
/// next connection, and the echo works on it.
#[test]
fn a_returning_client_resumes_its_session() {
    let certs = certs();
    let server = start_tls(Config::default().with_reactors(1), &certs, Echo);
    let config = certs.client_config();
    let mut first = tls_ws(server.local_addr(), &config);
    assert_eq!(first.conn.handshake_kind(), Some(HandshakeKind::Full));
    // The tickets come after the handshake: an echo makes sure they have arrived.
    echo(&mut first, 1);
    let mut second = tls_ws(server.local_addr(), &config);
    assert_eq!(second.conn.handshake_kind(), Some(HandshakeKind::Resumed));
    echo(&mut second, 2);
}
