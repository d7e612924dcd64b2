//! The TLS filter between a wss connection's socket and its protocol (the reactor's
//! `tls.rs`: partial records held between reads, reads sized to the plaintext room,
//! small writes gathered into records, records the kernel refused kept in order),
//! driven the way a reactor drives it, against a rustls client over a loopback
//! socket. The fuzzer's bytes are a script: how much plaintext each side sends, how
//! the client's records are cut into socket writes, how large each server read is,
//! when key updates come, and whether a byte on the wire is flipped.
//!
//! Properties: nothing panics; what either side receives is always a prefix of what
//! the other sent (a flipped byte ends the connection, it never changes the
//! plaintext); with no flipped byte, once both sides drain, each has received all
//! of it. rustls itself is fuzzed upstream; what is fuzzed here is our code around it.
//!
//! The script may also take over the client's sending side once its handshake is
//! done (from its traffic secret, with its sequence numbers, for the suites with
//! 32-byte keys): then it sends records rustls would not, empty application data
//! and key updates that ask for none, mixed with data, which the server must
//! read past or refuse (its allowance of records without plaintext, rustls' limits)
//! without ever handing on a wrong byte or spinning.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::crypto::cipher::{AeadKey, Iv, MessageEncrypter, OutboundChunks, OutboundPlainMessage};
use rustls::crypto::tls13::OkmBlock;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, ContentType, KeyLog, ProtocolVersion, RootCertStore,
    ServerConfig, SupportedCipherSuite, Tls13CipherSuite,
};
use std::sync::Mutex;
use wsreactor::FuzzSession;

/// The most plaintext one side sends in a run (keeps a run short).
const MAX_SENT: usize = 512 * 1024;

struct Fixture {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    listener: TcpListener,
}

/// Made once per process: a CA, a leaf it signed for localhost, both sides'
/// configurations (the server's from `wsreactor::tls::server_config`), a listener.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .expect("leaf params")
            .signed_by(&key, &issuer)
            .expect("leaf certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let server = wsreactor::tls::server_config(vec![leaf.der().clone()], key)
            .expect("server configuration");
        let mut roots = RootCertStore::empty();
        roots.add(ca_cert.der().clone()).expect("CA root");
        let mut client = ClientConfig::builder_with_provider(wsreactor::client::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.key_log = Arc::new(Secrets);
        Fixture {
            server,
            client: Arc::new(client),
            listener: TcpListener::bind("127.0.0.1:0").expect("a listener"),
        }
    })
}

/// A connected pair (client, server). Both end with a reset, not TIME_WAIT: a
/// fuzzing run makes tens of thousands. No Nagle: a small write right after
/// another would wait for a delayed ACK (40 ms), longer than a drain waits.
fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().expect("an address")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    for s in [&client, &server] {
        let sock = socket2::SockRef::from(s);
        sock.set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
        sock.set_tcp_nodelay(true).expect("TCP_NODELAY");
    }
    client.set_nonblocking(true).expect("non-blocking");
    (client, server)
}

/// The client's first application traffic secret of the run (runs are one at a
/// time in a fuzzing process).
static SECRET: Mutex<Option<Vec<u8>>> = Mutex::new(None);

#[derive(Debug)]
struct Secrets;

