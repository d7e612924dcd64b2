//! Traffic keys an idle connection does not hold.
//!
//! A TLS 1.3 session keeps one AEAD key per direction, and rustls' *ring* provider
//! keeps each in ring's working form: AES round keys and the GHASH table, 560 bytes
//! on the heap a key, for as long as the connection lives. Of an idle wss
//! connection's 3.5 KiB that was the largest part rustls let us choose.
//!
//! The TLS 1.3 cipher suites of [`crypto_provider`] keep only the key's bytes and
//! the IV in the session (a box of 72 bytes a direction). The working form lives in
//! a pool of the thread that uses it: made on the first record, found again by the
//! key's id on every record after, and let go when the session drops the key or
//! when a [`sweep`] finds it unused since the one before. A reactor sweeps every
//! `Config::tls_key_release` (250 ms), so a connection quiet for half a second holds
//! its keys' bytes only, and a busy one pays a hash lookup per record, plus one
//! expansion (0.2–0.3 µs) each time it wakes. On a thread that never sweeps (a
//! client's), a key's working form lives as long as the key, as with rustls' own
//! provider. A key has one home pool, the first thread's that used it; used on
//! another thread (a client on a work-stealing runtime), it is expanded for the
//! record and wiped after; dropped on another thread, it tells its home, which
//! lets it go at its next use. A working form is overwritten before it is freed.
//!
//! The records themselves are made and opened as RFC 8446 §5.2 says, with rustls'
//! public pieces for providers (nonce, additional data, padding removal) and ring's
//! AEAD; TLS 1.2 suites are ring's own, unchanged.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ring::aead;
use rustls::crypto::CryptoProvider;
use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter, MessageEncrypter,
    Nonce, OutboundOpaqueMessage, OutboundPlainMessage, PrefixedPayload, Tls13AeadAlgorithm,
    UnsupportedOperationError, make_tls13_aad,
};
use rustls::{
    CipherSuite, CipherSuiteCommon, ConnectionTrafficSecrets, ContentType, Error, ProtocolVersion,
    SupportedCipherSuite, Tls13CipherSuite,
};

/// rustls' *ring* provider, as rustls builds it. rustls 0.23.48 deprecated it for
/// its lack of post-quantum key exchange, to steer users to aws-lc-rs; the `tls`
/// feature keeps *ring* on purpose (no C and CMake build of aws-lc, the traffic
/// keys held by ring's types in `src/tls/keys.rs`), so this is the one place that
/// allows it. CI builds with the newest compatible dependencies and `-D deprecated`
/// (tests/fresh-deps.sh), so any other deprecation fails there.
#[allow(deprecated)]
pub(crate) fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// rustls' *ring* provider with its TLS 1.3 suites keeping their keys in the
/// thread's pool (`src/tls/keys.rs` says how); everything else is ring's.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    let mut provider = ring_provider();
    for suite in &mut provider.cipher_suites {
        *suite = pooled(*suite);
    }
    Arc::new(provider)
}

/// `suite` with its AEAD keys pooled, if it is one of ring's TLS 1.3 suites.
fn pooled(suite: SupportedCipherSuite) -> SupportedCipherSuite {
    static SUITES: OnceLock<Vec<Tls13CipherSuite>> = OnceLock::new();
    let SupportedCipherSuite::Tls13(ring_suite) = suite else {
        return suite;
    };
    let suites = SUITES.get_or_init(|| {
        rustls::crypto::ring::ALL_CIPHER_SUITES
            .iter()
            .filter_map(|s| match s {
                SupportedCipherSuite::Tls13(s) => Some(Tls13CipherSuite {
                    common: CipherSuiteCommon {
                        suite: s.common.suite,
                        hash_provider: s.common.hash_provider,
                        confidentiality_limit: s.common.confidentiality_limit,
                    },
                    hkdf_provider: s.hkdf_provider,
                    aead_alg: pooled_aead(s.common.suite)?,
                    quic: s.quic,
                }),
                SupportedCipherSuite::Tls12(_) => None,
            })
            .collect()
    });
    suites
        .iter()
        .find(|s| s.common.suite == ring_suite.common.suite)
        .map_or(suite, SupportedCipherSuite::Tls13)
}

