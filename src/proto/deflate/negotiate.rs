//! Negotiating permessage-deflate (RFC 7692 §5 and §7.1): parsing offers and
//! answers, choosing the parameters, writing the response, both roles.

use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS, PerMessageDeflate};
use crate::proto::handshake::ClientHandshakeError;
use crate::proto::handshake::request::extension_list;

/// The extension's name, as it appears in `Sec-WebSocket-Extensions`.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The longest response value [`ServerDeflate::negotiate`] writes.
pub const MAX_RESPONSE_LEN: usize = 128;

/// One offer's parameters, as the client sent them (RFC 7692 §7.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// `server_no_context_takeover` was present.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover` was present.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N`, if present.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits` (bare: `Some(None)`, with a value: `Some(Some(N))`).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// What the server accepts: the side of the negotiation that the configuration decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerDeflate {
    /// Whether the server keeps its compression context between messages (a
    /// compressor per connection). `false` answers `server_no_context_takeover`.
    pub server_context_takeover: bool,
    /// The largest window the server compresses with (9–15).
    pub server_max_window_bits: u8,
    /// Whether the client may keep its context between messages (then the server
    /// keeps a decompressor per connection). `false` answers
    /// `client_no_context_takeover`.
    pub client_context_takeover: bool,
    /// The window the server asks the client to compress with, when the client
    /// offered `client_max_window_bits` and keeps its context (9–15).
    pub client_max_window_bits: u8,
}

/// Why an offer (or an answer) is not valid RFC 7692.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    Unknown,
    Duplicate,
    Value,
}

/// A window size: decimal 8–15 without leading zeros (RFC 7692 §7.1.2).
fn window_bits(value: Option<&str>) -> Result<u8, Invalid> {
    match value.map(str::as_bytes) {
        Some([d]) if (b'8'..=b'9').contains(d) => Ok(d - b'0'),
        Some([b'1', d]) if (b'0'..=b'5').contains(d) => Ok(10 + d - b'0'),
        _ => Err(Invalid::Value),
    }
}

/// Parses one offer's parameters.
pub(crate) fn parse_offer<'a>(
    params: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> Result<Offer, Invalid> {
    let mut offer = Offer::default();
    let mut seen = [false; 4];
    for (name, value) in params {
        let index = match name {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return Err(Invalid::Unknown),
        };
        if std::mem::replace(&mut seen[index], true) {
            return Err(Invalid::Duplicate);
        }
        match index {
            0 | 1 if value.is_some() => return Err(Invalid::Value),
            0 => offer.server_no_context_takeover = true,
            1 => offer.client_no_context_takeover = true,
            2 => offer.server_max_window_bits = Some(window_bits(value)?),
            _ => {
                offer.client_max_window_bits = Some(match value {
                    None => None,
                    value => Some(window_bits(value)?),
                });
            }
        }
    }
    Ok(offer)
}

impl ServerDeflate {
    /// Takes the first permessage-deflate offer in `values` (the request's
    /// `Sec-WebSocket-Extensions` header values, in order) that the server can
    /// honour, and writes the response's value into `response`.
    ///
    /// An offer with an unknown parameter, a duplicate or an invalid value is
    /// declined and the next one tried (RFC 7692 §7.1). Returns the parameters in
    /// force and the length written, or `None`: the connection is upgraded without
    /// the extension.
    pub fn negotiate<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
        response: &mut [u8; MAX_RESPONSE_LEN],
    ) -> Option<(PerMessageDeflate, usize)> {
        for value in values {
            for extension in extension_list(value) {
                if !extension.name().eq_ignore_ascii_case(EXTENSION_NAME) {
                    continue;
                }
                if let Ok(offer) = parse_offer(extension.params()) {
                    let (agreed, text) = self.answer(&offer);
                    let len = text.write(response);
                    return Some((agreed, len));
                }
            }
        }
        None
    }

    /// The parameters in force for an accepted offer, and the response.
    pub fn answer(&self, offer: &Offer) -> (PerMessageDeflate, Response) {
        let mut server_bits = self
            .server_max_window_bits
            .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        let mut server_no_takeover =
            offer.server_no_context_takeover || !self.server_context_takeover;
        let mut announce_server_bits = None;
        if let Some(asked) = offer.server_max_window_bits {
            // The answer must not exceed what was asked. A window of 8 is answered
            // as asked, but zlib compresses with 9 at the least: the context is then
            // reset after every message, so no match reaches into an earlier one,
            // and a decoder holding the whole message never looks further back
            // than the message itself.
            if asked < MIN_WINDOW_BITS {
                server_no_takeover = true;
            }
            server_bits = server_bits.min(asked.max(MIN_WINDOW_BITS));
            announce_server_bits = Some(asked.min(server_bits));
        }
        let client_no_takeover = offer.client_no_context_takeover || !self.client_context_takeover;
        let mut client_bits = MAX_WINDOW_BITS;
        let mut announce_client_bits = None;
        if let Some(offered) = offer.client_max_window_bits {
            let limit = offered.unwrap_or(MAX_WINDOW_BITS);
            let wanted = self
                .client_max_window_bits
                .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
            // Only worth asking when the client keeps its context: else the
            // decompressor is reset after every message and any window will do.
            if !client_no_takeover && wanted < limit {
                client_bits = wanted;
                announce_client_bits = Some(wanted);
            } else {
                client_bits = limit.max(MIN_WINDOW_BITS);
            }
        }
        let agreed = PerMessageDeflate {
            server_no_context_takeover: server_no_takeover,
            client_no_context_takeover: client_no_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        };
        let response = Response {
            server_no_context_takeover: server_no_takeover,
            client_no_context_takeover: client_no_takeover,
            server_max_window_bits: announce_server_bits,
            client_max_window_bits: announce_client_bits,
        };
        (agreed, response)
    }
}

