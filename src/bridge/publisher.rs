//! The publishing thread: takes what the reactors queued, wraps each in an envelope
//! and PUBLISHes a batch in one pipeline (one round trip), reconnecting when the
//! connection fails.

use std::sync::atomic::Ordering::Relaxed;

use super::{Backoff, Link, Outbound, PING_EVERY, connect, envelope};

/// Publications per pipeline: enough to amortise the round trip, few enough that a
/// failure loses little.
const BATCH: usize = 512;

pub(super) fn run(link: &Link) {
    let mut backoff = Backoff::new(&link.config);
    let mut was_up = false;
    let mut batch = Vec::with_capacity(BATCH);
    while !link.stopping() {
        let mut con = match connect(link, "pub") {
            Ok(con) => con,
            Err(_) => {
                // Publications are dropped, not kept for later, while Redis is away.
                link.discard_outbound();
                backoff.wait(link);
                continue;
            }
        };
        backoff.reset();
        link.up(true, was_up);
        was_up = true;
        let lost = serve(link, &mut con, &mut batch);
        link.down(true);
        link.discard_outbound();
        if let Some(e) = lost {
            eprintln!(
                "wsreactor: redis bridge {}: publishing connection lost ({e}); reconnecting",
                link.config.node_name
            );
        }
    }
}

/// Publishes until the connection fails (its error) or the bridge stops (`None`).
fn serve(
    link: &Link,
    con: &mut ::redis::Connection,
    batch: &mut Vec<Outbound>,
) -> Option<::redis::RedisError> {
    let mut pipe = ::redis::Pipeline::with_capacity(BATCH);
    let mut channel = Vec::new();
    let mut wrapped = Vec::new();
    loop {
        batch.clear();
        link.take_outbound(BATCH, PING_EVERY, batch);
        if link.stopping() {
            link.counters.dropped.fetch_add(batch.len() as u64, Relaxed);
            return None;
        }
        if batch.is_empty() {
            if let Err(e) = ::redis::cmd("PING").exec(con) {
                return Some(e);
            }
            continue;
        }
        pipe.clear();
        for out in batch.iter() {
            let Some((text, payload)) = envelope::split_frame(&out.frame) else {
                link.counters.dropped.fetch_add(1, Relaxed);
                continue;
            };
            channel.clear();
            channel.extend_from_slice(&link.prefix);
            channel.extend_from_slice(&out.topic);
            envelope::write(&mut wrapped, link.node, text, payload);
            pipe.cmd("PUBLISH")
                .arg(&channel[..])
                .arg(&wrapped[..])
                .ignore();
        }
        let n = pipe.len() as u64;
        if n == 0 {
            continue;
        }
        // At most once: a batch whose answer did not come is not sent again.
        match pipe.exec(con) {
            Ok(()) => link.counters.sent.fetch_add(n, Relaxed),
            Err(e) => {
                link.counters.dropped.fetch_add(n, Relaxed);
                return Some(e);
            }
        };
    }
}
