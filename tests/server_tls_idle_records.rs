//! A wss peer that sends records without application data cannot hold a reactor:
//! the review's "31 empty records, then a key update, repeated" (rustls' own
//! counters of empty records and of key updates reset each other, so rustls alone
//! accepts it forever) is dropped past the allowance and counted, and the other
//! connections are served meanwhile.
//!
//! The records are made here from the client's traffic secret (rustls writes
//! neither empty records nor key updates on request), with the client's sequence
//! numbers taken over after the upgrade.
#![cfg(feature = "tls")]

#[path = "util/server.rs"]
mod server;
#[path = "util/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, KeyType, Prk};
use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use server::{Echo, PATIENCE, test_config, wait_for_stats};
use tls::{certs, frame, read_frame, start_tls, tls_ws};

/// Keeps the client's first application traffic secret.
#[derive(Debug, Default)]
struct Secret(Mutex<Option<Vec<u8>>>);

impl rustls::KeyLog for Secret {
    fn will_log(&self, label: &str) -> bool {
        label == "CLIENT_TRAFFIC_SECRET_0"
    }
    fn log(&self, label: &str, _: &[u8], secret: &[u8]) {
        if label == "CLIENT_TRAFFIC_SECRET_0" {
            *self.0.lock().unwrap() = Some(secret.to_vec());
        }
    }
}

/// TLS 1.3 with AES-128-GCM only, so that the records made here match.
fn client_config(certs: &tls::Certs, secret: Arc<Secret>) -> Arc<ClientConfig> {
    let base = wsreactor::client::crypto_provider();
    let provider = CryptoProvider {
        cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
        ..(*base).clone()
    };
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(certs.roots.clone())
        .with_no_client_auth();
    config.key_log = secret;
    Arc::new(config)
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(secret: &[u8], label: &str, len: usize) -> Vec<u8> {
    let label = format!("tls13 {label}");
    let info = [
        &(len as u16).to_be_bytes()[..],
        &[label.len() as u8],
        label.as_bytes(),
        &[0],
    ];
    let mut out = vec![0; len];
    Prk::new_less_safe(HKDF_SHA256, secret)
        .expand(&info, Len(len))
        .unwrap()
        .fill(&mut out)
        .unwrap();
    out
}

/// The client's sending side, as RFC 8446 §5 has it.
struct Sealer {
    secret: Vec<u8>,
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl Sealer {
    fn new(secret: Vec<u8>, seq: u64) -> Sealer {
        let key = expand_label(&secret, "key", 16);
        let iv = expand_label(&secret, "iv", 12).try_into().unwrap();
        let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).unwrap());
        Sealer {
            secret,
            key,
            iv,
            seq,
        }
    }

    /// One record holding `inner`: content, then its type.
    fn seal(&mut self, inner: &[u8]) -> Vec<u8> {
        let len = inner.len() + 16;
        let header = [0x17, 0x03, 0x03, (len >> 8) as u8, len as u8];
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        self.seq += 1;
        let mut body = inner.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut body,
            )
            .unwrap();
        let mut record = header.to_vec();
        record.extend_from_slice(&body);
        record
    }

    /// An application data record with nothing in it.
    fn empty(&mut self) -> Vec<u8> {
        self.seal(&[0x17])
    }

    /// A KeyUpdate (update_not_requested); the keys move on after it.
    fn key_update(&mut self) -> Vec<u8> {
        let record = self.seal(&[0x18, 0, 0, 1, 0, 0x16]);
        let next = expand_label(&self.secret, "traffic upd", 32);
        *self = Sealer::new(next, 0);
        record
    }
}

#[test]
fn records_without_application_data_past_the_allowance_drop_the_connection() {
    let certs = certs();
    let server = start_tls(test_config(), &certs, Echo);
    let secret = Arc::new(Secret::default());
    let config = client_config(&certs, secret.clone());
    // A neighbour on the same reactor, served before and after.
    let mut neighbour = tls_ws(server.local_addr(), &certs.client_config());
    neighbour.write_all(&frame(0x1, true, b"before")).unwrap();
    assert_eq!(read_frame(&mut neighbour).unwrap().1, b"before");

    let abuser = tls_ws(server.local_addr(), &config);
    let secret = secret
        .0
        .lock()
        .unwrap()
        .clone()
        .expect("the traffic secret");
    // The upgrade request was the client's one application record: seq 0.
    let mut sealer = Sealer::new(secret, 1);
    let mut sock = abuser.sock;
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    // 31 empty records and a key update, repeated: 16 MiB of them at most, far
    // past the allowance; the server drops the connection well before.
    let mut flood = Vec::new();
    while flood.len() < 64 * 1024 {
        for _ in 0..31 {
            flood.extend_from_slice(&sealer.empty());
        }
        flood.extend_from_slice(&sealer.key_update());
    }
    let mut sent = 0usize;
    while sent < 16 << 20 {
        if sock.write_all(&flood).is_err() {
            break; // dropped
        }
        sent += flood.len();
        // The next batch continues the sequence.
        flood.clear();
        while flood.len() < 64 * 1024 {
            for _ in 0..31 {
                flood.extend_from_slice(&sealer.empty());
            }
            flood.extend_from_slice(&sealer.key_update());
        }
    }
    // The server ended the connection (a reset or an end, never an answer).
    let mut rest = Vec::new();
    match sock.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty() || rest[0] == 0x15, "{rest:?}"),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "still open"),
    }
    let stats = wait_for_stats(&server, PATIENCE, |s| s.tls_idle_records == 1);
    assert_eq!(stats.open, 1, "only the neighbour is left: {stats:?}");
    neighbour.write_all(&frame(0x1, true, b"after")).unwrap();
    assert_eq!(read_frame(&mut neighbour).unwrap().1, b"after");
}
