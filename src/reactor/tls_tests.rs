//! [`Sessions::read`] against a rustls client over a real socket, driven step by
//! step so that what reaches the kernel in one read is chosen, not left to timing.

use std::io::Write;
use std::net::{Shutdown, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::Sessions;

/// How long a wait may last before the test calls it a hang (as `tests/util`'s
/// `PATIENCE`): a guard, never a measure.
const PATIENCE: Duration = Duration::from_secs(60);

/// A server and a client configuration: a CA, and a leaf it signed for localhost.
fn configs() -> (super::TlsConfig, Arc<ClientConfig>) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server = crate::tls::server_config(vec![leaf.der().clone()], key).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let client = ClientConfig::builder_with_provider(crate::client::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (server, Arc::new(client))
}

/// A wss session on the server side of a loopback connection, and a rustls client
/// on the other, before the handshake.
struct Connected {
    client_tcp: std::net::TcpStream,
    stream: mio::net::TcpStream,
    sessions: Sessions,
    client: ClientConnection,
}

fn connected() -> Connected {
    let (server_config, client_config) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client_tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server_tcp, _) = listener.accept().unwrap();
    server_tcp.set_nonblocking(true).unwrap();
    let mut sessions = Sessions::default();
    assert!(sessions.start(0, 1, &server_config));
    let name = ServerName::try_from("localhost").unwrap();
    Connected {
        client_tcp,
        stream: mio::net::TcpStream::from_std(server_tcp),
        sessions,
        client: ClientConnection::new(client_config, name).unwrap(),
    }
}

/// The client's first flight (its ClientHello record).
fn client_hello(client: &mut ClientConnection) -> Vec<u8> {
    let mut hello = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut hello).unwrap();
    }
    assert_eq!(hello[0], 22, "a handshake record");
    hello
}

/// Waits until the kernel holds `len` bytes for the server's side to read: what the
/// next read takes is then what the test wrote, not what had arrived by then.
fn wait_readable(stream: &mio::net::TcpStream, len: usize) {
    let mut peeked = vec![0u8; len];
    let deadline = Instant::now() + PATIENCE;
    while stream.peek(&mut peeked).unwrap_or(0) < len {
        assert!(Instant::now() < deadline, "{len} bytes did not arrive");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reads plaintext from the session until `want` bytes (or a hang).
fn read_plain(
    sessions: &mut Sessions,
    stream: &mut mio::net::TcpStream,
    buf: &mut [u8],
    want: usize,
) -> Vec<u8> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        match sessions.read(0, 1, stream, buf, usize::MAX).result {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("the session failed after {} bytes: {e:?}", got.len()),
        }
    }
    got
}

/// The client's Finished and 100 KB of application data behind it wait in the
/// kernel together, more than the 20 KiB plaintext buffer (a whole record's and
/// some; the reactor's is 64 KiB) takes: the read during the handshake is sized by
/// the plaintext room too, since the records after the Finished may be application
/// data (it once read up to 128 KiB and failed with "plaintext past the buffer").
#[test]
fn application_data_behind_the_clients_finished_is_read_in_pieces() {
    let Connected {
        mut client_tcp,
        mut stream,
        mut sessions,
        mut client,
    } = connected();
    client.set_buffer_limit(None);
    let mut buf = vec![0u8; 20 * 1024];

    // The handshake up to the client's Finished, which the client holds back.
    let deadline = Instant::now() + PATIENCE;
    while client.is_handshaking() {
        assert!(Instant::now() < deadline, "the handshake did not finish");
        let mut written = 0;
        while client.wants_write() {
            written += client.write_tls(&mut client_tcp).unwrap();
        }
        if written == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        wait_readable(&stream, written);
        let result = sessions
            .read(0, 1, &mut stream, &mut buf, usize::MAX)
            .result;
        assert!(
            matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "no plaintext during the handshake: {result:?}"
        );
        while !sessions.flush(0, 1, &mut stream).unwrap() {}
        client_tcp.set_nonblocking(true).unwrap();
        while let Ok(n) = client.read_tls(&mut client_tcp) {
            if n == 0 {
                break;
            }
            client.process_new_packets().unwrap();
        }
        client_tcp.set_nonblocking(false).unwrap();
    }

    // The Finished and the data in one write (from a thread: the kernel may not
    // take it all before the server reads), in the kernel before the read: all of
    // it, or 64 KiB, far more than the buffer takes, where the kernel holds less.
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    client.writer().write_all(&data).unwrap();
    let mut flight = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut flight).unwrap();
    }
    assert!(flight.len() > data.len());
    let waiting = flight.len().min(64 * 1024);
    let mut writer = client_tcp.try_clone().unwrap();
    let written = std::thread::spawn(move || writer.write_all(&flight));
    wait_readable(&stream, waiting);

    let got = read_plain(&mut sessions, &mut stream, &mut buf, data.len());
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the plaintext differs");
    written.join().unwrap().unwrap();

    // And the stream's end after it is the end, not an error.
    client.send_close_notify();
    while client.wants_write() {
        client.write_tls(&mut client_tcp).unwrap();
    }
    client_tcp.shutdown(Shutdown::Write).unwrap();
    assert!(read_plain(&mut sessions, &mut stream, &mut buf, 1).is_empty());
}