/// A response's parameters, as written in the 101.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<u8>,
}

impl Response {
    /// Writes the header value; returns its length (at most [`MAX_RESPONSE_LEN`]).
    fn write(&self, out: &mut [u8; MAX_RESPONSE_LEN]) -> usize {
        let mut len = 0;
        let mut put = |text: &[u8]| {
            out[len..len + text.len()].copy_from_slice(text);
            len += text.len();
        };
        put(EXTENSION_NAME.as_bytes());
        if self.server_no_context_takeover {
            put(b"; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            put(b"; client_no_context_takeover");
        }
        for (name, bits) in [
            (
                &b"; server_max_window_bits="[..],
                self.server_max_window_bits,
            ),
            (
                &b"; client_max_window_bits="[..],
                self.client_max_window_bits,
            ),
        ] {
            if let Some(bits) = bits {
                put(name);
                if bits >= 10 {
                    put(b"1");
                }
                put(&[b'0' + bits % 10]);
            }
        }
        len
    }
}

/// What a client offers (one offer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientDeflate {
    /// Ask the server not to keep its context (`server_no_context_takeover`).
    pub request_server_no_context_takeover: bool,
    /// Tell the server we will not keep ours (`client_no_context_takeover`).
    pub client_no_context_takeover: bool,
    /// Ask the server for a smaller window (`server_max_window_bits=N`), 9–15.
    pub request_server_max_window_bits: Option<u8>,
    /// Offer `client_max_window_bits` (bare), letting the server pick our window.
    pub offer_client_max_window_bits: bool,
}

impl Default for ClientDeflate {
    /// `permessage-deflate; client_max_window_bits`: what browsers offer.
    fn default() -> Self {
        ClientDeflate {
            request_server_no_context_takeover: false,
            client_no_context_takeover: false,
            request_server_max_window_bits: None,
            offer_client_max_window_bits: true,
        }
    }
}

impl ClientDeflate {
    /// The offer, as a `Sec-WebSocket-Extensions` value.
    #[must_use]
    pub fn offer(&self) -> String {
        let mut text = String::from(EXTENSION_NAME);
        if self.request_server_no_context_takeover {
            text.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            text.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.request_server_max_window_bits {
            let bits = bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
            text.push_str(&format!("; server_max_window_bits={bits}"));
        }
        if self.offer_client_max_window_bits {
            text.push_str("; client_max_window_bits");
        }
        text
    }

    /// Checks the server's `Sec-WebSocket-Extensions` values against this offer
    /// (RFC 7692 §7.1) and returns the parameters in force (`None`: the server
    /// declined the extension).
    ///
    /// # Errors
    ///
    /// [`ClientHandshakeError::UnexpectedExtensions`] for another extension, more
    /// than one, an invalid or unknown parameter, or a parameter the offer did not
    /// allow (a `client_max_window_bits` not offered, a window larger than asked).
    pub fn accept<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Option<PerMessageDeflate>, ClientHandshakeError> {
        let refused = ClientHandshakeError::UnexpectedExtensions;
        let mut agreed = None;
        for value in values {
            for extension in extension_list(value) {
                if agreed.is_some() || !extension.name().eq_ignore_ascii_case(EXTENSION_NAME) {
                    return Err(refused);
                }
                let answer = parse_offer(extension.params()).map_err(|_| refused)?;
                let server_bits = match (
                    answer.server_max_window_bits,
                    self.request_server_max_window_bits,
                ) {
                    (Some(bits), Some(asked)) if bits > asked => return Err(refused),
                    (Some(bits), _) => bits,
                    (None, Some(_)) => return Err(refused),
                    (None, None) => MAX_WINDOW_BITS,
                };
                if self.request_server_no_context_takeover && !answer.server_no_context_takeover {
                    return Err(refused);
                }
                let client_bits = match answer.client_max_window_bits {
                    None => MAX_WINDOW_BITS,
                    Some(_) if !self.offer_client_max_window_bits => return Err(refused),
                    // A bare `client_max_window_bits` in an answer is not valid.
                    Some(None) => return Err(refused),
                    Some(Some(bits)) => bits,
                };
                agreed = Some(PerMessageDeflate {
                    server_no_context_takeover: answer.server_no_context_takeover,
                    client_no_context_takeover: answer.client_no_context_takeover
                        || self.client_no_context_takeover,
                    server_max_window_bits: server_bits,
                    client_max_window_bits: client_bits,
                });
            }
        }
        Ok(agreed)
    }
}
