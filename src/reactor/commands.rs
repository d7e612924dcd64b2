//! Commands from other threads: a bounded queue per reactor, woken by a `mio::Waker`,
//! run under a per-turn budget.
//!
//! A producer learns from the call itself whether its command was queued, refused
//! because the queue is full, or refused because the reactor has exited. The queue is
//! bounded in bytes (each command counts its payload plus a fixed overhead), so a
//! producer that outruns the reactors cannot grow the process. The reactor runs at
//! most [`COMMAND_BUDGET`] deliveries per loop turn, so a flood of commands cannot
//! starve reads and timers.

use std::any::Any;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use mio::{Poll, Token, Waker};

use super::Input;
use super::Reactor;
use super::conn::{NONE, Phase, flag};
use super::output::Owner;
use crate::handler::{ConnId, Handler};
use crate::proto::CloseCode;
use crate::response::{Answer, HttpResponse, Upgrade};
use crate::server::handoff::ReplyTo;
use crate::stats::SharedStats;
use crate::status::QueueStatus;

/// What a queued command costs against the limit beyond its payload: the command
/// itself and its share of the queue.
const COMMAND_OVERHEAD: usize = 64;

/// Deliveries per loop turn: a send or a close is one, a broadcast one per
/// connection of the reactor. At least one command runs per turn.
const COMMAND_BUDGET: usize = 4096;

/// A request from another thread.
pub(crate) enum Command {
    Send {
        id: ConnId,
        frame: Bytes,
    },
    Broadcast {
        frame: Bytes,
        except: Option<ConnId>,
    },
    Close {
        id: ConnId,
        code: CloseCode,
        reason: String,
    },
    Publish {
        topic: Bytes,
        frame: Bytes,
        except: Option<ConnId>,
        /// The message's offset in its topic's history, if the topic has one.
        offset: Option<u64>,
    },
    /// The answer to an upgrade the handler deferred: an `Upgrade<H::Session>`.
    Answer {
        id: ConnId,
        answer: Box<dyn Any + Send>,
        /// What the answer's response body and headers weigh.
        weight: usize,
    },
    /// An upgrade request another server read ([`Sender::upgrade`]): check it, ask
    /// the handler, answer.
    Upgrade {
        head: Vec<u8>,
        peer_addr: Option<SocketAddr>,
        reply: ReplyTo,
    },
    /// The socket of an accepted hand-off. Never refused for room: its upgrade was
    /// admitted.
    Attach {
        slot: usize,
        generation: u64,
        stream: std::net::TcpStream,
        read: Vec<u8>,
    },
    /// An accepted hand-off that will not be attached. Never refused for room.
    Forget {
        slot: usize,
        generation: u64,
    },
    /// Never refused for room, and run in order behind what was queued before it.
    Shutdown {
        /// `None`: wait for the close handshakes without a deadline.
        deadline: Option<Instant>,
    },
}

impl Command {
    /// What the command counts against the queue's limit.
    fn cost(&self) -> usize {
        COMMAND_OVERHEAD
            + match self {
                Command::Send { frame, .. } | Command::Broadcast { frame, .. } => frame.len(),
                Command::Publish { topic, frame, .. } => topic.len() + frame.len(),
                Command::Close { reason, .. } => reason.len(),
                Command::Answer { weight, .. } => *weight,
                Command::Upgrade { head, .. } => head.len(),
                Command::Attach { read, .. } => read.len(),
                Command::Forget { .. } => 0,
                Command::Shutdown { .. } => 0,
            }
    }
}

/// The queue proper, behind the mutex.
#[derive(Default)]
pub(crate) struct Queue {
    commands: VecDeque<Command>,
    /// Set when the reactor exits: everything is refused from then on.
    closed: bool,
}

/// What a reactor shares with the rest of the process.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    /// The cost of the commands queued and not yet run.
    bytes: AtomicUsize,
    limit: usize,
    /// Set while commands wait, so that senders wake the reactor once, not per
    /// command.
    pending: AtomicBool,
    waker: Waker,
    pub(crate) stats: SharedStats,
}

impl Shared {
    pub(crate) fn new(poll: &Poll, waker: Token, limit: usize) -> io::Result<Shared> {
        Ok(Shared {
            queue: Mutex::new(Queue::default()),
            bytes: AtomicUsize::new(0),
            limit,
            pending: AtomicBool::new(false),
            waker: Waker::new(poll.registry(), waker)?,
            stats: SharedStats::default(),
        })
    }

