//! The pooled keys against rustls' *ring* provider (the plain implementation): a
//! record one seals, the other opens, byte for byte the same; and the pool's life:
//! filled on use, emptied by drop or by two sweeps, refilled on the next record.
//!
//! `AeadKey` can only be made at 32 bytes outside rustls, so these cover AES-256-GCM
//! and ChaCha20-Poly1305; AES-128-GCM runs against rustls' client in
//! tests/server_tls.rs (every suite, one handshake each).

use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, Iv, MessageDecrypter, MessageEncrypter, OutboundChunks,
    OutboundPlainMessage, Tls13AeadAlgorithm,
};
use rustls::{CipherSuite, ContentType, Error, ProtocolVersion, SupportedCipherSuite};

use super::{crypto_provider, pooled_count, sweep};

const KEY: [u8; 32] = [7; 32];
const IV: [u8; 12] = [3; 12];

fn ring_aead(suite: CipherSuite) -> &'static dyn Tls13AeadAlgorithm {
    rustls::crypto::ring::ALL_CIPHER_SUITES
        .iter()
        .find_map(|s| match s {
            SupportedCipherSuite::Tls13(s) if s.common.suite == suite => Some(s.aead_alg),
            _ => None,
        })
        .expect("ring has the suite")
}

fn our_aead(suite: CipherSuite) -> &'static dyn Tls13AeadAlgorithm {
    crypto_provider()
        .cipher_suites
        .iter()
        .find_map(|s| match s {
            SupportedCipherSuite::Tls13(s) if s.common.suite == suite => Some(s.aead_alg),
            _ => None,
        })
        .expect("the provider has the suite")
}

const SUITES: [CipherSuite; 2] = [
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
];

fn seal(enc: &mut dyn MessageEncrypter, typ: ContentType, plain: &[u8], seq: u64) -> Vec<u8> {
    let msg = OutboundPlainMessage {
        typ,
        version: ProtocolVersion::TLSv1_2,
        payload: OutboundChunks::Single(plain),
    };
    enc.encrypt(msg, seq).expect("sealed").encode()
}

/// Opens a whole record (header included); the content type and plaintext.
fn open(
    dec: &mut dyn MessageDecrypter,
    record: &[u8],
    seq: u64,
) -> Result<(ContentType, Vec<u8>), Error> {
    let mut body = record[5..].to_vec();
    let msg = InboundOpaqueMessage::new(
        ContentType::ApplicationData,
        ProtocolVersion::TLSv1_2,
        &mut body,
    );
    dec.decrypt(msg, seq).map(|m| (m.typ, m.payload.to_vec()))
}

#[test]
fn records_match_rings_own_both_ways() {
    for suite in SUITES {
        let (ours, ring) = (our_aead(suite), ring_aead(suite));
        assert_eq!(ours.key_len(), ring.key_len());
        let mut our_enc = ours.encrypter(AeadKey::from(KEY), Iv::new(IV));
        let mut ring_enc = ring.encrypter(AeadKey::from(KEY), Iv::new(IV));
        let mut our_dec = ours.decrypter(AeadKey::from(KEY), Iv::new(IV));
        let mut ring_dec = ring.decrypter(AeadKey::from(KEY), Iv::new(IV));
        let cases: [(ContentType, usize, u64); 5] = [
            (ContentType::ApplicationData, 0, 0),
            (ContentType::ApplicationData, 1, 1),
            (ContentType::Handshake, 37, 2),
            (ContentType::Alert, 2, 1 << 40),
            (ContentType::ApplicationData, 16 * 1024, u64::MAX - 1),
        ];
        for (typ, len, seq) in cases {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let a = seal(&mut *our_enc, typ, &plain, seq);
            let b = seal(&mut *ring_enc, typ, &plain, seq);
            assert_eq!(a, b, "{suite:?}: {len} bytes at {seq}");
            assert_eq!(
                our_enc.encrypted_payload_len(len),
                ring_enc.encrypted_payload_len(len)
            );
            assert_eq!(open(&mut *our_dec, &b, seq).unwrap(), (typ, plain.clone()));
            assert_eq!(open(&mut *ring_dec, &a, seq).unwrap(), (typ, plain));
        }
    }
}

#[test]
fn a_bad_record_is_a_decrypt_error_as_with_ring() {
    for suite in SUITES {
        let ours = our_aead(suite);
        let mut enc = ours.encrypter(AeadKey::from(KEY), Iv::new(IV));
        let mut dec = ours.decrypter(AeadKey::from(KEY), Iv::new(IV));
        let record = seal(&mut *enc, ContentType::ApplicationData, b"hello", 5);
        // The wrong sequence number, a flipped bit, a record shorter than a tag.
        assert_eq!(open(&mut *dec, &record, 6), Err(Error::DecryptError));
        let mut flipped = record.clone();
        flipped[7] ^= 1;
        assert_eq!(open(&mut *dec, &flipped, 5), Err(Error::DecryptError));
        assert_eq!(open(&mut *dec, &record[..15], 5), Err(Error::DecryptError));
        assert_eq!(open(&mut *dec, &record, 5).unwrap().1, b"hello");
    }
}

