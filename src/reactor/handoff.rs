//! The reactor's side of a hand-off (`server/handoff.rs`): an upgrade request
//! another server read is checked and answered here, and an accepted one waits,
//! session and all, for its socket.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use slab::Slab;

use super::conn::flag;
use super::{Input, Reactor};
use crate::config::deadline;
use crate::handler::Handler;
use crate::proto::deflate::{self, PerMessageDeflate};
use crate::proto::handshake::{self, HandshakeError, Request};
use crate::response::{Answer, HttpResponse, are_sendable};
use crate::server::handoff::{Accepted, HandoffAnswer, HandoffError, ReplyTo, Ticket};

/// An accepted hand-off waiting for its socket.
struct Waiting<S> {
    session: S,
    deflate: Option<PerMessageDeflate>,
    generation: u64,
}

/// The hand-offs a reactor has accepted and not yet opened.
pub(super) struct Handoffs<S> {
    waiting: Slab<Waiting<S>>,
    /// When each is forgotten, in the order they were accepted (one timeout for
    /// all, so the earliest is first).
    expiry: VecDeque<(Instant, usize, u64)>,
}

impl<S> Handoffs<S> {
    pub(super) fn new() -> Handoffs<S> {
        Handoffs {
            waiting: Slab::new(),
            expiry: VecDeque::new(),
        }
    }

    /// Takes the waiting hand-off `slot` if it is still `generation`'s.
    fn take(&mut self, slot: usize, generation: u64) -> Option<Waiting<S>> {
        if self.waiting.get(slot)?.generation != generation {
            return None;
        }
        self.waiting.try_remove(slot)
    }

    /// Forgets every waiting hand-off (at shutdown).
    pub(super) fn clear(&mut self) {
        self.waiting.clear();
        self.expiry.clear();
    }

    /// Forgets those whose time is up (reads the clock only while some wait).
    pub(super) fn expire(&mut self) {
        if self.expiry.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(&(at, slot, generation)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            self.take(slot, generation);
        }
    }
}

/// The response to a request that failed the handshake's checks, for the other
/// server to send (the headers the engine writes with its own refusals).
fn refusal(error: &HandshakeError) -> HttpResponse {
    let response = HttpResponse::empty(error.status());
    match error.status() {
        426 => response.with_header("Sec-WebSocket-Version", "13"),
        405 => response.with_header("Allow", "GET"),
        _ => response,
    }
}

