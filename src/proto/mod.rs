//! Sans-IO protocol core: handshake, frames, masking, messages and close.
//!
//! Nothing in this module touches a socket, a thread or a clock.

pub mod handshake;