#[test]
fn the_pool_holds_a_key_while_it_is_used_and_lets_it_go() {
    let ours = our_aead(CipherSuite::TLS13_AES_256_GCM_SHA384);
    let ring = ring_aead(CipherSuite::TLS13_AES_256_GCM_SHA384);
    let base = pooled_count();
    let mut enc = ours.encrypter(AeadKey::from(KEY), Iv::new(IV));
    assert_eq!(pooled_count(), base, "nothing is expanded before a record");
    let first = seal(&mut *enc, ContentType::ApplicationData, b"one", 0);
    assert_eq!(pooled_count(), base + 1);
    // Used since the last sweep: the first sweep keeps it, the second lets it go.
    sweep();
    assert_eq!(pooled_count(), base + 1);
    sweep();
    assert_eq!(pooled_count(), base);
    // The next record expands it again, and is still right.
    let second = seal(&mut *enc, ContentType::ApplicationData, b"two", 1);
    assert_eq!(pooled_count(), base + 1);
    let mut ring_dec = ring.decrypter(AeadKey::from(KEY), Iv::new(IV));
    assert_eq!(open(&mut *ring_dec, &first, 0).unwrap().1, b"one");
    assert_eq!(open(&mut *ring_dec, &second, 1).unwrap().1, b"two");
    // A dropped key leaves the pool at once.
    drop(enc);
    assert_eq!(pooled_count(), base);
}

#[test]
fn a_key_used_away_from_its_home_thread_is_not_pooled_there() {
    let ours = our_aead(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    let mut enc = ours.encrypter(AeadKey::from(KEY), Iv::new(IV));
    let here = seal(&mut *enc, ContentType::ApplicationData, b"x", 0);
    let (there, count, wiped) = std::thread::spawn(move || {
        let record = seal(&mut *enc, ContentType::ApplicationData, b"x", 0);
        (record, pooled_count(), super::WIPED.with(|w| w.get()))
    })
    .join()
    .unwrap();
    assert_eq!(here, there);
    assert_eq!(
        count, 0,
        "made for the record, not kept in the other thread's pool"
    );
    assert_eq!(wiped, 1, "and wiped after it");
}

/// Regression: a key dropped on another thread than its home (a client on a
/// work-stealing runtime) left its working form in the home thread's pool for the
/// thread's life, or until two sweeps. Its home now lets it go at its next use.
#[test]
fn a_key_dropped_on_another_thread_leaves_its_home_pool_at_the_next_use() {
    use std::sync::mpsc;
    let (keys, key) = mpsc::channel();
    let (go, went) = mpsc::channel::<()>();
    let home = std::thread::spawn(move || {
        let ours = our_aead(CipherSuite::TLS13_AES_256_GCM_SHA384);
        let mut enc = ours.encrypter(AeadKey::from(KEY), Iv::new(IV));
        seal(&mut *enc, ContentType::ApplicationData, b"x", 0);
        let held = pooled_count();
        keys.send(enc).unwrap();
        went.recv().unwrap();
        // One sweep: a key used since the last would stay, had nobody said so.
        sweep();
        (held, pooled_count(), super::WIPED.with(|w| w.get()))
    });
    drop(key.recv().unwrap());
    go.send(()).unwrap();
    let (held, after, wiped) = home.join().unwrap();
    assert_eq!((held, after), (1, 0));
    assert_eq!(wiped, 1, "its working form was wiped as it left");
}

#[test]
fn swept_and_dropped_keys_are_wiped() {
    let ours = our_aead(CipherSuite::TLS13_AES_256_GCM_SHA384);
    let before = super::WIPED.with(|w| w.get());
    let mut enc = ours.encrypter(AeadKey::from(KEY), Iv::new(IV));
    seal(&mut *enc, ContentType::ApplicationData, b"x", 0);
    sweep();
    sweep();
    assert_eq!(super::WIPED.with(|w| w.get()), before + 1, "swept");
    seal(&mut *enc, ContentType::ApplicationData, b"x", 1);
    drop(enc);
    assert_eq!(super::WIPED.with(|w| w.get()), before + 2, "dropped");
}

#[test]
fn the_provider_pools_every_tls13_suite_and_keeps_tls12_as_ring_has_it() {
    let ours = crypto_provider();
    let ring = rustls::crypto::ring::default_provider();
    let names = |suites: &[SupportedCipherSuite]| -> Vec<CipherSuite> {
        suites.iter().map(|s| s.suite()).collect()
    };
    assert_eq!(names(&ours.cipher_suites), names(&ring.cipher_suites));
    for (a, b) in ours.cipher_suites.iter().zip(&ring.cipher_suites) {
        match (a, b) {
            (SupportedCipherSuite::Tls13(a), SupportedCipherSuite::Tls13(b)) => {
                assert!(
                    !std::ptr::addr_eq(a.aead_alg, b.aead_alg),
                    "{:?}",
                    a.common.suite
                );
            }
            (SupportedCipherSuite::Tls12(a), SupportedCipherSuite::Tls12(b)) => {
                assert!(std::ptr::eq(*a, *b));
            }
            _ => panic!("suite kinds differ"),
        }
    }
}
