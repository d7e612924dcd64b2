//! The checks behind wsreactor's fuzz targets, one public function per target.
//!
//! Each function takes the fuzzer's bytes, drives one part of `wsreactor::proto` (or, for
//! `tls_server`, the reactor's TLS filter) with them and panics when a property that the
//! crate documents does not hold. The properties are
//! checked against small, plain reference implementations written here from RFC 6455 and
//! the crate's docs ([`reference`]), not against the crate's own code paths.
//!
//! The same functions replay the committed seed corpora in `cargo test` (see `tests/`), so a
//! broken property shows up without the fuzzer too.

pub mod conn;
pub mod frame;
pub mod handshake;
pub mod reference;
pub mod seeds;
pub mod tls;

pub use conn::{conn_client, conn_server};
pub use frame::frame_header;
pub use handshake::{handshake_request, handshake_response};
pub use tls::tls_server;
