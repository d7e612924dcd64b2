//! wss:// in the server (feature `tls`): rustls with the *ring* provider, the
//! same choice as the client's (see [`client::crypto_provider`](crate::client::crypto_provider)),
//! whose TLS 1.3 suites keep their traffic keys out of idle connections
//! ([`crypto_provider`]: build your own [`ServerConfig`] on it to keep that).
//!
//! TLS runs inside the reactors, between the socket and the protocol: the same
//! threads, handler and limits serve ws:// and wss://. Give the server a
//! [`rustls::ServerConfig`] with [`ServerBuilder::tls`] (the listener `bind` opens
//! serves wss) or [`ServerBuilder::tls_listener`] (a second listener serves wss
//! beside the plain one). [`load_server_config`] builds one from PEM files.
//!
//! ```no_run
//! use wsreactor::{Handler, Server, Socket, Message};
//!
//! #[derive(Clone)]
//! struct Echo;
//! impl Handler for Echo {
//!     type Session = ();
//!     fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
//!         let _ = ws.send(message);
//!     }
//! }
//!
//! let tls = wsreactor::tls::load_server_config("cert.pem", "key.pem")?;
//! let server = Server::builder()
//!     .tls_listener("127.0.0.1:9443".parse().unwrap(), tls)
//!     .bind("127.0.0.1:9001")?;
//! println!("ws on {}, wss on {:?}", server.local_addr(), server.tls_addr());
//! server.run(Echo)?;
//! # Ok::<(), wsreactor::Error>(())
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub(crate) mod keys;

pub use keys::crypto_provider;
pub(crate) use keys::sweep as sweep_keys;

use crate::error::{Error, Result};
use crate::server::ServerBuilder;

/// A server configuration for `chain` (the server's certificate first) and its
/// private `key`: the *ring* provider with pooled keys ([`crypto_provider`]), TLS
/// 1.3 and 1.2, no client certificates, ALPN `http/1.1` (what a WebSocket upgrade
/// runs over).
///
/// # Errors
///
/// [`Error::Tls`] if rustls refuses the key or the chain.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(Error::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// [`server_config`] from PEM files: the certificate chain (server certificate
/// first) and the private key (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
///
/// [`Error::Io`] if a file cannot be read or holds no certificate or key;
/// [`Error::Tls`] as [`server_config`].
pub fn load_server_config(
    cert_pem: impl AsRef<Path>,
    key_pem: impl AsRef<Path>,
) -> Result<Arc<ServerConfig>> {
    let (cert_pem, key_pem) = (cert_pem.as_ref(), key_pem.as_ref());
    let chain = CertificateDer::pem_file_iter(cert_pem)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| pem_error(cert_pem, e))?;
    if chain.is_empty() {
        return Err(pem_error(cert_pem, "no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|e| pem_error(key_pem, e))?;
    server_config(chain, key)
}

fn pem_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    ))
}

impl ServerBuilder {
    /// Serves wss:// with `config` on the listener [`bind`](ServerBuilder::bind)
    /// opens (instead of ws://).
    pub fn tls(mut self, config: Arc<ServerConfig>) -> Self {
        self.tls.first = Some(config);
        self
    }

    /// Also serves wss:// with `config` on `addr` (port 0: a free port, see
    /// [`Server::tls_addr`](crate::Server::tls_addr)), beside the ws:// listener
    /// [`bind`](ServerBuilder::bind) opens: the same reactors and handler serve both.
    pub fn tls_listener(mut self, addr: SocketAddr, config: Arc<ServerConfig>) -> Self {
        self.tls.second = Some((addr, config));
        self
    }
}