/// A handshake message split across records, its first part in: rustls keeps its
/// bounds as offsets into the bytes the session holds. A write meanwhile (the
/// reactor writes to a connection whose peer is mid-KeyUpdate, say) must hand
/// rustls those bytes, not an empty buffer: it once panicked there, which would
/// take the reactor thread down. Here the message is the ClientHello.
#[test]
fn a_write_while_a_split_handshake_message_waits_does_not_panic() {
    let Connected {
        mut client_tcp,
        mut stream,
        mut sessions,
        mut client,
    } = connected();

    // The ClientHello record, its body cut in two records of its own.
    let hello = client_hello(&mut client);
    let body = &hello[5..];
    let record = |part: &[u8]| {
        let mut r = vec![22, hello[1], hello[2]];
        r.extend_from_slice(&(part.len() as u16).to_be_bytes());
        r.extend_from_slice(part);
        r
    };
    let (first, second) = body.split_at(body.len() / 2);
    let (first, second) = (record(first), record(second));
    client_tcp.write_all(&first).unwrap();
    wait_readable(&stream, first.len());
    let mut buf = vec![0u8; 20 * 1024];
    let result = sessions
        .read(0, 1, &mut stream, &mut buf, usize::MAX)
        .result;
    assert!(matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));

    // A write and a close_notify while the second half is awaited.
    let written = sessions.sink(0, 1, true, &mut stream).write(b"not yet");
    assert!(
        written.is_err(),
        "no plaintext before the handshake: {written:?}"
    );
    sessions.close_notify(0, 1);

    // The second half completes the ClientHello: the handshake goes on.
    client_tcp.write_all(&second).unwrap();
    wait_readable(&stream, second.len());
    let result = sessions
        .read(0, 1, &mut stream, &mut buf, usize::MAX)
        .result;
    assert!(matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
    while !sessions.flush(0, 1, &mut stream).unwrap() {}
    let mut flight = vec![0u8; 16 * 1024];
    client_tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let n = std::io::Read::read(&mut client_tcp, &mut flight).unwrap();
    assert_eq!(flight[0], 22, "the ServerHello follows ({n} bytes)");
}

/// A record holding the ClientHello and two messages rustls refuses behind it: the
/// read fails with rustls' alert, made from the bytes rustls was not done with (an
/// empty buffer there once panicked on offsets rustls held: the fuzz target
/// `tls_server` found it; this record does not reach that state, the fuzzer's did).
#[test]
fn a_refused_message_with_another_behind_it_is_an_alert_not_a_panic() {
    let Connected {
        mut client_tcp,
        mut stream,
        mut sessions,
        mut client,
    } = connected();
    let hello = client_hello(&mut client);
    // The ClientHello, then two ClientKeyExchanges, which TLS 1.3 does not have.
    let mut body = hello[5..].to_vec();
    body.extend_from_slice(&[16, 0, 0, 4, 1, 2, 3, 4, 16, 0, 0, 4, 1, 2, 3, 4]);
    let mut bytes = vec![22, hello[1], hello[2]];
    bytes.extend_from_slice(&(body.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&body);
    client_tcp.write_all(&bytes).unwrap();
    wait_readable(&stream, bytes.len());
    let mut buf = vec![0u8; 20 * 1024];
    let result = sessions
        .read(0, 1, &mut stream, &mut buf, usize::MAX)
        .result;
    assert!(
        matches!(&result, Err(e) if e.kind() == std::io::ErrorKind::InvalidData),
        "{result:?}"
    );
}

/// A TLS connection whose session is missing (or belongs to the slot's previous
/// connection) is a bug of ours: its writes fail, which closes it, and its peer
/// never gets a plaintext byte. (The sink used to fall back to the plain socket.)
#[test]
fn a_tls_connection_without_its_session_gets_no_plaintext() {
    let Connected {
        mut client_tcp,
        mut stream,
        mut sessions,
        ..
    } = connected();
    let pieces = [std::io::IoSlice::new(b"secret plaintext")];
    // Slot 0 has a session of generation 1; generation 2 and slot 1 have none.
    for (key, generation) in [(0, 2), (1, 1)] {
        let mut sink = sessions.sink(key, generation, true, &mut stream);
        let written = sink.write_vectored(&pieces);
        assert!(written.is_err(), "{written:?}");
        assert!(sessions.flush(key, generation, &mut stream).is_err());
    }
    // Plain connections are written as they are.
    let mut sink = sessions.sink(1, 1, false, &mut stream);
    assert_eq!(sink.write_vectored(&pieces).unwrap(), 16);
    drop(stream);
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut client_tcp, &mut got).unwrap();
    assert_eq!(
        got, b"secret plaintext",
        "only the plain write reached the wire"
    );
}