    /// Locks the queue. A panic while it was held cannot leave it inconsistent (every
    /// change under the lock is one push or one drain), so a poisoned lock is used.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `command` may join the queue now (the lock is held by the caller).
    pub(crate) fn admits(&self, queue: &Queue, command: &Command) -> QueueStatus {
        if queue.closed {
            return QueueStatus::Closed;
        }
        let is_shutdown = matches!(
            command,
            Command::Shutdown { .. } | Command::Attach { .. } | Command::Forget { .. }
        );
        let queued = self.bytes.load(Ordering::Acquire);
        if !is_shutdown && queued + command.cost() > self.limit {
            return QueueStatus::Full;
        }
        QueueStatus::Queued
    }

    /// Queues an admitted command (the lock is held by the caller). Call
    /// [`wake`](Self::wake) after releasing the lock.
    pub(crate) fn enqueue(&self, queue: &mut Queue, command: Command) {
        self.bytes.fetch_add(command.cost(), Ordering::AcqRel);
        queue.commands.push_back(command);
    }

    /// Queues a command for this reactor and wakes it, or says why not.
    pub(crate) fn push(&self, command: Command) -> QueueStatus {
        let mut queue = self.lock();
        let status = self.admits(&queue, &command);
        if status == QueueStatus::Queued {
            self.enqueue(&mut queue, command);
        }
        drop(queue);
        if status == QueueStatus::Queued {
            self.wake();
        }
        status
    }

    /// Queues a command for this reactor and wakes it, or gives it back with the
    /// reason it was refused.
    pub(crate) fn try_push(&self, command: Command) -> Result<(), (QueueStatus, Command)> {
        let mut queue = self.lock();
        let status = self.admits(&queue, &command);
        if status != QueueStatus::Queued {
            return Err((status, command));
        }
        self.enqueue(&mut queue, command);
        drop(queue);
        self.wake();
        Ok(())
    }

    /// Wakes the reactor if it was not already woken.
    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            // A failed wake means the reactor is gone; `closed` tells producers.
            let _ = self.waker.wake();
        }
    }

    /// Marks the reactor gone: later commands are refused, queued ones dropped.
    pub(crate) fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.commands.clear();
        self.bytes.store(0, Ordering::Release);
    }
}

/// Closes a reactor's queue when its thread leaves `run`, by returning or by a panic.
pub(crate) struct CloseOnExit<'a>(pub(crate) &'a Shared);

impl Drop for CloseOnExit<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// How many commands a reactor takes from its queue under one lock.
const BATCH: usize = 256;

impl<H: Handler> Reactor<H> {
    fn conn_key(&self, id: ConnId) -> Option<usize> {
        let key = id.slot as usize;
        let conn = self.conns.get(key)?;
        (id.reactor == self.index && conn.generation == id.generation).then_some(key)
    }

    /// Runs queued commands, up to the turn's budget. Leaves `commands_pending` set
    /// when some are left for the next turn.
    pub(super) fn run_commands(&mut self) {
        self.shared.pending.store(false, Ordering::Release);
        if self.commands.is_empty() {
            let mut queue = self.shared.lock();
            let n = queue.commands.len().min(BATCH);
            self.commands.extend(queue.commands.drain(..n));
        }
        let mut budget = COMMAND_BUDGET;
        while budget > 0
            && let Some(command) = self.commands.pop_front()
        {
            self.shared
                .bytes
                .fetch_sub(command.cost(), Ordering::AcqRel);
            budget = budget.saturating_sub(self.run_command(command));
        }
        self.commands_pending =
            !self.commands.is_empty() || !self.shared.lock().commands.is_empty();
    }

