//! The per-connection protocol state: bytes in, events out, replies written back.
//!
//! [`Connection`] is driven by whoever owns the socket. It never holds a buffer of its
//! own: every call to [`Connection::decode`] is handed the bytes that have arrived,
//! processes them in place (headers parsed, payloads unmasked, fragments moved
//! together, text validated), and returns either one [`Event`] or [`Decoded::NeedMore`].
//!
//! # The buffer contract
//!
//! The caller owns one contiguous input buffer per connection (or a shared scratch
//! buffer while nothing is held):
//!
//! 1. Call `decode(buf, out, limits)` with all unconsumed bytes.
//! 2. On [`Decoded::Event`], handle the event (it borrows `buf`), drop the first
//!    `consumed` bytes, and call `decode` again with the rest.
//! 3. On [`Decoded::NeedMore`], keep exactly `buf[keep]`: those bytes must begin the
//!    buffer passed to the next call, followed by whatever arrives next.
//!
//! The bytes kept are the payload of a message still arriving (already unmasked, with
//! its fragments moved together) and at most one partial header or control frame. A
//! message that arrives whole is delivered as a slice of `buf` without being copied.
//!
//! Replies that the protocol requires (a pong for a ping, the close reply, the close
//! frame that fails a connection) are appended to `out` when the event is returned;
//! the caller writes `out` to the socket. After [`Connection::is_closed`] turns true,
//! the caller flushes `out` and closes the transport.

use std::fmt;
use std::ops::Range;

use bytes::BufMut;

use super::close::{CloseCode, CloseFrame, CloseState, encode_close_payload, parse_close_payload};
use super::deflate::PerMessageDeflate;
use super::frame::{FrameError, FrameHeader, MAX_CONTROL_PAYLOAD, OpCode, RSV1, Role};
use super::mask::apply_mask;
use super::message::{Message, valid_utf8_prefix};
use super::utf8::from_utf8_with_validated;

mod send;

/// Size limits on incoming frames and messages, shared by every connection of a
/// reactor (they are not copied into each connection, to keep it small).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest frame payload accepted, in bytes. Default 16 MiB. Values of
    /// 4 GiB and more act as 4 GiB − 1 (sizes are kept in 32 bits).
    pub max_frame_size: usize,
    /// The largest message accepted (all fragments together), in bytes. Default
    /// 16 MiB: the largest message the Autobahn TestSuite sends (cases 9.1.6, 9.2.6).
    /// A chat or push server should set it much lower; it bounds the memory one peer
    /// can make the server hold. Values of 4 GiB and more act as 4 GiB − 1.
    pub max_message_size: usize,
    /// The RSV bits that a negotiated extension permits. Default 0 (none).
    pub allowed_rsv: u8,
}

impl Limits {
    /// The default limits (16 MiB frames and messages, no RSV bits).
    pub const DEFAULT: Limits = Limits {
        max_frame_size: 16 << 20,
        max_message_size: 16 << 20,
        allowed_rsv: 0,
    };

