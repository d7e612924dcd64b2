//! The send side of a connection: frames written into the caller's buffer, masked
//! in the client role, refused once a close frame has crossed.

use bytes::BufMut;

use super::{Connection, SendError};
use crate::proto::close::{CloseCode, CloseState, encode_close_payload};
use crate::proto::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, OpCode, RSV1, Role};
use crate::proto::mask::apply_mask;
use crate::proto::message::Message;

impl Connection {
    /// Writes a whole frame (header and payload) to `out`, masked in the client role.
    pub(super) fn write_frame_unchecked<B: BufMut>(
        &mut self,
        out: &mut B,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
    ) {
        let header = self.header(opcode, fin, payload.len());
        self.write_payload(out, header, payload);
    }

    /// Writes `header` and `payload`, masking the payload if the header says so.
    fn write_payload<B: BufMut>(&mut self, out: &mut B, header: FrameHeader, payload: &[u8]) {
        out.put_slice(header.encode().as_bytes());
        match header.mask {
            None => out.put_slice(payload),
            Some(key) => {
                // Mask through a small stack buffer so `payload` stays untouched.
                let mut chunk = [0u8; 512];
                for (i, part) in payload.chunks(chunk.len()).enumerate() {
                    let masked = &mut chunk[..part.len()];
                    masked.copy_from_slice(part);
                    apply_mask(masked, key, i * 512);
                    out.put_slice(masked);
                }
            }
        }
    }

    pub(super) fn write_control<B: BufMut>(&mut self, out: &mut B, opcode: OpCode, payload: &[u8]) {
        self.write_frame_unchecked(out, opcode, true, payload);
    }

    /// The next masking key in the client role, `None` in the server role.
    pub(super) fn next_mask(&mut self) -> Option<[u8; 4]> {
        if self.role == Role::Server {
            return None;
        }
        // xorshift32, its output scrambled by a multiplication so the key is not the
        // raw state. (RFC 6455 wants keys a script cannot predict; this client is for
        // tests and load generation, not browsers.)
        let mut x = self.mask_seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_seed = x;
        Some(x.wrapping_mul(0x9e37_79b9).to_ne_bytes())
    }

    /// Writes one complete message as a single frame to `out`.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] once a close frame has been sent or received.
    pub fn write_message<B: BufMut>(
        &mut self,
        out: &mut B,
        message: Message<'_>,
    ) -> Result<(), SendError> {
        let opcode = if message.is_text() {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        self.write_frame(out, opcode, true, message.as_bytes())
    }

    /// Writes one message compressed with permessage-deflate (a payload from
    /// [`Deflater::compress`](crate::proto::deflate::Deflater::compress)) as a single
    /// frame with RSV1 set.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] once a close frame has been sent or received;
    /// [`SendError::NotNegotiated`] if permessage-deflate was not negotiated.
    pub fn write_compressed<B: BufMut>(
        &mut self,
        out: &mut B,
        text: bool,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        if self.deflate.is_none() {
            return Err(SendError::NotNegotiated);
        }
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        let mut header = self.header(opcode, true, payload.len());
        header.rsv = RSV1;
        self.write_payload(out, header, payload);
        Ok(())
    }

    /// Writes one frame to `out`: use it to send a message in fragments (the first
    /// with `Text` or `Binary`, the rest with `Continuation`, the last with `fin`).
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] once a close frame has been sent or received;
    /// [`SendError::ControlTooLong`] for a control frame over 125 bytes. Use
    /// [`close`](Self::close) to send a close frame.
    pub fn write_frame<B: BufMut>(
        &mut self,
        out: &mut B,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
    ) -> Result<(), SendError> {
        if !self.can_send() || opcode == OpCode::Close {
            return Err(SendError::Closed);
        }
        if opcode.is_control() && (payload.len() > MAX_CONTROL_PAYLOAD || !fin) {
            return Err(SendError::ControlTooLong);
        }
        self.write_frame_unchecked(out, opcode, fin, payload);
        Ok(())
    }

    /// The header for an unmasked data frame of `len` bytes whose payload the caller
    /// sends itself (server role: the payload goes out as is, without a copy).
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] once a close frame has been sent or received.
    pub fn frame_header(
        &mut self,
        opcode: OpCode,
        fin: bool,
        len: usize,
    ) -> Result<(FrameHeader, Option<[u8; 4]>), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        let header = self.header(opcode, fin, len);
        Ok((header, header.mask))
    }

    /// A header for our role: masked with a fresh key in the client role.
    fn header(&mut self, opcode: OpCode, fin: bool, len: usize) -> FrameHeader {
        FrameHeader::outgoing(opcode, fin, len, self.next_mask())
    }

    /// Writes a ping.
    ///
    /// # Errors
    ///
    /// As [`write_frame`](Self::write_frame).
    pub fn ping<B: BufMut>(&mut self, out: &mut B, payload: &[u8]) -> Result<(), SendError> {
        self.write_frame(out, OpCode::Ping, true, payload)
    }

    /// Starts the close handshake: writes a close frame with `code` and `reason` (cut
    /// to 123 bytes at a character boundary). Messages still arrive until the peer's
    /// close frame does.
    ///
    /// # Errors
    ///
    /// [`SendError::Closed`] if a close frame was already sent or received;
    /// [`SendError::InvalidCloseCode`] for a code that may not be sent (1005 is
    /// accepted and sends a close frame without a code).
    pub fn close<B: BufMut>(
        &mut self,
        out: &mut B,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::Closed);
        }
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        let n = if code == CloseCode::NO_STATUS {
            0
        } else if code.is_sendable() {
            encode_close_payload(code, reason, &mut payload)
        } else {
            return Err(SendError::InvalidCloseCode);
        };
        self.write_control(out, OpCode::Close, &payload[..n]);
        self.close = CloseState::SentClose;
        Ok(())
    }
}
