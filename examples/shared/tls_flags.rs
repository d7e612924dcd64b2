//! `--tls-cert`, `--tls-key` and `--tls-addr`, shared by the echo and chat examples
//! (included with `#[path]`; a folder without `main.rs` is no example of its own).

use wsreactor::ServerBuilder;

/// The TLS flags as given.
#[derive(Default)]
pub struct Tls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub addr: Option<String>,
}

impl Tls {
    /// The builder serving wss:// (and, for the chat, https://) as the flags say:
    /// on the main address, or with `--tls-addr` on a second one beside it.
    pub fn apply(
        self,
        builder: ServerBuilder,
    ) -> Result<ServerBuilder, Box<dyn std::error::Error>> {
        let (cert, key) = match (self.cert, self.key) {
            (None, None) if self.addr.is_none() => return Ok(builder),
            (Some(cert), Some(key)) => (cert, key),
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        #[cfg(feature = "tls")]
        {
            let config = wsreactor::tls::load_server_config(cert, key)?;
            Ok(match self.addr {
                Some(addr) => builder.tls_listener(addr.parse()?, config),
                None => builder.tls(config),
            })
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (cert, key, builder);
            Err("TLS needs the example built with --features tls".into())
        }
    }
}
