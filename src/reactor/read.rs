//! The read path: reading, the handshake, frames to events, events to callbacks.

use std::io;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::conn::{NONE, Phase, flag};
use super::output::{Flushed, Owner};
use super::{Input, Reactor, STACK_HEADERS, read};
use crate::handler::{ConnId, Handler, Socket};
use crate::observe::event;
use crate::proto::deflate;
use crate::proto::handshake::{self, HandshakeError, Request};
use crate::proto::{CloseCode, CloseState, Compressed, Decoded, Event};
use crate::response::{Answer, are_sendable};

/// A connection whose held buffer is at least this large (a pooled one, or one that
/// a large message grew) reads straight into it, with at least this much room.
const DIRECT_READ: usize = 4 * 1024;

/// Retries a read interrupted by a signal.
fn read_retrying(
    mut read: impl FnMut() -> (io::Result<usize>, usize),
) -> (io::Result<usize>, usize) {
    loop {
        match read() {
            (Err(e), _) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

impl<H: Handler> Reactor<H> {
    // ---- reading ----------------------------------------------------------------

    /// Reads and serves connection `key`. `closed` says the readiness event also
    /// reported the peer's FIN or an error: from then on a short read does not mean
    /// the socket is drained, since the end came with the last bytes and raises no
    /// edge of its own, so reading goes on until the end is seen (in this turn or,
    /// past the read budget or a pause, in a later one).
    pub(super) fn readable(&mut self, key: usize, closed: bool) {
        if closed && let Some(conn) = self.conns.get_mut(key) {
            conn.set(flag::PEER_CLOSED);
        }
        let mut budget = self.config.read_budget;
        self.inflated = 0;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            // A peer that sends without reading what it is answered (pings, or
            // echoes under `Pause`) is not read further until it reads: those
            // replies bypass the send-side limit, so this is what bounds them, at
            // the limit plus what one read answers. TCP flow control pushes back.
            // Reading resumes when the queue is down to the low-water mark: at the
            // end of this turn if the flush takes enough of it, else at a writable
            // event.
            let limit = Self::read_limit(self.config.max_backpressure, conn);
            if conn.phase == Phase::Open && self.output.queued(conn) > limit {
                self.pause_reading(key);
                break;
            }
            // A read lands in the scratch buffer, or, for a connection holding a
            // partial message in a pooled or large buffer, straight in the spare
            // room of that buffer. A small exact-size hold (a slow peer's partial
            // header, a trickled request) is appended to instead, so that a slow
            // client costs what it sent, not a buffer.
            let drained_on_short_read = !conn.has(flag::PEER_CLOSED);
            let tls = conn.has(flag::TLS);
            if tls && self.output.tls.sealed(key) {
                // TLS records (a key update's answer, say) wait for a peer that does
                // not read: what rustls holds stays bounded only if reading waits.
                let owner = Owner::of(key, conn);
                match self.output.flush(owner, conn) {
                    Ok(Flushed::All) => {}
                    Ok(Flushed::Partly) => {
                        self.pause_reading(key);
                        break;
                    }
                    Err(_) => return self.peer_gone(key),
                }
            }
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.has(flag::DEFERRED) {
                // The upgrade waits for its answer: what the peer sends waits in
                // the kernel, but a hang-up ends the wait.
                if conn.has(flag::PEER_CLOSED) {
                    self.output.stats.rejected += 1;
                    self.remove(key);
                    return;
                }
                break;
            }
            conn.clear(flag::READ_PAUSED);
            if conn.has(flag::UNPROCESSED) {
                // Frames held back when the last turn's inflate budget ran out go
                // first, before anything is read.
                conn.clear(flag::UNPROCESSED);
                if conn.input != NONE {
                    let held = std::mem::take(&mut self.inputs[conn.input as usize]);
                    self.process(key, Input::Held(held));
                    if self.yielded(key) {
                        break;
                    }
                    continue;
                }
            }
            let generation = conn.generation;
            // A TLS read is budgeted in bytes off the wire, not in plaintext: records
            // that decrypt to nothing cost work too.
            let wire_budget = budget;
            let (result, asked, wire, input) = if conn.input == NONE {
                let mut scratch = std::mem::take(&mut self.scratch);
                let (result, asked, wire) = if tls {
                    let sessions = &mut self.output.tls;
                    let r =
                        sessions.read(key, generation, &mut conn.stream, &mut scratch, wire_budget);
                    (r.result, r.asked, r.wire)
                } else {
                    let result = read(&mut conn.stream, &mut scratch);
                    let wire = *result.as_ref().unwrap_or(&0);
                    (result, scratch.len(), wire)
                };
                let n = *result.as_ref().unwrap_or(&0);
                (result, asked, wire, Input::Scratch(scratch, n))
            } else {
                let mut held = std::mem::take(&mut self.inputs[conn.input as usize]);
                if !tls && held.capacity() >= DIRECT_READ {
                    let (result, asked) =
                        read_retrying(|| held.read_from(&conn.stream, DIRECT_READ));
                    let wire = *result.as_ref().unwrap_or(&0);
                    (result, asked, wire, Input::Held(held))
                } else {
                    // A TLS read lands in the scratch buffer: rustls decrypts into
                    // its own, so reading into the held buffer saves no copy.
                    let (result, asked, wire) = if tls {
                        let sessions = &mut self.output.tls;
                        let r = sessions.read(
                            key,
                            generation,
                            &mut conn.stream,
                            &mut self.scratch,
                            wire_budget,
                        );
                        (r.result, r.asked, r.wire)
                    } else {
                        let result = read(&mut conn.stream, &mut self.scratch);
                        let wire = *result.as_ref().unwrap_or(&0);
                        (result, self.scratch.len(), wire)
                    };
                    held.append(&self.scratch[..*result.as_ref().unwrap_or(&0)]);
                    (result, asked, wire, Input::Held(held))
                }
            };
            budget = budget.saturating_sub(wire);
            match result {
                Ok(0) => {
                    // The peer half-closed: what was answered in this turn still goes
                    // out before the connection is dropped.
                    self.restore(key, input, None);
                    self.finish_turn(key);
                    self.peer_gone(key);
                    return;
                }
                Ok(n) => {
                    self.process(key, input);
                    if self.conns.get(key).is_none() {
                        return;
                    }
                    if self.yielded(key) {
                        break;
                    }
                    if n < asked && drained_on_short_read {
                        break; // the socket is drained: the next byte raises a new edge
                    }
                    if budget == 0 {
                        self.deferred.push(key);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.restore(key, input, None);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    // TLS records without plaintext spent the budget: more may wait.
                    self.restore(key, input, None);
                    self.deferred.push(key);
                    break;
                }
                Err(_) => {
                    self.restore(key, input, None);
                    self.peer_gone(key);
                    return;
                }
            }
        }
        self.finish_turn(key);
    }

    /// Whether `key` stopped processing its input because what it inflated spent
    /// the read budget: it is read again next turn, its held frames first.
    fn yielded(&mut self, key: usize) -> bool {
        match self.conns.get(key) {
            Some(conn) if conn.has(flag::UNPROCESSED) => {
                self.deferred.push(key);
                true
            }
            _ => false,
        }
    }

    /// Stops reading `key` until its output drains (see `resume_reading`); counted
    /// once per pause.
    fn pause_reading(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.has(flag::READ_PAUSED)
        {
            conn.set(flag::READ_PAUSED);
            self.output.stats.read_pauses += 1;
        }
    }

    /// Puts the input buffer back: the scratch buffer to the reactor, a held buffer
    /// to its connection (keeping `keep`, or all its bytes when `keep` is `None`) or
    /// to the pool when nothing is kept.
    pub(super) fn restore(&mut self, key: usize, input: Input, keep: Option<Range<usize>>) {
        match input {
            Input::Scratch(scratch, n) => {
                if let Some(keep) = keep.filter(|k| !k.is_empty())
                    && let Some(conn) = self.conns.get_mut(key)
                {
                    // A read that filled the scratch buffer came from a busy peer
                    // with more on the way: hold its tail in a pooled buffer, which
                    // the next read lands in directly. A short read's tail is a slow
                    // peer's: held at its size.
                    let busy = n == scratch.len();
                    let held = self.pool.take_with(&scratch[keep], busy);
                    conn.input = self.inputs.insert(held) as u32;
                }
                self.scratch = scratch;
            }
            Input::Held(mut held) => {
                if let Some(keep) = keep {
                    held.keep(keep);
                }
                let slot = self.conns.get(key).map_or(NONE, |c| c.input);
                if held.is_empty() || slot == NONE {
                    if slot != NONE {
                        self.inputs.try_remove(slot as usize);
                        if let Some(conn) = self.conns.get_mut(key) {
                            conn.input = NONE;
                        }
                    }
                    self.pool.give(held);
                } else {
                    self.inputs[slot as usize] = held;
                }
            }
        }
    }

    /// Handles the bytes of one read.
    pub(super) fn process(&mut self, key: usize, mut input: Input) {
        let phase = match self.conns.get(key) {
            Some(conn) => conn.phase,
            None => return,
        };
        let bytes: &mut [u8] = match &mut input {
            Input::Scratch(scratch, n) => &mut scratch[..*n],
            Input::Held(held) => held.input_mut(),
        };
        let keep = match phase {
            Phase::Handshake => self.handshake(key, bytes),
            Phase::Open | Phase::Closing => {
                self.touch(key);
                self.frames(key, bytes)
            }
            Phase::Draining => 0..0,
        };
        self.restore(key, input, Some(keep));
    }

    /// Any input counts as life: push the idle deadline back (a store, no wheel
    /// operation) and forget an unanswered idle ping. Not while the write timer
    /// runs: reading does not excuse a peer that does not read.
    pub(super) fn touch(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && conn.phase == Phase::Open
        {
            conn.clear(flag::PINGED);
            if let Some(idle) = self.timeouts.idle
                && !conn.has(flag::WRITE_WAIT)
            {
                conn.deadline = self.wheel.deadline(idle);
            }
        }
    }

    /// Reads the upgrade request. Returns the bytes to keep.
    pub(super) fn handshake(&mut self, key: usize, bytes: &mut [u8]) -> Range<usize> {
        let Some(conn) = self.conns.get(key) else {
            return 0..0;
        };
        let owner = Owner::of(key, conn);
        let max_headers = self.config.max_headers;
        let mut on_stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
        let mut on_heap = Vec::new();
        let headers: &mut [httparse::Header<'_>] = if max_headers <= STACK_HEADERS {
            &mut on_stack[..max_headers]
        } else {
            on_heap.resize(max_headers, httparse::EMPTY_HEADER);
            &mut on_heap
        };
        let parsed = handshake::parse_http_request(bytes, headers, self.config.max_header_bytes);
        let (http, consumed) = match parsed {
            Ok(None) => return 0..bytes.len(),
            Ok(Some(parsed)) => parsed,
            Err(error) => {
                handshake::write_error(self.output.cork(owner), &error);
                self.reject(key);
                return 0..0;
            }
        };
        let Some(conn) = self.conns.get(key) else {
            return 0..0;
        };
        let peer_addr = conn.stream.peer_addr().ok();
        let http = http.with_peer_addr(peer_addr).with_conn(Some((
            self.index,
            key as u32,
            conn.generation,
        )));
        let request = match Request::from_http(http) {
            Ok(request) => request,
            Err(HandshakeError::NotUpgrade) => {
                self.answer_http(key, owner, &http);
                return 0..0;
            }
            Err(error) => {
                handshake::write_error(self.output.cork(owner), &error);
                self.reject(key);
                return 0..0;
            }
        };
        // A deferred upgrade's answer, come through a command; else the handler's.
        // (Keyed, so that one left behind by a panic never answers another.)
        let answered_later = match self.answer_now.take() {
            Some((for_key, answer)) if for_key == key => Some(answer),
            _ => None,
        };
        let later = answered_later.is_some();
        let answer = match answered_later {
            Some(answer) => Ok(answer),
            None => {
                let handler = &mut self.handler;
                catch_unwind(AssertUnwindSafe(|| handler.on_upgrade(&request).answer))
            }
        };
        if answer.is_err() {
            self.output.stats.panics += 1;
            event!(error, conn = ?(self.index, key), "panic in on_upgrade: answered 500");
        }
        match answer {
            Ok(Answer::Later) if !later => {
                // Everything read is kept, the request first: the answer re-reads it.
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.set(flag::DEFERRED);
                }
                self.output.stats.deferred_upgrades += 1;
                return 0..bytes.len();
            }
            Ok(Answer::Accept {
                session,
                protocol,
                headers,
            }) if are_sendable(&headers) => {
                // Only a subprotocol the client offered may be confirmed.
                let protocol = protocol.filter(|p| request.subprotocols().any(|o| o == p));
                let mut extensions = [0u8; deflate::MAX_RESPONSE_LEN];
                let (deflate, extensions) = self.agree_deflate(&request, &mut extensions);
                handshake::write_accept_with_headers(
                    self.output.cork(owner),
                    request.key().as_bytes(),
                    protocol.as_deref(),
                    extensions,
                    headers.iter().map(|(name, value)| (&**name, &**value)),
                );
                let Some(conn) = self.conns.get_mut(key) else {
                    return 0..0;
                };
                conn.proto.set_deflate(deflate);
                conn.session = Some(session);
                conn.phase = Phase::Open;
                conn.set(flag::OPENED);
                self.output.stats.upgrades += 1;
                if conn.has(flag::TLS) {
                    self.output.stats.upgrades_tls += 1;
                }
                event!(debug, conn = ?(self.index, key, conn.generation), tls = conn.has(flag::TLS), "opened");
            }
            Ok(Answer::Reject(response)) => {
                self.refuse_upgrade(key, owner, &response);
                return 0..0;
            }
            // A panic, headers HTTP cannot carry, or "later" as a late answer: the
            // handler's bug.
            Ok(Answer::Accept { .. } | Answer::Later) | Err(_) => {
                handshake::write_status(self.output.cork(owner), 500);
                self.reject(key);
                return 0..0;
            }
        }
        match self.timeouts.idle {
            Some(idle) => self.set_deadline(key, idle),
            None => self.clear_deadline(key),
        }
        self.callback(key, |h, ws| h.on_open(ws));
        // Frames sent right behind the request are in this read already.
        let rest = self.frames(key, &mut bytes[consumed..]);
        rest.start + consumed..rest.end + consumed
    }

    /// permessage-deflate as agreed with `request`'s offers (`None` when compression
    /// is off or nothing offered is acceptable), and the extension header's value.
    pub(super) fn agree_deflate<'a>(
        &self,
        request: &Request<'_, '_>,
        out: &'a mut [u8; deflate::MAX_RESPONSE_LEN],
    ) -> (Option<deflate::PerMessageDeflate>, Option<&'a str>) {
        let agreed = self.config.compression.server().and_then(|server| {
            let offers = request
                .headers()
                .filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"))
                .map(|(_, value)| value);
            server.negotiate(offers, out)
        });
        match agreed {
            // The response is ASCII that this crate wrote.
            Some((agreed, len)) => (Some(agreed), std::str::from_utf8(&out[..len]).ok()),
            None => (None, None),
        }
    }

    /// Answers a refused handshake: the response is corked; flush it and drain.
    pub(super) fn reject(&mut self, key: usize) {
        self.output.stats.rejected += 1;
        event!(debug, conn = ?(self.index, key), "upgrade refused");
        self.drain(key);
    }

    /// Hands frames to proto and events to the handler. Returns the bytes to keep.
    pub(super) fn frames(&mut self, key: usize, bytes: &mut [u8]) -> Range<usize> {
        let limits = self.config.limits;
        let Some(conn) = self.conns.get(key) else {
            return 0..0;
        };
        let owner = Owner::of(key, conn);
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return 0..0;
            };
            if conn.phase == Phase::Draining {
                return 0..0;
            }
            // Replies to a read full of pings leave now rather than grow the cork.
            // A write error is seen by the next read.
            let _ = self.output.flush_full_cork(owner, conn);
            let decoded = conn
                .proto
                .decode(&mut bytes[pos..], self.output.cork(owner), &limits);
            let (consumed, event) = match decoded {
                Decoded::NeedMore { keep } => return pos + keep.start..pos + keep.end,
                Decoded::Event { consumed, event } => (consumed, event),
            };
            match event {
                Event::Message(message) => {
                    #[cfg(test)]
                    self.injected_fault(crate::config::Fault::Engine, message.as_bytes());
                    self.output.stats.messages_in += 1;
                    self.output.stats.bytes_in += message.len() as u64;
                    self.callback(key, |h, ws| h.on_message(ws, message));
                }
                Event::Compressed(compressed) => {
                    if !self.inflate(key, compressed, limits.max_message_size) {
                        return 0..0;
                    }
                    if self.inflated >= self.config.read_budget && pos + consumed < bytes.len() {
                        // A message inflates to up to `max_message_size` from a few
                        // bytes: what it inflated counts against the read budget,
                        // and past it the rest waits for the next turn.
                        self.after_callback(key);
                        if let Some(conn) = self.conns.get_mut(key)
                            && conn.phase != Phase::Draining
                        {
                            conn.set(flag::UNPROCESSED);
                            return pos + consumed..bytes.len();
                        }
                        return 0..0;
                    }
                }
                Event::Ping(payload) => self.callback(key, |h, ws| h.on_ping(ws, payload)),
                Event::Pong(payload) => self.callback(key, |h, ws| h.on_pong(ws, payload)),
                Event::Close(frame) => {
                    let (code, reason) =
                        frame.map_or((CloseCode::NO_STATUS, ""), |f| (f.code, f.reason));
                    self.report_close(key, code, reason);
                    self.drain(key);
                    return 0..0;
                }
                Event::Error(error) => {
                    event!(debug, conn = ?(self.index, key), code = error.code.0, reason = error.reason, "protocol error: closing");
                    self.report_close(key, error.code, error.reason);
                    self.drain(key);
                    return 0..0;
                }
            }
            pos += consumed;
            self.after_callback(key);
        }
    }

    /// Inflates a compressed message of `key` and hands it to the handler. On bad
    /// deflate data, invalid text or a message over `max`, fails the connection
    /// (1007 or 1009) and returns `false`.
    fn inflate(&mut self, key: usize, compressed: Compressed<'_>, max: usize) -> bool {
        let Some(conn) = self.conns.get(key) else {
            return false;
        };
        let generation = conn.generation;
        let (Some(params), Some(mut inflaters)) = (conn.proto.deflate(), self.inflaters.take())
        else {
            // Compressed messages exist only where deflate was negotiated.
            self.fail(key, CloseCode::INTERNAL_ERROR, "no decompressor");
            return false;
        };
        // The decompressors are out of the reactor while the message is handed on:
        // put back even if the codec panics, since every connection's are in there.
        let result = catch_unwind(AssertUnwindSafe(|| {
            match inflaters.inflate(key, generation, params, compressed, max) {
                Ok(message) => {
                    self.inflated += message.len();
                    self.output.stats.messages_in += 1;
                    self.output.stats.bytes_in += message.len() as u64;
                    self.callback(key, |h, ws| h.on_message(ws, message));
                    Ok(())
                }
                Err(error) => Err(error),
            }
        }));
        inflaters.trim();
        self.inflaters = Some(inflaters);
        let result = result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match result {
            Ok(()) => true,
            Err(error) => {
                self.fail(key, error.code(), error.reason());
                false
            }
        }
    }

    /// Fails connection `key` for a protocol error found outside proto's decoder.
    fn fail(&mut self, key: usize, code: CloseCode, reason: &'static str) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let owner = Owner::of(key, conn);
        let error = conn.proto.fail_with(self.output.cork(owner), code, reason);
        event!(debug, conn = ?(self.index, key, conn.generation), code = error.code.0, reason = error.reason, "protocol error: closing");
        self.report_close(key, error.code, error.reason);
        self.drain(key);
    }

    /// Calls the handler with a socket for connection `key`. A panic closes the
    /// connection with 1011.
    pub(super) fn callback(
        &mut self,
        key: usize,
        f: impl FnOnce(&mut H, &mut Socket<'_, H::Session>),
    ) {
        let index = self.index;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.session.is_none() {
            return;
        }
        let id = ConnId {
            reactor: index,
            slot: key as u32,
            generation: conn.generation,
        };
        let handler = &mut self.handler;
        let mut socket = Socket {
            conns: &mut self.conns,
            key,
            output: &mut self.output,
            pubsub: &mut self.pubsub,
            id,
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| f(handler, &mut socket)));
        if outcome.is_err() {
            self.output.stats.panics += 1;
            event!(error, conn = ?(id.reactor, id.slot, id.generation), "panic in a handler callback: closing with 1011");
        }
        if outcome.is_err()
            && let Some(conn) = self.conns.get_mut(key)
        {
            self.output.close(
                Owner::from(id),
                conn,
                CloseCode::INTERNAL_ERROR,
                "internal error",
            );
        }
        self.after_callback(key);
    }

    /// Notices a close the handler (or the backpressure policy) started.
    pub(super) fn after_callback(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase == Phase::Open && conn.proto.close_state() == CloseState::SentClose {
            conn.phase = Phase::Closing;
            conn.clear(flag::WRITE_WAIT);
            let close = self.timeouts.close;
            self.set_deadline(key, close);
        }
    }
}
