//! Every committed seed (and every input kept under `regressions/`) runs through its
//! target's checks on the stable toolchain, without the fuzzer: `cargo test` in `fuzz/`.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a readable directory entry").path();
            let bytes = std::fs::read(&path).expect("a readable seed");
            eprintln!("{}", path.display());
            check(&bytes);
            count += 1;
        }
    }
    assert!(count > 0, "no seeds for {target}");
}

#[test]
fn handshake_request_seeds() {
    replay("handshake_request", wsreactor_fuzz::handshake_request);
}

#[test]
fn handshake_response_seeds() {
    replay("handshake_response", wsreactor_fuzz::handshake_response);
}

#[test]
fn frame_header_seeds() {
    replay("frame_header", wsreactor_fuzz::frame_header);
}

#[test]
fn conn_server_seeds() {
    replay("conn_server", wsreactor_fuzz::conn_server);
}

#[test]
fn conn_client_seeds() {
    replay("conn_client", wsreactor_fuzz::conn_client);
}

#[test]
fn tls_server_seeds() {
    replay("tls_server", wsreactor_fuzz::tls_server);
}

/// The seeds on disk are the ones `seeds` generates: regenerate them after changing it.
#[test]
fn committed_seeds_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for seed in wsreactor_fuzz::seeds::all() {
        let path = root.join(seed.target).join(&seed.name);
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == seed.bytes,
            "{} is stale: run `cargo run --bin seeds`",
            path.display()
        );
    }
}