impl<H: Handler> Reactor<H> {
    /// Checks a handed-over upgrade request, asks the handler, and answers.
    pub(super) fn handoff_upgrade(
        &mut self,
        head: &[u8],
        peer_addr: Option<SocketAddr>,
        reply: ReplyTo,
    ) {
        if self.shutdown.is_some() {
            return reply.answer(Err(HandoffError::Stopped));
        }
        let mut slots = vec![httparse::EMPTY_HEADER; self.config.max_headers];
        let parsed = handshake::parse_http_request(head, &mut slots, self.config.max_header_bytes);
        let http = match parsed {
            Ok(Some((http, _))) => http.with_peer_addr(peer_addr),
            // The head is whole (it ends in an empty line): only too large a one.
            Ok(None) => {
                return reply.answer(Ok(HandoffAnswer::Reject(refusal(
                    &HandshakeError::HeaderTooLarge,
                ))));
            }
            Err(error) => return reply.answer(Ok(HandoffAnswer::Reject(refusal(&error)))),
        };
        let request = match Request::from_http(http) {
            Ok(request) => request,
            Err(HandshakeError::NotUpgrade) => return reply.answer(Err(HandoffError::NotUpgrade)),
            Err(error) => return reply.answer(Ok(HandoffAnswer::Reject(refusal(&error)))),
        };
        let handler = &mut self.handler;
        let answer = catch_unwind(AssertUnwindSafe(|| handler.on_upgrade(&request).answer));
        if answer.is_err() {
            self.output.stats.panics += 1;
            crate::observe::event!(error, "panic in on_upgrade of a hand-off: answered 500");
        }
        let answer = match answer {
            Ok(Answer::Accept {
                session,
                protocol,
                headers,
            }) if are_sendable(&headers) => {
                let protocol = protocol.filter(|p| request.subprotocols().any(|o| o == p));
                let mut extensions = [0u8; deflate::MAX_RESPONSE_LEN];
                let (agreed, extensions) = self.agree_deflate(&request, &mut extensions);
                let accept = handshake::accept_key(request.key().as_bytes());
                let mut head = vec![
                    ("upgrade".to_owned(), "websocket".to_owned()),
                    ("connection".to_owned(), "upgrade".to_owned()),
                    (
                        "sec-websocket-accept".to_owned(),
                        String::from_utf8_lossy(&accept).into_owned(),
                    ),
                ];
                if let Some(protocol) = protocol {
                    head.push(("sec-websocket-protocol".to_owned(), protocol.into_owned()));
                }
                if let Some(extensions) = extensions {
                    head.push(("sec-websocket-extensions".to_owned(), extensions.to_owned()));
                }
                head.extend(
                    headers
                        .into_iter()
                        .map(|(n, v)| (n.into_owned(), v.into_owned())),
                );
                let generation = self.next_generation;
                self.next_generation += 1;
                let slot = self.handoffs.waiting.insert(Waiting {
                    session,
                    deflate: agreed,
                    generation,
                });
                let expires = self
                    .config
                    .handshake_timeout
                    .map(|t| deadline(Instant::now(), t));
                if let Some(at) = expires {
                    self.handoffs.expiry.push_back((at, slot, generation));
                }
                let ticket = Ticket {
                    reactor: self.shared.clone(),
                    slot,
                    generation,
                    expires,
                };
                HandoffAnswer::Accept(Accepted::new(head, ticket))
            }
            Ok(Answer::Reject(response)) if response.is_sendable(300..=599) => {
                self.output.stats.rejected += 1;
                HandoffAnswer::Reject(response)
            }
            // A panic, a response or headers HTTP cannot carry, or "later", which a
            // hand-off cannot wait for (module docs of `server::handoff`).
            Ok(_) | Err(_) => {
                self.output.stats.rejected += 1;
                HandoffAnswer::Reject(HttpResponse::empty(500))
            }
        };
        reply.answer(Ok(answer));
    }

    /// Opens a handed-over connection on the socket its 101 went out on, and
    /// serves what the other server read past the request.
    pub(super) fn handoff_attach(
        &mut self,
        slot: usize,
        generation: u64,
        stream: std::net::TcpStream,
        read: &[u8],
    ) {
        // Expired, forgotten or shutting down: the stream closes as it drops.
        let Some(waiting) = self.handoffs.take(slot, generation) else {
            self.output.stats.rejected += 1;
            return;
        };
        if self.shutdown.is_some() {
            return;
        }
        let stream = mio::net::TcpStream::from_std(stream);
        let Some(key) = self.register(stream, generation) else {
            return;
        };
        let conn = &mut self.conns[key];
        conn.proto.set_deflate(waiting.deflate);
        conn.session = Some(waiting.session);
        conn.phase = super::conn::Phase::Open;
        conn.set(flag::OPENED);
        self.output.stats.accepted += 1;
        self.output.stats.handoffs += 1;
        self.output.stats.upgrades += 1;
        crate::observe::event!(debug, conn = ?(self.index, key, generation), "opened (handed over)");
        match self.timeouts.idle {
            Some(idle) => self.set_deadline(key, idle),
            None => self.clear_deadline(key),
        }
        self.guard(key, |r| {
            r.callback(key, |h, ws| h.on_open(ws));
            if !read.is_empty() && r.conns.contains(key) {
                if read.len() <= r.scratch.len() {
                    let mut scratch = std::mem::take(&mut r.scratch);
                    scratch[..read.len()].copy_from_slice(read);
                    r.process(key, Input::Scratch(scratch, read.len()));
                } else if let Some(conn) = r.conns.get_mut(key) {
                    let held = r.pool.take_with(read, true);
                    let slot = r.inputs.insert(Default::default());
                    conn.input = slot as u32;
                    r.process(key, Input::Held(held));
                }
            }
            // Bytes that came before the socket was registered raise no edge.
            if r.conns.contains(key) {
                r.deferred.push(key);
                r.finish_turn(key);
            }
        });
    }

    /// Forgets an accepted hand-off that will not be attached.
    pub(super) fn handoff_forget(&mut self, slot: usize, generation: u64) {
        self.handoffs.take(slot, generation);
    }
}
