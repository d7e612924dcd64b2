//! `peer-tungstenite-tls`: the echo of `peer-tungstenite` over tokio-rustls 0.26 (rustls
//! 0.23 with *ring*, as wsreactor's `tls` feature), for benchmarking wss:// only.
//!
//! The certificate chain and its key are PEM files named by the environment variables
//! `PEER_TLS_CERT` and `PEER_TLS_KEY` (the shared command line has no TLS flags).

use std::process::ExitCode;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use peers::{Usage, cores, log_dropped, tokio_serve};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ServerConfig, crypto::ring};
use tokio_tungstenite::tungstenite::{Error, Message};

const NAME: &str = "peer-tungstenite-tls";

fn main() -> ExitCode {
    let usage = Usage {
        name: NAME,
        about: "WebSocket echo server on tokio-tungstenite 0.30 over tokio-rustls 0.26 \
                (PEER_TLS_CERT, PEER_TLS_KEY: PEM files)",
        has_runtime: true,
        default_threads: cores(),
    };
    let acceptor = match acceptor() {
        Ok(acceptor) => acceptor,
        Err(error) => {
            eprintln!("{NAME}: {error}");
            return ExitCode::FAILURE;
        }
    };
    tokio_serve::run(&usage, move |stream| echo(acceptor.clone(), stream))
}

/// rustls with *ring*, TLS 1.3 and 1.2, ALPN http/1.1: what `wsreactor::tls::server_config`
/// makes.
fn acceptor() -> Result<TlsAcceptor, String> {
    let path = |var: &str| std::env::var(var).map_err(|_| format!("{var} is not set"));
    let (cert, key) = (path("PEER_TLS_CERT")?, path("PEER_TLS_KEY")?);
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("{key}: {e}"))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn echo(acceptor: TlsAcceptor, stream: TcpStream) {
    let tls = match acceptor.accept(stream).await {
        Ok(tls) => tls,
        Err(error) => return log_dropped(NAME, "tls", error),
    };
    let mut ws = match tokio_tungstenite::accept_async(tls).await {
        Ok(ws) => ws,
        Err(error) => return log_dropped(NAME, "handshake", error),
    };
    while let Some(received) = ws.next().await {
        match received {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                if let Err(error) = ws.send(message).await {
                    return log_unless_closed("send", error);
                }
            }
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_)) => {}
            Err(error) => return log_unless_closed("receive", error),
        }
    }
}

fn log_unless_closed(what: &str, error: Error) {
    if !matches!(error, Error::ConnectionClosed | Error::AlreadyClosed) {
        log_dropped(NAME, what, error);
    }
}