fn pooled_aead(suite: CipherSuite) -> Option<&'static dyn Tls13AeadAlgorithm> {
    static AES_128_GCM: Pooled = Pooled(&aead::AES_128_GCM);
    static AES_256_GCM: Pooled = Pooled(&aead::AES_256_GCM);
    static CHACHA20_POLY1305: Pooled = Pooled(&aead::CHACHA20_POLY1305);
    match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => Some(&AES_128_GCM),
        CipherSuite::TLS13_AES_256_GCM_SHA384 => Some(&AES_256_GCM),
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => Some(&CHACHA20_POLY1305),
        _ => None,
    }
}

/// Lets go the keys of this thread's pool unused since the last sweep (their
/// working form wiped: see `Expanded`'s drop).
pub(crate) fn sweep() {
    let _ = POOL.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut() {
            take_orphans(&mut pool);
            pool.retain(|_, expanded| std::mem::take(&mut expanded.used));
            if pool.capacity() > 2 * pool.len() + 16 {
                pool.shrink_to_fit();
            }
        }
    });
}

type Pool = HashMap<u64, Box<Expanded>, BuildHasherDefault<IdHasher>>;

/// Where a key dropped on another thread than the one whose pool holds its
/// working form (a client on a work-stealing runtime) leaves its id, for that pool
/// to let go at its next use: without it, the working form stayed there for the
/// thread's life.
#[derive(Default)]
struct Inbox {
    pending: AtomicBool,
    ids: Mutex<Vec<u64>>,
}

/// Lets go the working forms of keys dropped on other threads.
fn take_orphans(pool: &mut Pool) {
    let _ = INBOX.try_with(|inbox| {
        if inbox.pending.swap(false, Relaxed) {
            let ids =
                std::mem::take(&mut *inbox.ids.lock().unwrap_or_else(PoisonError::into_inner));
            for id in ids {
                pool.remove(&id);
            }
        }
    });
}

#[cfg(test)]
thread_local! {
    /// Working forms wiped on this thread (tests only).
    pub(crate) static WIPED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Keys in this thread's pool.
#[cfg(test)]
pub(crate) fn pooled_count() -> usize {
    POOL.try_with(|pool| pool.try_borrow().map_or(0, |p| p.len()))
        .unwrap_or(0)
}

/// Ids are unique for the process's life, so a pool never mistakes one key for
/// another, whichever thread made or dropped it.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(HashMap::default());
    static INBOX: Arc<Inbox> = Arc::new(Inbox::default());
}

/// A key in ring's working form. Boxed in the pool, so that the table's spare
/// room costs a pointer a bucket, not 540 bytes.
struct Expanded {
    key: aead::LessSafeKey,
    used: bool,
}

impl Drop for Expanded {
    /// Overwrites the working form with one made from a key of zeros before it is
    /// freed (swept, dropped with its key, or with the thread's pool): freed
    /// memory keeps no round keys. ring's keys are not zeroed on drop; this store
    /// is kept by `black_box`, as a write before a free may otherwise be
    /// optimised away.
    fn drop(&mut self) {
        #[cfg(test)]
        WIPED.with(|w| w.set(w.get() + 1));
        let algorithm = self.key.algorithm();
        let zeros = [0u8; 32];
        if let Ok(zero) = aead::UnboundKey::new(algorithm, &zeros[..algorithm.key_len()]) {
            self.key = aead::LessSafeKey::new(zero);
            std::hint::black_box(&self.key);
        }
    }
}

/// The ids are a counter: their low bits spread them well enough as they are.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, id: u64) {
        // hashbrown takes its control bits from the top seven: spread the counter.
        self.0 = id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A TLS 1.3 AEAD whose keys go to the pool.
struct Pooled(&'static aead::Algorithm);

impl Tls13AeadAlgorithm for Pooled {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Sealer(Key::new(self.0, key, iv)))
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Opener(Key::new(self.0, key, iv)))
    }

    fn key_len(&self) -> usize {
        self.0.key_len()
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        if self.0 == &aead::AES_128_GCM {
            Ok(ConnectionTrafficSecrets::Aes128Gcm { key, iv })
        } else if self.0 == &aead::AES_256_GCM {
            Ok(ConnectionTrafficSecrets::Aes256Gcm { key, iv })
        } else if self.0 == &aead::CHACHA20_POLY1305 {
            Ok(ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv })
        } else {
            Err(UnsupportedOperationError)
        }
    }
}

