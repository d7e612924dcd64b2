//! wsreactor: a WebSocket (RFC 6455) server engine.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod proto;
