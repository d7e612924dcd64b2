//! wss:// for the load clients (feature `tls`: rustls with ring, as wsreactor's).
//!
//! A client's TLS session sits between its socket and its protocol role: plaintext
//! in and out, records on the socket. rustls buffers what the socket does not take
//! (a load generator wants every message sent, not a bound).

use std::io;
use std::path::{Path, PathBuf};

use mio::net::TcpStream;

/// How a run's clients make their TLS sessions.
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub struct Options {
    #[cfg(feature = "tls")]
    config: std::sync::Arc<rustls::ClientConfig>,
    #[cfg(feature = "tls")]
    name: rustls::pki_types::ServerName<'static>,
}

/// The TLS options for `url`: `None` for ws:// (and tcp://). wss:// needs wsload
/// built with `--features tls`, and `ca` (a PEM file of trusted roots) or
/// `insecure` (no verification: load runs on this machine only). Sessions are
/// resumed on later connections only with `resume`.
pub fn options(
    url: &str,
    ca: Option<&Path>,
    insecure: bool,
    resume: bool,
) -> Result<Option<Options>, String> {
    let Some(rest) = url.strip_prefix("wss://") else {
        return Ok(None);
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    build(host, ca, insecure, resume).map(Some)
}

#[cfg(not(feature = "tls"))]
fn build(_: &str, _: Option<&Path>, _: bool, _: bool) -> Result<Options, String> {
    Err("wss:// needs wsload built with --features tls".into())
}

#[cfg(feature = "tls")]
fn build(host: &str, ca: Option<&Path>, insecure: bool, resume: bool) -> Result<Options, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;

    let provider = wsreactor::client::crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth()
    } else {
        let ca = ca.ok_or("wss:// needs --ca PEM or --insecure")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca:?}: {e}"))? {
            let cert = cert.map_err(|e| format!("{ca:?}: {e}"))?;
            roots.add(cert).map_err(|e| format!("{ca:?}: {e}"))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    Ok(Options {
        config: Arc::new(config),
        name,
    })
}

/// `wsload cert`: writes into `dir` (made if missing) a CA (`ca.pem`, for `--ca`), and
/// a certificate it signed for `localhost` and 127.0.0.1 (`cert.pem`) with its key
/// (`key.pem`, readable by the owner only) for the server, ECDSA P-256 all; returns
/// the three paths. A CA and a leaf, as the README's openssl recipe: clients trust the
/// CA. The CA's key is dropped, so nothing else is ever signed with it.
#[cfg(feature = "tls")]
pub fn write_certs(dir: &Path) -> Result<[PathBuf; 3], String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let rcgen = |e: rcgen::Error| format!("making the certificates: {e}");
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(rcgen)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "wsload test CA");
    let ca_key = KeyPair::generate().map_err(rcgen)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(rcgen)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(rcgen)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().map_err(rcgen)?;
    let cert = leaf.signed_by(&key, &issuer).map_err(rcgen)?;

    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let paths = ["ca.pem", "cert.pem", "key.pem"].map(|name| dir.join(name));
    let contents = [ca_cert.pem(), cert.pem(), key.serialize_pem()];
    for ((path, pem), mode) in paths.iter().zip(contents).zip([0o644, 0o644, 0o600]) {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .and_then(|mut f| f.write_all(pem.as_bytes()))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(paths)
}

#[cfg(not(feature = "tls"))]
pub fn write_certs(_: &Path) -> Result<[PathBuf; 3], String> {
    Err("wsload cert needs wsload built with --features tls".into())
}

/// `--insecure`: every certificate is taken; signatures are still checked, so the
/// handshake costs the server what a verified one does.
#[cfg(feature = "tls")]
#[derive(Debug)]
struct Unverified(std::sync::Arc<rustls::crypto::CryptoProvider>);

#[cfg(feature = "tls")]
impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Handshakes completed in this process: full, resumed.
static FULL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static RESUMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The handshakes completed so far, (full, resumed): the report says which kind a
/// run measured.
pub fn handshakes() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (FULL.load(Relaxed), RESUMED.load(Relaxed))
}

/// One client's TLS session.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub struct Session {
    #[cfg(feature = "tls")]
    tls: Box<rustls::ClientConnection>,
    /// Its handshake is counted.
    #[cfg(feature = "tls")]
    counted: bool,
}

#[cfg(feature = "tls")]
impl Session {
    pub fn new(options: &Options) -> io::Result<Session> {
        let mut tls = rustls::ClientConnection::new(options.config.clone(), options.name.clone())
            .map_err(io::Error::other)?;
        tls.set_buffer_limit(None);
        Ok(Session {
            tls: Box::new(tls),
            counted: false,
        })
    }

    /// Encrypts `bytes` and writes what the socket takes (the rest waits in rustls).
    pub fn send(&mut self, stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut self.tls.writer(), bytes)?;
        self.flush(stream)
    }

    /// Writes the records waiting for the socket.
    pub fn flush(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether records wait for the socket.
    pub fn waiting(&self) -> bool {
        self.tls.wants_write()
    }

    /// Reads plaintext into `buf`: `Ok(0)` at the end, `WouldBlock` when the socket
    /// is drained and nothing was decrypted.
    pub fn read(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match io::Read::read(&mut self.tls.reader(), buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(stream) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    self.tls
                        .process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    if !self.counted && !self.tls.is_handshaking() {
                        self.counted = true;
                        let kind = self.tls.handshake_kind();
                        let counter = if kind == Some(rustls::HandshakeKind::Resumed) {
                            &RESUMED
                        } else {
                            &FULL
                        };
                        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    // Handshake messages, key updates: out at once.
                    self.flush(stream)?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(not(feature = "tls"))]
impl Session {
    pub fn new(options: &Options) -> io::Result<Session> {
        let _ = options;
        Err(io::ErrorKind::Unsupported.into())
    }
    pub fn send(&mut self, _: &mut TcpStream, _: &[u8]) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    pub fn waiting(&self) -> bool {
        false
    }
    pub fn read(&mut self, _: &mut TcpStream, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
}
