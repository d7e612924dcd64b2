//! `Duration::MAX`, the natural way to say "never", is accepted wherever a duration
//! is configured: it used to overflow `Instant + Duration` and panic, in a reactor
//! (which then stopped serving) or in the client.

#[path = "util/server.rs"]
mod server;

use std::time::Duration;

use server::{Echo, PATIENCE, assert_echo, connect, start, test_config, wait_until};
use wsreactor::client::{ClientBuilder, Incoming};
use wsreactor::{Compression, Deflate, Message};

/// Waits for a few turns of an idle reactor's loop: one a timer tick, so the
/// sweeps that run on the tick have run.
fn let_ticks_pass(server: &wsreactor::ServerHandle) {
    let turns = server.stats().loop_turns;
    wait_until(PATIENCE, || server.stats().loop_turns >= turns + 4);
}

#[test]
fn a_compressor_that_is_never_released_does_not_stop_the_reactor() {
    for compression in [
        Compression::Dedicated(Deflate::default().with_release_after(Duration::MAX)),
        Compression::Shared(Deflate::default().with_release_after(Duration::MAX)),
    ] {
        let server = start(test_config().with_compression(compression), Echo);
        let mut client = connect(server.local_addr(), "/");
        assert_echo(&mut client, "served");
        let_ticks_pass(&server);
        assert_echo(&mut client, "still served after the sweeps");
    }
}

#[test]
fn timeouts_of_duration_max_are_never() {
    let config = test_config()
        .with_handshake_timeout(Some(Duration::MAX))
        .with_idle_timeout(Some(Duration::MAX))
        .with_write_timeout(Some(Duration::MAX))
        .with_close_timeout(Duration::MAX);
    let server = start(config, Echo);
    let mut client = connect(server.local_addr(), "/");
    assert_echo(&mut client, "served");
    let_ticks_pass(&server);
    assert_echo(&mut client, "still served");
}

#[test]
fn the_client_takes_duration_max_for_its_timeouts() {
    let server = start(test_config(), Echo);
    let mut client = ClientBuilder::new(format!("ws://{}/", server.local_addr()))
        .handshake_timeout(Duration::MAX)
        .close_timeout(Duration::MAX)
        .read_timeout(Some(PATIENCE))
        .connect()
        .unwrap();
    client.send(Message::Text("hi")).unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Message(Message::Text("hi"))
    );
    // The close handshake with a close timeout of Duration::MAX: the server answers,
    // and the client, having read the answer, ends its side too.
    client.close(wsreactor::CloseCode::NORMAL, "bye").unwrap();
    assert!(matches!(
        client.recv().unwrap(),
        Incoming::Close(Some(f)) if f.code == wsreactor::CloseCode::NORMAL
    ));
    drop(client);
    wait_until(PATIENCE, || server.stats().open == 0);
}

#[cfg(feature = "tls")]
#[path = "util/tls.rs"]
mod tls;

/// Traffic keys that are never let go: the sweep used to panic on its next time.
#[cfg(feature = "tls")]
#[test]
fn tls_keys_that_are_never_released_do_not_stop_the_reactor() {
    use std::io::Write;
    let certs = tls::certs();
    let config = test_config().with_tls_key_release(Duration::MAX);
    let server = tls::start_tls(config, &certs, Echo);
    let mut client = tls::tls_ws(server.local_addr(), &certs.client_config());
    client.write_all(&tls::frame(0x1, true, b"served")).unwrap();
    assert_eq!(tls::read_frame(&mut client).unwrap().1, b"served");
    let_ticks_pass(&server);
    client
        .write_all(&tls::frame(0x1, true, b"after the sweeps"))
        .unwrap();
    assert_eq!(tls::read_frame(&mut client).unwrap().1, b"after the sweeps");
}