    /// Limits with the given maximum frame and message size.
    pub fn new(max_frame_size: usize, max_message_size: usize) -> Limits {
        Limits {
            max_frame_size,
            max_message_size,
            allowed_rsv: 0,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// What one call to [`Connection::decode`] produced.
#[derive(Debug)]
#[must_use = "an event must be handled and `consumed` bytes dropped"]
pub enum Decoded<'b> {
    /// An event. Drop the first `consumed` bytes of the buffer, then call `decode`
    /// again with the rest.
    Event {
        /// How many bytes at the front of the buffer are finished with.
        consumed: usize,
        /// The event, borrowing the buffer.
        event: Event<'b>,
    },
    /// Every complete frame has been processed. Keep exactly `buf[keep]` as the start
    /// of the next input; everything else may be discarded.
    NeedMore {
        /// The bytes to keep (possibly empty).
        keep: Range<usize>,
    },
}

/// Something that happened on the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'b> {
    /// A complete message.
    Message(Message<'b>),
    /// A complete message compressed with permessage-deflate (only on a connection
    /// told of it with [`Connection::set_deflate`]). Inflate it with the
    /// connection's [`Inflater`](crate::proto::deflate::Inflater); if that fails,
    /// fail the connection with [`Connection::fail_with`].
    Compressed(Compressed<'b>),
    /// A ping arrived; the pong has been written to `out` already.
    Ping(&'b [u8]),
    /// A pong arrived.
    Pong(&'b [u8]),
    /// The peer's close frame arrived (`None` when it carried no code, which reports
    /// as 1005). If we had not closed first, the reply is in `out`. Either way the
    /// handshake is over: [`Connection::is_closed`] is now true.
    Close(Option<CloseFrame<'b>>),
    /// The peer broke the protocol. A close frame with `error.code` has been written
    /// to `out` (unless we had already sent one); flush it and close the transport.
    Error(ProtocolError),
}

/// A compressed message as it arrived: the payload of its frames, joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compressed<'b> {
    /// The deflate data (without the `00 00 ff ff` that RFC 7692 removes).
    pub payload: &'b [u8],
    /// Whether it is a text message (UTF-8 is checked once inflated).
    pub text: bool,
}

/// A violation of RFC 6455 by the peer, or a limit it exceeded. Always the peer's
/// fault; the connection is failed with [`ProtocolError::code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// The close code sent to the peer: 1002, 1007 or 1009 (or 1011 if the caller
    /// broke the buffer contract).
    pub code: CloseCode,
    /// What went wrong, for logs. Also sent as the close reason.
    pub reason: &'static str,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close {})", self.reason, self.code)
    }
}

impl std::error::Error for ProtocolError {}

/// Why a frame could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame has been sent or received; no more frames may be sent. The
    /// caller's fault (or a race with the peer's close).
    Closed,
    /// A control frame payload over 125 bytes. The caller's fault.
    ControlTooLong,
    /// A close code that may not be sent (see [`CloseCode::is_sendable`]). The
    /// caller's fault.
    InvalidCloseCode,
    /// A compressed message on a connection that did not negotiate
    /// permessage-deflate. The caller's fault.
    NotNegotiated,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Closed => "the connection is closing",
            SendError::ControlTooLong => "control frame payload over 125 bytes",
            SendError::InvalidCloseCode => "close code may not be sent",
            SendError::NotNegotiated => "permessage-deflate was not negotiated",
        })
    }
}

impl std::error::Error for SendError {}

/// The kind of the message being assembled, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Assembling {
    None,
    Text,
    Binary,
}

/// The protocol state of one WebSocket connection, after the handshake.
///
/// It is small (it lives inline in every connection slot) and holds no buffer.
#[derive(Debug)]
pub struct Connection {
    /// Payload bytes of the current data frame still to come (0 between frames).
    frame_remaining: u32,
    /// Payload bytes of the message in progress, held at the front of the buffer.
    held: u32,
    /// Bytes after the held payload that are already processed (headers of
    /// continuation frames, control frames between fragments).
    gap: u32,
    /// How much of the held text payload is known to be complete, valid UTF-8: the
    /// payload's first `validated` bytes are valid UTF-8 ending at a character boundary
    /// (0 for binary messages and between messages; never more than `held`).
    ///
    /// Only `validate_partial` raises it, by what `valid_utf8_prefix`
    /// vouches for in the bytes after it; a new message and the end of one reset it.
    /// Within one call to `decode` the held payload is never written once it is in
    /// place: a fragment's payload is unmasked where it arrives and then copied to just
    /// past the held bytes; control frames between fragments are unmasked in the gap,
    /// after them; a partial header is moved to just past them. So the bytes validated
    /// during a call are still valid when the message ends in that same call, and
    /// `finish_message` relies on that to skip them. Bytes validated by an earlier
    /// call are not relied on: the caller has held them since, and safe code may have
    /// changed them.
    validated: u32,
    /// Client role: the state of the mask key generator (xorshift32).
    mask_seed: u32,
    /// The current data frame's masking key (server role).
    frame_mask: [u8; 4],
    in_frame: bool,
    frame_masked: bool,
    frame_fin: bool,
    /// The message being assembled is compressed (RSV1 on its first frame).
    compressed: bool,
    assembling: Assembling,
    role: Role,
    close: CloseState,
    /// permessage-deflate's parameters, when it was negotiated.
    deflate: Option<PerMessageDeflate>,
}

impl Connection {
    /// The state for a server-side connection whose handshake has completed.
    pub fn server() -> Connection {
        Connection::new(Role::Server, 0)
    }

    /// The state for a client-side connection. `mask_seed` seeds the generator of
    /// the masking keys for outgoing frames; give it a random value (RFC 6455 §5.3
    /// asks that keys be unpredictable; proto has no source of randomness itself).
    pub fn client(mask_seed: u64) -> Connection {
        // xorshift's state must not be zero.
        let folded = (mask_seed ^ (mask_seed >> 32)) as u32;
        Connection::new(Role::Client, folded | 1)
    }

