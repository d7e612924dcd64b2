//! What a connection inflates counts against its read budget: a few hundred bytes
//! of compressed frames can inflate to megabytes, which the budget, counting the
//! bytes read, let through in one go (the review: a 16 KiB bomb inflates to
//! `max_message_size`, 1,000 times the work per byte of budget). Past the budget
//! the rest of what was read waits for the next turn, and the other connections
//! are served in between.

#[path = "util/deflate_client.rs"]
mod deflate_client;
#[path = "util/server.rs"]
mod server;

use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use deflate_client::DeflateClient;
use server::{PATIENCE, start, test_config};
use wsreactor::proto::frame::{FrameHeader, OpCode, RSV1};
use wsreactor::{Compression, Handler, Message, Request, Socket, Upgrade};

/// One bomb: 1 MiB of zeros, a few hundred bytes compressed.
const BOMB: usize = 1 << 20;
const BOMBS: usize = 8;

/// Logs what arrives, by path; a text "hold" from `/hold` blocks the reactor until
/// the test lets it go.
#[derive(Clone)]
struct Log {
    seen: Arc<Mutex<Vec<String>>>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
    holding: mpsc::Sender<()>,
}

impl Handler for Log {
    type Session = String;
    fn on_upgrade(&mut self, request: &Request<'_, '_>) -> Upgrade<String> {
        Upgrade::accept(request.path().to_owned())
    }
    fn on_message(&mut self, ws: &mut Socket<'_, String>, message: Message<'_>) {
        if ws.session() == "/hold" {
            let _ = self.holding.send(());
            let _ = self.release.lock().unwrap().recv_timeout(PATIENCE);
            return;
        }
        let entry = format!("{} {}", ws.session(), message.len());
        self.seen.lock().unwrap().push(entry);
    }
}

/// A masked, compressed binary frame of `payload` (already deflated).
fn compressed_frame(payload: &[u8]) -> Vec<u8> {
    let key = [9, 8, 7, 6];
    let mut header = FrameHeader::outgoing(OpCode::Binary, true, payload.len(), Some(key));
    header.rsv = RSV1;
    let mut frame = header.encode().as_bytes().to_vec();
    let start = frame.len();
    frame.extend_from_slice(payload);
    wsreactor::proto::mask::apply_mask_plain(&mut frame[start..], key, 0);
    frame
}

#[test]
fn what_a_read_inflates_counts_against_the_read_budget() {
    let (release, released) = mpsc::channel();
    let (holding, held) = mpsc::channel();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Log {
        seen: seen.clone(),
        release: Arc::new(Mutex::new(released)),
        holding,
    };
    let config = test_config()
        .with_compression(Compression::shared())
        .with_max_message_size(BOMB)
        .with_handshake_timeout(None);
    let server = start(config, handler);
    let addr = server.local_addr();
    let offer = Some("permessage-deflate");
    let mut holder = DeflateClient::connect_to(addr, "/hold", offer);
    let mut bomber = DeflateClient::connect_to(addr, "/bomber", offer);
    let mut victim = DeflateClient::connect_to(addr, "/victim", offer);
    // The reactor is held while both write, so that one turn finds all their
    // bytes: the bombs (a few KiB, one read), then the victim's message.
    holder.send(Message::Text("hold"), false);
    held.recv_timeout(PATIENCE).unwrap();
    let bomb = compressed_frame(&DeflateClient::deflated(&vec![0u8; BOMB]));
    let bombs: Vec<u8> = (0..BOMBS).flat_map(|_| bomb.clone()).collect();
    assert!(
        bombs.len() < 16 * 1024,
        "one read takes them all: {}",
        bombs.len()
    );
    bomber.stream.write_all(&bombs).unwrap();
    victim.send(Message::Text("hello"), false);
    release.send(()).unwrap();
    server::wait_until(PATIENCE, || seen.lock().unwrap().len() == BOMBS + 1);
    let seen = seen.lock().unwrap().clone();
    let victim_at = seen.iter().position(|s| s == "/victim 5").unwrap();
    // The first bomb spends the bomber's budget for its turn: the victim is served
    // before the bomber's last bombs. (Were the victim's event first in the turn,
    // it would come first anyway.)
    assert!(victim_at < BOMBS, "{seen:?}");
    assert!(
        seen.iter()
            .filter(|s| *s == &format!("/bomber {BOMB}"))
            .count()
            == BOMBS
    );
}
