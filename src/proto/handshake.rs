//! HTTP upgrade handshake (in progress).