/// A key as a session holds it: its bytes (zeroed on drop by `AeadKey`), its IV,
/// the id of its working form in the pool, and the inbox of the thread whose pool
/// holds it (its home: the first thread that used it; on any other thread the
/// working form is made for the record and wiped after it).
struct Key {
    id: u64,
    algorithm: &'static aead::Algorithm,
    bytes: AeadKey,
    iv: Iv,
    home: OnceLock<Arc<Inbox>>,
}

impl Key {
    fn new(algorithm: &'static aead::Algorithm, bytes: AeadKey, iv: Iv) -> Self {
        let id = NEXT_ID.fetch_add(1, Relaxed);
        Self {
            id,
            algorithm,
            bytes,
            iv,
            home: OnceLock::new(),
        }
    }

    fn nonce(&self, seq: u64) -> aead::Nonce {
        aead::Nonce::assume_unique_for_key(Nonce::new(&self.iv, seq).0)
    }

    fn tag_len(&self) -> usize {
        self.algorithm.tag_len()
    }

    /// Runs `f` with the key's working form, made first if the pool lacks it.
    /// `Err` only if the key's bytes do not fit the algorithm (rustls makes them
    /// to its length) or the thread is exiting.
    fn with<R>(&self, f: impl FnOnce(&aead::LessSafeKey) -> R) -> Result<R, ()> {
        let inbox = INBOX.try_with(Arc::clone).map_err(|_| ())?;
        let home = self.home.get_or_init(|| inbox.clone());
        if !Arc::ptr_eq(home, &inbox) {
            // Not its home thread: made for this record only.
            let unbound =
                aead::UnboundKey::new(self.algorithm, self.bytes.as_ref()).map_err(|_| ())?;
            let expanded = Expanded {
                key: aead::LessSafeKey::new(unbound),
                used: true,
            };
            return Ok(f(&expanded.key));
        }
        POOL.try_with(|pool| {
            let mut pool = pool.try_borrow_mut().map_err(|_| ())?;
            take_orphans(&mut pool);
            let expanded = match pool.entry(self.id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let unbound = aead::UnboundKey::new(self.algorithm, self.bytes.as_ref())
                        .map_err(|_| ())?;
                    e.insert(Box::new(Expanded {
                        key: aead::LessSafeKey::new(unbound),
                        used: true,
                    }))
                }
            };
            expanded.used = true;
            Ok(f(&expanded.key))
        })
        .map_err(|_| ())?
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        let Some(home) = self.home.get() else {
            return; // never used: nothing was made
        };
        let at_home = INBOX
            .try_with(|inbox| Arc::ptr_eq(home, inbox))
            .unwrap_or(false);
        if at_home {
            let _ = POOL.try_with(|pool| {
                if let Ok(mut pool) = pool.try_borrow_mut() {
                    pool.remove(&self.id);
                }
            });
        } else {
            // Its home lets it go at its next use or sweep.
            home.ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self.id);
            home.pending.store(true, Relaxed);
        }
    }
}

/// Makes TLS 1.3 records (RFC 8446 §5.2): the plaintext, its content type, no
/// padding, sealed with the record header as additional data.
struct Sealer(Key);

impl MessageEncrypter for Sealer {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let sealed_len = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(sealed_len);
        payload.extend_from_chunks(&msg.payload);
        payload.extend_from_slice(&msg.typ.to_array());
        let nonce = self.0.nonce(seq);
        let aad = aead::Aad::from(make_tls13_aad(sealed_len));
        self.0
            .with(|key| key.seal_in_place_append_tag(nonce, aad, &mut payload))
            .map_err(|()| Error::EncryptError)?
            .map_err(|_| Error::EncryptError)?;
        // TLS 1.3 records say TLS 1.2 and application data on the outside.
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + self.0.tag_len()
    }
}

/// Opens TLS 1.3 records: checks the tag, then strips the padding and takes the
/// real content type from the end (rustls' `into_tls13_unpadded_message`).
struct Opener(Key);

impl MessageDecrypter for Opener {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let payload = &mut msg.payload;
        if payload.len() < self.0.tag_len() {
            return Err(Error::DecryptError);
        }
        let nonce = self.0.nonce(seq);
        let aad = aead::Aad::from(make_tls13_aad(payload.len()));
        let plain_len = self
            .0
            .with(|key| key.open_in_place(nonce, aad, payload).map(|p| p.len()))
            .map_err(|()| Error::DecryptError)?
            .map_err(|_| Error::DecryptError)?;
        payload.truncate(plain_len);
        msg.into_tls13_unpadded_message()
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
