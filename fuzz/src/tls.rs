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

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};
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
        let client = ClientConfig::builder_with_provider(wsreactor::client::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
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
        self.client
            .writer()
            .write_all(&bytes)
            .expect("rustls buffers it");
        self.sent_up.extend_from_slice(&bytes);
    }

    fn client_records(&mut self) {
        while self.client.wants_write() {
            self.client.write_tls(&mut self.wire).expect("into a Vec");
        }
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

    /// A connection ends only for a flipped byte or rustls' key-update limit.
    fn ended_for_a_reason(&self) {
        assert!(
            self.flipped || self.key_updates >= 32,
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
    let fixture = fixture();
    let (tcp, server_tcp) = pair(&fixture.listener);
    let Ok(server) = FuzzSession::new(fixture.server.clone(), server_tcp) else {
        return;
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
    };
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
                if !run.client.is_handshaking() && run.client.refresh_traffic_keys().is_ok() {
                    run.key_updates += 1;
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
            return;
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
}