    fn new(role: Role, mask_seed: u32) -> Connection {
        Connection {
            frame_remaining: 0,
            held: 0,
            gap: 0,
            validated: 0,
            mask_seed,
            frame_mask: [0; 4],
            in_frame: false,
            frame_masked: false,
            frame_fin: false,
            compressed: false,
            assembling: Assembling::None,
            role,
            close: CloseState::Open,
            deflate: None,
        }
    }

    /// Tells the connection that permessage-deflate was negotiated (or not): RSV1
    /// is then accepted on the first frame of a data message, and such a message
    /// is reported as [`Event::Compressed`]. Without it RSV1 fails the connection
    /// with 1002, as every reserved bit does.
    pub fn set_deflate(&mut self, deflate: Option<PerMessageDeflate>) {
        self.deflate = deflate;
    }

    /// permessage-deflate's parameters, if it was negotiated.
    pub fn deflate(&self) -> Option<PerMessageDeflate> {
        self.deflate
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the close handshake stands.
    pub fn close_state(&self) -> CloseState {
        self.close
    }

    /// Whether the connection is finished: both close frames have crossed, or it was
    /// failed. The caller should flush `out` and close the transport.
    pub fn is_closed(&self) -> bool {
        self.close == CloseState::Closed
    }

    /// Whether frames may still be sent (no close frame sent or received).
    pub fn can_send(&self) -> bool {
        self.close == CloseState::Open
    }

    /// How many bytes the connection holds at the front of the caller's buffer (the
    /// payload of a message still arriving). Zero when the connection is idle.
    pub fn held(&self) -> usize {
        (self.held as usize) + (self.gap as usize)
    }

    /// Processes `buf`, the bytes received and not yet consumed, in place.
    ///
    /// Returns at the first event, or when no complete frame is left. See the module
    /// docs for the buffer contract. Replies are appended to `out`.
    pub fn decode<'b, B: BufMut>(
        &mut self,
        buf: &'b mut [u8],
        out: &mut B,
        limits: &Limits,
    ) -> Decoded<'b> {
        if self.close == CloseState::Closed {
            // Nothing after the close (or a failure) is read.
            return Decoded::NeedMore { keep: 0..0 };
        }
        if buf.len() < (self.held as usize) + (self.gap as usize) {
            // The caller dropped bytes we asked it to keep.
            return self.fail(
                out,
                CloseCode::INTERNAL_ERROR,
                "input buffer contract broken",
            );
        }
        // The held payload starts at `start`: 0 when a message was in progress at the
        // call, else just after the first frame header of a message begun here.
        let mut start = 0;
        // The held bytes validated by earlier calls: validated again at the end (see
        // `validated`). The ones validated from here on, in this call, are not.
        let mut validated_earlier = self.validated as usize;
        loop {
            let pos = start + (self.held as usize) + (self.gap as usize);
            if self.in_frame {
                let avail = buf.len() - pos;
                let take = (self.frame_remaining as usize).min(avail);
                let dest = start + (self.held as usize);
                if self.frame_masked {
                    // The key is kept rotated so that it always starts at the next byte.
                    apply_mask(&mut buf[pos..pos + take], self.frame_mask, 0);
                    // Rotating the key as a word avoids the general slice rotation.
                    let key = u32::from_le_bytes(self.frame_mask);
                    self.frame_mask = key.rotate_right(8 * (take & 3) as u32).to_le_bytes();
                }
                if (self.gap as usize) > 0 {
                    buf.copy_within(pos..pos + take, dest);
                }
                self.held += take as u32;
                self.frame_remaining -= take as u32;
                if self.frame_remaining > 0 {
                    // The frame continues in a later read: validate what is here now.
                    if let Err(e) = self.validate_partial(&buf[start..start + (self.held as usize)])
                    {
                        return self.fail(out, e.code, e.reason);
                    }
                    return self.need_more(buf, start, pos + take);
                }
                self.in_frame = false;
                if self.frame_fin {
                    return self.finish_message(buf, start, validated_earlier, out);
                }
                if let Err(e) = self.validate_partial(&buf[start..start + (self.held as usize)]) {
                    return self.fail(out, e.code, e.reason);
                }
                continue;
            }

            let allowed_rsv = if self.deflate.is_some() {
                limits.allowed_rsv | RSV1
            } else {
                limits.allowed_rsv
            };
            let header = match FrameHeader::parse(&buf[pos..], self.role, allowed_rsv) {
                Ok(Some(header)) => header,
                Ok(None) => return self.need_more(buf, start, pos),
                Err(e) => return self.fail(out, CloseCode::PROTOCOL_ERROR, frame_error_reason(e)),
            };
            let (header, header_len) = header;
            // With permessage-deflate, RSV1 marks a compressed message: it belongs on
            // the first frame of a data message only (RFC 7692 §6).
            let rsv1 = self.deflate.is_some() && header.rsv & RSV1 != 0;
            if rsv1 && header.opcode.is_control() {
                return self.fail(
                    out,
                    CloseCode::PROTOCOL_ERROR,
                    "RSV1 set on a control frame",
                );
            }
            if rsv1 && header.opcode == OpCode::Continuation {
                return self.fail(
                    out,
                    CloseCode::PROTOCOL_ERROR,
                    "RSV1 set on a continuation frame",
                );
            }
            if header.opcode.is_control() {
                let len = header.payload_len as usize; // at most 125, checked by parse
                let end = pos + header_len + len;
                if end > buf.len() {
                    return self.need_more(buf, start, pos);
                }
                let payload = &mut buf[pos + header_len..end];
                if let Some(key) = header.mask {
                    apply_mask(payload, key, 0);
                }
                let consumed = if self.assembling == Assembling::None {
                    end
                } else {
                    // The control frame sits between fragments: it joins the gap.
                    self.gap += (header_len + len) as u32;
                    start
                };
                let payload = &buf[pos + header_len..end];
                let event = match header.opcode {
                    OpCode::Ping => {
                        if self.close == CloseState::Open {
                            self.write_control(out, OpCode::Pong, payload);
                        }
                        Event::Ping(payload)
                    }
                    OpCode::Pong => Event::Pong(payload),
                    _ => match parse_close_payload(payload) {
                        Ok(frame) => {
                            if self.close == CloseState::Open {
                                // Echo the peer's code, as most endpoints do.
                                let mut reply = [0u8; MAX_CONTROL_PAYLOAD];
                                let n = match frame {
                                    Some(f) => encode_close_payload(f.code, "", &mut reply),
                                    None => 0,
                                };
                                self.write_control(out, OpCode::Close, &reply[..n]);
                            }
                            self.close = CloseState::Closed;
                            Event::Close(frame)
                        }
                        Err(code) => {
                            let reason = if code == CloseCode::INVALID_PAYLOAD {
                                "close reason is not valid UTF-8"
                            } else {
                                "invalid close payload"
                            };
                            return self.fail(out, code, reason);
                        }
                    },
                };
                return Decoded::Event { consumed, event };
            }

            // A data frame.
            let continuation = header.opcode == OpCode::Continuation;
            match (continuation, self.assembling) {
                (true, Assembling::None) => {
                    return self.fail(
                        out,
                        CloseCode::PROTOCOL_ERROR,
                        "continuation frame without a message",
                    );
                }
                (false, Assembling::Text | Assembling::Binary) => {
                    return self.fail(
                        out,
                        CloseCode::PROTOCOL_ERROR,
                        "new message inside a fragmented one",
                    );
                }
                _ => {}
            }
            // Both limits are capped below 4 GiB: sizes are kept in 32 bits.
            let max_frame = limits.max_frame_size.min(u32::MAX as usize) as u64;
            let max_message = limits.max_message_size.min(u32::MAX as usize);
            if header.payload_len > max_frame {
                return self.fail(out, CloseCode::MESSAGE_TOO_BIG, "frame too big");
            }
            if header.payload_len > max_message.saturating_sub(self.held as usize) as u64 {
                return self.fail(out, CloseCode::MESSAGE_TOO_BIG, "message too big");
            }
            if continuation {
                self.gap += header_len as u32;
            } else {
                start = pos + header_len;
                self.held = 0;
                self.gap = 0;
                self.validated = 0;
                validated_earlier = 0;
                self.compressed = rsv1;
                self.assembling = if header.opcode == OpCode::Text {
                    Assembling::Text
                } else {
                    Assembling::Binary
                };
            }
            self.in_frame = true;
            self.frame_fin = header.fin;
            self.frame_remaining = header.payload_len as u32; // at most max_frame_size, below 4 GiB
            self.frame_masked = header.mask.is_some();
            self.frame_mask = header.mask.unwrap_or([0; 4]);
        }
    }

    /// Fail-fast UTF-8 validation of a text message that is not complete yet.
    fn validate_partial(&mut self, held: &[u8]) -> Result<(), ProtocolError> {
        // Compressed text is validated as it is inflated.
        if self.assembling != Assembling::Text || self.compressed {
            return Ok(());
        }
        match valid_utf8_prefix(&held[(self.validated as usize)..]) {
            Ok(n) => {
                self.validated += n as u32;
                Ok(())
            }
            Err(()) => Err(ProtocolError {
                code: CloseCode::INVALID_PAYLOAD,
                reason: "text message is not valid UTF-8",
            }),
        }
    }

    /// Delivers the message held at `buf[start..]`. For text, only the bytes not
    /// validated during this call (`validated_earlier..self.validated` were) are
    /// validated now.
    fn finish_message<'b, B: BufMut>(
        &mut self,
        buf: &'b mut [u8],
        start: usize,
        validated_earlier: usize,
        out: &mut B,
    ) -> Decoded<'b> {
        let consumed = start + (self.held as usize) + (self.gap as usize);
        let range = start..start + (self.held as usize);
        let validated_here = validated_earlier..(self.validated as usize);
        let kind = self.assembling;
        self.held = 0;
        self.gap = 0;
        self.validated = 0;
        self.assembling = Assembling::None;
        let buf: &'b [u8] = buf;
        let payload = &buf[range];
        if std::mem::take(&mut self.compressed) {
            let compressed = Compressed {
                payload,
                text: kind == Assembling::Text,
            };
            return Decoded::Event {
                consumed,
                event: Event::Compressed(compressed),
            };
        }
        let message = match kind {
            Assembling::Text => {
                // SAFETY: `payload[validated_here]` was vouched for by `valid_utf8_prefix`
                // during this call, in pieces that each start and end at a character
                // boundary, and the held payload has not been written since (the
                // invariant on `validated`). A message begun in this call set
                // `validated_earlier` to 0 along with `validated`.
                #[allow(unsafe_code)]
                let text = unsafe { from_utf8_with_validated(payload, validated_here) };
                match text {
                    Some(text) => Message::Text(text),
                    None => {
                        return self.fail(
                            out,
                            CloseCode::INVALID_PAYLOAD,
                            "text message is not valid UTF-8",
                        );
                    }
                }
            }
            _ => Message::Binary(payload),
        };
        Decoded::Event {
            consumed,
            event: Event::Message(message),
        }
    }

    /// Ends a call with no event: moves a partial header or control frame that sits
    /// after a gap next to the held payload, so the bytes to keep are contiguous.
    fn need_more<'b>(&mut self, buf: &'b mut [u8], start: usize, pos: usize) -> Decoded<'b> {
        let held_end = start + (self.held as usize);
        let tail = buf.len() - pos;
        if (self.gap as usize) > 0 && tail > 0 {
            buf.copy_within(pos..buf.len(), held_end);
        }
        self.gap = 0;
        let keep_end = if self.in_frame {
            held_end
        } else {
            held_end + tail
        };
        Decoded::NeedMore {
            keep: start..keep_end,
        }
    }

    /// Fails the connection: writes a close frame with `code` (unless one was sent
    /// already) and reports the error.
    fn fail<'b, B: BufMut>(
        &mut self,
        out: &mut B,
        code: CloseCode,
        reason: &'static str,
    ) -> Decoded<'b> {
        if self.close == CloseState::Open {
            let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
            let n = encode_close_payload(code, reason, &mut payload);
            self.write_control(out, OpCode::Close, &payload[..n]);
        }
        self.close = CloseState::Closed;
        self.held = 0;
        self.gap = 0;
        self.validated = 0;
        self.in_frame = false;
        self.compressed = false;
        self.assembling = Assembling::None;
        Decoded::Event {
            consumed: 0,
            event: Event::Error(ProtocolError { code, reason }),
        }
    }

    /// Fails the connection for a reason found outside `decode` (a compressed
    /// message that does not inflate): writes a close frame with `code` unless one
    /// was sent already, and returns the error to report. The caller flushes `out`
    /// and closes the transport.
    pub fn fail_with<B: BufMut>(
        &mut self,
        out: &mut B,
        code: CloseCode,
        reason: &'static str,
    ) -> ProtocolError {
        match self.fail(out, code, reason) {
            Decoded::Event {
                event: Event::Error(error),
                ..
            } => error,
            _ => ProtocolError { code, reason },
        }
    }
}

fn frame_error_reason(e: FrameError) -> &'static str {
    match e {
        FrameError::ReservedOpCode(_) => "reserved opcode",
        FrameError::ReservedBits(_) => "reserved bits set",
        FrameError::FragmentedControl => "fragmented control frame",
        FrameError::ControlTooLong => "control frame too long",
        FrameError::LengthOverflow => "frame length overflow",
        FrameError::Unmasked => "client frame not masked",
        FrameError::Masked => "server frame masked",
    }
}