    /// Runs one command; returns how many deliveries it made (at least one).
    fn run_command(&mut self, command: Command) -> usize {
        #[cfg(test)]
        if let Command::Close { reason, .. } = &command {
            self.injected_fault(crate::config::Fault::Reactor, reason.as_bytes());
        }
        match command {
            Command::Send { id, frame } => {
                if let Some(key) = self.conn_key(id) {
                    self.send_shared(key, &frame);
                }
                1
            }
            Command::Broadcast { frame, except } => {
                let except = except.and_then(|id| self.conn_key(id));
                let mut keys = std::mem::take(&mut self.broadcast_keys);
                keys.extend(
                    self.conns
                        .iter()
                        .filter(|(k, c)| c.phase == Phase::Open && Some(*k) != except)
                        .map(|(k, _)| k),
                );
                for &key in &keys {
                    self.send_shared(key, &frame);
                }
                let sent = keys.len();
                keys.clear();
                self.broadcast_keys = keys;
                sent.max(1)
            }
            Command::Close { id, code, reason } => {
                if let Some(key) = self.conn_key(id) {
                    self.guard(key, |r| {
                        if let Some(conn) = r.conns.get_mut(key) {
                            r.output.close(Owner::of(key, conn), conn, code, &reason);
                            r.after_callback(key);
                            r.finish_turn(key);
                        }
                    });
                }
                1
            }
            Command::Publish {
                topic,
                frame,
                except,
                offset,
            } => {
                let except = except.and_then(|id| self.conn_key(id));
                let published = super::topics::publish_local_at(
                    &mut self.conns,
                    &mut self.output,
                    &mut self.pubsub,
                    &topic,
                    &frame,
                    except,
                    offset,
                );
                (published.reached + published.dropped).max(1)
            }
            Command::Answer { id, answer, .. } => {
                if let Some(key) = self.conn_key(id) {
                    self.guard(key, |r| r.answer_upgrade(key, answer));
                }
                1
            }
            Command::Upgrade {
                head,
                peer_addr,
                reply,
            } => {
                self.handoff_upgrade(&head, peer_addr, reply);
                1
            }
            Command::Attach {
                slot,
                generation,
                stream,
                read,
            } => {
                self.handoff_attach(slot, generation, stream, &read);
                1
            }
            Command::Forget { slot, generation } => {
                self.handoff_forget(slot, generation);
                1
            }
            Command::Shutdown { deadline } => {
                self.begin_shutdown(deadline);
                1
            }
        }
    }

    /// Opens or refuses a connection whose upgrade the handler deferred, with the
    /// answer given later. An answer of the wrong session type (the handler's bug)
    /// is answered 500; one for a connection not waiting for it is dropped.
    fn answer_upgrade(&mut self, key: usize, answer: Box<dyn Any + Send>) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase != Phase::Handshake || !conn.has(flag::DEFERRED) {
            return;
        }
        conn.clear(flag::DEFERRED);
        let answer = match answer.downcast::<Upgrade<H::Session>>() {
            Ok(upgrade) => upgrade.answer,
            Err(_) => Answer::Reject(HttpResponse::empty(500)),
        };
        self.answer_now = Some((key, answer));
        if conn.input != NONE {
            let held = std::mem::take(&mut self.inputs[conn.input as usize]);
            self.process(key, Input::Held(held));
        }
        // An answer never used (the request was not held: cannot happen) is dropped.
        self.answer_now = None;
        // Bytes that came behind the request while it waited: the socket's edge was
        // spent, so read it in the next turn.
        if self.conns.get(key).is_some_and(|c| c.phase == Phase::Open) {
            self.deferred.push(key);
        }
        self.finish_turn(key);
    }

    /// Sends a frame from another thread (or a broadcast) to `key`, then finishes
    /// that connection's turn: what the kernel refused is queued with its write
    /// timer started, and a close the policy started is written.
    fn send_shared(&mut self, key: usize, frame: &Bytes) {
        self.guard(key, |r| {
            let Some(conn) = r.conns.get_mut(key) else {
                return;
            };
            let _ = r.output.send_shared(Owner::of(key, conn), conn, frame);
            r.after_callback(key);
            r.finish_turn(key);
        });
    }

    /// Stops accepting, closes every connection with 1001, and lets the loop end
    /// once they are gone or the deadline passes.
    fn begin_shutdown(&mut self, deadline: Option<Instant>) {
        let earliest = match (self.shutdown, deadline) {
            (Some(Some(a)), Some(b)) => Some(a.min(b)),
            (Some(Some(a)), None) => Some(a),
            (_, b) => b,
        };
        self.shutdown = Some(earliest);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if let Some((mut listener, _)) = self.tls_listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_pending = false;
        self.handoffs.clear();
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            match conn.phase {
                Phase::Handshake => self.remove(key),
                Phase::Open => {
                    self.output.close(
                        Owner::of(key, conn),
                        conn,
                        CloseCode::GOING_AWAY,
                        "server shutting down",
                    );
                    self.after_callback(key);
                    self.finish_turn(key);
                }
                // Answered (plain HTTP, a refusal, a finished close handshake) and
                // written: nothing is owed to the peer any more.
                Phase::Draining if conn.has(super::conn::flag::WRITE_SHUT) => {
                    self.close_drained(key);
                }
                Phase::Closing | Phase::Draining => {}
            }
        }
    }
}
