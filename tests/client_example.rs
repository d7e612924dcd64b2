//! examples/client.rs: lines from standard input go out as text messages, what
//! arrives is printed, and the end of input closes with 1000.

#[path = "util/server.rs"]
mod server;

use server::{Echo, PATIENCE, start, test_config, wait_for_stats};
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn the_client_example_sends_lines_prints_echoes_and_closes() {
    let server = start(test_config(), Echo);
    // The test binary is in target/PROFILE/deps; the examples in target/PROFILE/examples.
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/client");
    let mut child = Command::new(&example)
        .arg(format!("ws://{}/", server.local_addr()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} (built by cargo test): {e}", example.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all("hello\nwörld\n\nlast line\n".as_bytes())
        .unwrap();
    // stdin is closed here: the client closes after the echoes.
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "hello\nwörld\n\nlast line\n"
    );
    assert_eq!(stderr.trim(), "[closed 1000 \"\"]");
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!((stats.messages_in, stats.closed_with(1000)), (4, 1));
}
