//! `wss://` over rustls (feature `tls`), with the *ring* crypto provider.
//!
//! Why *ring*: it builds with nothing but the Rust toolchain and a C compiler, as
//! does aws-lc-rs on x86_64 Linux today, but in a fraction of the time (a clean
//! `cargo build` of rustls took 13 s with ring and 63 s with aws-lc-rs on the
//! project's 2-core machine), and aws-lc-rs still wants CMake on other targets and
//! for FIPS. The provider is named explicitly, never taken from rustls' process-wide
//! default, so a program that also links aws-lc-rs does not change what we use.
//!
//! There are no system roots on the machines this crate is built for, and no
//! dependency on a roots crate: trust is given explicitly, as a [`RootCertStore`],
//! a CA file in PEM, or a whole [`ClientConfig`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::ClientBuilder;
use super::error::{Error, Result};

/// The crypto provider of the `tls` feature: *ring* (see the module docs for why).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(crate::tls::keys::ring_provider())
}

/// How the server's certificate is to be trusted.
#[derive(Clone, Debug, Default)]
pub(super) struct TlsOptions {
    roots: Option<RootCertStore>,
    ca_files: Vec<PathBuf>,
    accept_invalid_certs: bool,
    config: Option<Arc<ClientConfig>>,
}

impl TlsOptions {
    /// A session for `host`, from these options.
    pub(super) fn connection(&self, host: &str) -> Result<ClientConnection> {
        let config = match &self.config {
            Some(config) => Arc::clone(config),
            None => Arc::new(self.client_config()?),
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| Error::Url(format!("{host} is not a valid TLS server name")))?;
        ClientConnection::new(config, name).map_err(Error::Tls)
    }

    fn client_config(&self) -> Result<ClientConfig> {
        let provider = crypto_provider();
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?;
        if self.accept_invalid_certs {
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth());
        }
        let mut roots = self.roots.clone().unwrap_or_else(RootCertStore::empty);
        for path in &self.ca_files {
            add_ca_file(&mut roots, path)?;
        }
        if roots.is_empty() {
            return Err(Error::Config(
                "wss:// needs a root of trust: root_certificates, ca_file or tls_config \
                 (there are no system roots)"
                    .into(),
            ));
        }
        Ok(builder.with_root_certificates(roots).with_no_client_auth())
    }
}

/// Adds every certificate of a PEM file to `roots`.
fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<()> {
    let shown = path.display();
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Config(format!("CA file {shown}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("CA file {shown}: {e}")))?;
    if certificates.is_empty() {
        return Err(Error::Config(format!(
            "CA file {shown} holds no PEM certificate"
        )));
    }
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|e| Error::Config(format!("CA file {shown}: {e}")))?;
    }
    Ok(())
}

impl ClientBuilder {
    /// Trusts the certificates in `roots` for `wss://` (added to any CA files).
    pub fn root_certificates(mut self, roots: RootCertStore) -> Self {
        self.tls.roots = Some(roots);
        self
    }

    /// Trusts every certificate in a PEM file (a CA bundle) for `wss://`. The file is
    /// read by [`connect`](ClientBuilder::connect); a file that cannot be read or
    /// holds no certificate fails it with [`Error::Config`].
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.ca_files.push(path.into());
        self
    }

    /// **Dangerous**: accepts any certificate, for any name, signed by anyone. The
    /// connection is encrypted but not authenticated: anyone on the path can read and
    /// change it. For tests against self-signed servers only. Default `false`.
    pub fn danger_accept_invalid_certs(mut self, accept: bool) -> Self {
        self.tls.accept_invalid_certs = accept;
        self
    }

    /// Uses this rustls configuration as it is (client certificates, ALPN, another
    /// provider, session resumption), instead of the other TLS settings.
    pub fn tls_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.tls.config = Some(config);
        self
    }
}

/// The verifier behind [`ClientBuilder::danger_accept_invalid_certs`]: every
/// certificate passes; the handshake's signatures are still checked, so the session
/// is at least with the holder of the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