impl KeyLog for Secrets {
    fn will_log(&self, label: &str) -> bool {
        label == "CLIENT_TRAFFIC_SECRET_0"
    }
    fn log(&self, label: &str, _: &[u8], secret: &[u8]) {
        if label == "CLIENT_TRAFFIC_SECRET_0" {
            *SECRET
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(secret.to_vec());
        }
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, on `suite`'s hash.
fn expand_label(suite: &Tls13CipherSuite, secret: &[u8], label: &[u8], out: &mut [u8]) {
    let expander = suite.hkdf_provider.expander_for_okm(&OkmBlock::new(secret));
    let len = (out.len() as u16).to_be_bytes();
    let label_len = [6 + label.len() as u8];
    let info: [&[u8]; 5] = [&len, &label_len, b"tls13 ", label, &[0]];
    expander.expand_slice(&info, out).expect("a short output");
}

/// The client's sending side, taken over from rustls (RFC 8446 §5.2, §7.2).
struct Sealer {
    suite: &'static Tls13CipherSuite,
    secret: Vec<u8>,
    encrypter: Box<dyn MessageEncrypter>,
    seq: u64,
}

impl Sealer {
    /// For `secret`, `seq` records into it. `None` for a suite whose key is not
    /// 32 bytes (rustls makes other keys only for itself).
    fn new(suite: &'static Tls13CipherSuite, secret: Vec<u8>, seq: u64) -> Option<Sealer> {
        if suite.aead_alg.key_len() != 32 {
            return None;
        }
        let mut key = [0u8; 32];
        expand_label(suite, &secret, b"key", &mut key);
        let mut iv = [0u8; 12];
        expand_label(suite, &secret, b"iv", &mut iv);
        let encrypter = suite.aead_alg.encrypter(AeadKey::from(key), Iv::new(iv));
        Some(Sealer {
            suite,
            secret,
            encrypter,
            seq,
        })
    }

    fn seal(&mut self, typ: ContentType, payload: &[u8]) -> Vec<u8> {
        let message = OutboundPlainMessage {
            typ,
            version: ProtocolVersion::TLSv1_2,
            payload: OutboundChunks::Single(payload),
        };
        let sealed = self.encrypter.encrypt(message, self.seq).expect("sealed");
        self.seq += 1;
        sealed.encode()
    }

    /// A KeyUpdate that asks for none; the keys move on after it.
    fn key_update(&mut self) -> Vec<u8> {
        let record = self.seal(ContentType::Handshake, &[24, 0, 0, 1, 0]);
        let mut next = vec![0u8; self.secret.len()];
        expand_label(self.suite, &self.secret, b"traffic upd", &mut next);
        *self = Sealer::new(self.suite, next, 0).expect("the same suite");
        record
    }
}

/// Both sides of one run, and what each sent and received.
struct Run {
    server: FuzzSession,
    client: ClientConnection,
    tcp: TcpStream,
    /// The client's records not yet written to the socket.
    wire: Vec<u8>,
    sent_up: Vec<u8>,
    got_up: Vec<u8>,
    sent_down: Vec<u8>,
    got_down: Vec<u8>,
    /// A byte on the wire was flipped: the connection may fail, never lie.
    flipped: bool,
    /// Either side failed or ended; the run stops.
    over: bool,
    /// Key updates the client asked for (rustls fails a peer past 32 in a row).
    key_updates: usize,
    buf: Vec<u8>,
    /// Records of application data the client made (its Finished among them),
    /// and how many of them were made before its keys last moved.
    client_app_records: u64,
    epoch_start: u64,
    /// The client's sending side, once the script took it over.
    sealer: Option<Sealer>,
    /// Records without plaintext were sent: the server may refuse the peer.
    idle_records: bool,
}

/// Plaintext of `len` bytes numbered from `from`, so that any reordering, loss or
/// repetition changes what is compared.
fn pattern(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(|i| (i % 251) as u8).collect()
}

impl Run {
    fn client_sends(&mut self, len: usize) {
        if self.sent_up.len() + len > MAX_SENT {
            return;
        }
        let bytes = pattern(self.sent_up.len(), len);
        match self.sealer.as_mut() {
            Some(sealer) => {
                for chunk in bytes.chunks(16 * 1024) {
                    let record = sealer.seal(ContentType::ApplicationData, chunk);
                    self.wire.extend_from_slice(&record);
                }
            }
            None => self
                .client
                .writer()
                .write_all(&bytes)
                .expect("rustls buffers it"),
        }
        self.sent_up.extend_from_slice(&bytes);
    }

    fn client_records(&mut self) {
        while self.client.wants_write() {
            let mut records = Vec::new();
            self.client.write_tls(&mut records).expect("into a Vec");
            // Counted before any flip: the sequence numbers a takeover goes on from.
            let mut at = 0;
            while at + 5 <= records.len() {
                if records[at] == 23 {
                    self.client_app_records += 1;
                }
                at += 5 + usize::from(u16::from_be_bytes([records[at + 3], records[at + 4]]));
            }
            self.wire.extend_from_slice(&records);
        }
    }

    /// Takes the client's sending side over, if its handshake is done, all it
    /// made is counted, and its suite's keys can be made here.
    fn take_over(&mut self) {
        if self.sealer.is_some() || self.client.is_handshaking() {
            return;
        }
        self.client_records();
        let Some(SupportedCipherSuite::Tls13(suite)) = self.client.negotiated_cipher_suite() else {
            return;
        };
        let Some(mut secret) = SECRET
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        else {
            return;
        };
        // Its Finished was the first record of type 23; each key update since
        // moved the secret on.
        for _ in 0..self.key_updates {
            let mut next = vec![0u8; secret.len()];
            expand_label(suite, &secret, b"traffic upd", &mut next);
            secret = next;
        }
        let start = if self.key_updates == 0 {
            1
        } else {
            self.epoch_start
        };
        let seq = self.client_app_records.saturating_sub(start);
        self.sealer = Sealer::new(suite, secret, seq);
    }

    /// Records rustls would not send: `n` empty ones, then, if `update`, a key
    /// update that asks for none.
    fn client_idle_records(&mut self, n: usize, update: bool) {
        let Some(sealer) = self.sealer.as_mut() else {
            return;
        };
        for _ in 0..n {
            let record = sealer.seal(ContentType::ApplicationData, &[]);
            self.wire.extend_from_slice(&record);
        }
        if update {
            let record = sealer.key_update();
            self.wire.extend_from_slice(&record);
        }
        self.idle_records = true;
    }

    /// Writes up to `n` bytes of the client's records to the socket.
    fn client_writes(&mut self, n: usize) {
        let n = n.min(self.wire.len());
        match self.tcp.write(&self.wire[..n]) {
            Ok(done) => {
                self.wire.drain(..done);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.over = true,
        }
    }

    fn server_reads(&mut self, size: usize) {
        if self.server.sealed() {
            return; // a reactor does not read while records wait
        }
        let size = size.min(self.buf.len());
        // The reactor's budget is in bytes off the wire: a read's worth here.
        match self.server.read(&mut self.buf[..size], size) {
            Ok(0) => self.over = true,
            Ok(n) => self.got_up.extend_from_slice(&self.buf[..n]),
            // Interrupted: records without plaintext spent the budget (read on later).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => self.over = true,
        }
    }

    fn server_writes(&mut self, len: usize) {
        if self.sent_down.len() + len > MAX_SENT {
            return;
        }
        let bytes = pattern(self.sent_down.len(), len);
        // Two pieces, as a frame header and its payload.
        let cut = len.min(4);
        let pieces = [IoSlice::new(&bytes[..cut]), IoSlice::new(&bytes[cut..])];
        match self.server.write(&pieces) {
            Ok(n) => self.sent_down.extend_from_slice(&bytes[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => self.over = true,
        }
    }

    /// The server's records out, and the client takes what arrived.
    fn client_receives(&mut self) {
        if self.server.flush().is_err() {
            self.over = true;
            return;
        }
        loop {
            match self.client.read_tls(&mut self.tcp) {
                Ok(0) => break,
                Ok(_) => {
                    if self.client.process_new_packets().is_err() {
                        // Only a flipped byte may make the server's records wrong.
                        assert!(self.flipped, "the client refused the server's records");
                        self.over = true;
                        return;
                    }
                    // rustls holds 16 KiB of received plaintext at most: take it.
                    self.client_takes_plaintext();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.over = true;
                    return;
                }
            }
        }
        self.client_takes_plaintext();
    }

    fn client_takes_plaintext(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.client.reader().read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.got_down.extend_from_slice(&chunk[..n]),
                Err(_) => break,
            }
        }
    }

    /// A connection ends only for a flipped byte, rustls' key-update limit, or
    /// records without plaintext (rustls' limits and the server's allowance).
    fn ended_for_a_reason(&self) {
        assert!(
            self.flipped || self.key_updates >= 32 || self.idle_records,
            "the connection ended with nothing wrong on the wire"
        );
    }

    fn check(&self) {
        assert!(
            self.sent_up.starts_with(&self.got_up),
            "the server received {} bytes that are not what the client sent",
            self.got_up.len()
        );
        assert!(
            self.sent_down.starts_with(&self.got_down),
            "the client received {} bytes that are not what the server sent",
            self.got_down.len()
        );
    }

    /// Everything written and read until both sides hold all the other sent (the
    /// loopback delivers at once; a second without progress is a hang).
    fn drain(&mut self) {
        for round in 0..2000 {
            if round >= 1000 {
                std::thread::sleep(Duration::from_millis(1));
            }
            if self.over {
                return;
            }
            self.client_records();
            self.client_writes(usize::MAX);
            self.server_reads(usize::MAX);
            self.client_receives();
            self.check();
            if self.got_up.len() == self.sent_up.len()
                && self.got_down.len() == self.sent_down.len()
                && self.wire.is_empty()
            {
                return;
            }
        }
        panic!(
            "no progress: server has {} of {} bytes, client {} of {}",
            self.got_up.len(),
            self.sent_up.len(),
            self.got_down.len(),
            self.sent_down.len()
        );
    }
}

/// The target: see the module's docs for the script's meaning.
pub fn tls_server(data: &[u8]) {
    run(data);
}

/// Runs the script `data`; the run, unless the session could not start.
fn run(data: &[u8]) -> Option<Run> {
    let fixture = fixture();
    let (tcp, server_tcp) = pair(&fixture.listener);
    let Ok(server) = FuzzSession::new(fixture.server.clone(), server_tcp) else {
        return None;
    };
    let name = ServerName::try_from("localhost").expect("a name");
    let mut client = ClientConnection::new(fixture.client.clone(), name).expect("a client");
    client.set_buffer_limit(None);
    let mut run = Run {
        server,
        client,
        tcp,
        wire: Vec::new(),
        sent_up: Vec::new(),
        got_up: Vec::new(),
        sent_down: Vec::new(),
        got_down: Vec::new(),
        flipped: false,
        over: false,
        key_updates: 0,
        // The reactor's scratch buffer is 64 KiB; a read asks for at least a record.
        buf: vec![0; 64 * 1024],
        client_app_records: 0,
        epoch_start: 0,
        sealer: None,
        idle_records: false,
    };
    *SECRET
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    let mut script = data.iter().copied();
    while let Some(op) = script.next() {
        let arg = usize::from(script.next().unwrap_or(0));
        match op % 8 {
            0 => run.client_sends(arg * 97),
            1 => run.client_records(),
            2 => run.client_writes(1 + arg * arg),
            3 => run.server_reads(16 * 1024 + 256 + arg * 190),
            4 => run.client_receives(),
            5 => run.server_writes(arg * 131),
            6 => {
                if run.sealer.is_some() {
                    // Taken over: arg's low bits say how many empty records come
                    // first, its top bit whether a key update follows.
                    run.client_idle_records(arg % 64, arg >= 128);
                } else if arg == 255 {
                    run.take_over();
                } else if !run.client.is_handshaking() {
                    run.client_records();
                    if run.client.refresh_traffic_keys().is_ok() {
                        run.key_updates += 1;
                        run.client_records();
                        run.epoch_start = run.client_app_records;
                    }
                }
            }
            _ => {
                if !run.wire.is_empty() {
                    let at = arg * 61 % run.wire.len();
                    run.wire[at] ^= 1 << (op >> 5);
                    run.flipped = true;
                }
            }
        }
        run.check();
        if run.over {
            run.ended_for_a_reason();
            return Some(run);
        }
    }
    if !run.flipped {
        run.drain();
        if run.over {
            run.ended_for_a_reason();
        } else {
            assert!(
                run.got_up == run.sent_up && run.got_down == run.sent_down,
                "drained but not whole"
            );
        }
    }

    let _ = run.tcp.shutdown(Shutdown::Both);
    Some(run)
}

#[cfg(test)]
mod tests {
    /// A script through the handshake, a key update of rustls', the takeover,
    /// and empty records and key updates of ours between data: drained whole.
    #[test]
    fn a_taken_over_client_sends_records_the_server_reads_past() {
        let handshake: &[u8] = &[1, 0, 2, 255, 3, 255, 4, 0, 1, 0, 2, 255, 3, 255];
        let mut script = Vec::new();
        for _ in 0..3 {
            script.extend_from_slice(handshake);
        }
        script.extend_from_slice(&[0, 10, 1, 0, 2, 255, 3, 0]);
        script.extend_from_slice(&[6, 0, 0, 5, 1, 0, 2, 255, 3, 0, 4, 0]);
        script.extend_from_slice(&[6, 255, 0, 7, 6, 3, 2, 255, 3, 0]);
        script.extend_from_slice(&[6, 130, 0, 9, 6, 200, 0, 4, 2, 255, 3, 0, 5, 3, 4, 0]);
        let run = super::run(&script).expect("a session");
        assert!(run.sealer.is_some(), "taken over");
        assert!(run.idle_records && run.key_updates == 1 && !run.over);
        assert_eq!(run.got_up, run.sent_up);
    }
}
