//! Writes the seed corpora into `fuzz/corpus/<target>/`, replacing what is there.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --bin seeds
//! ```

use std::path::Path;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let seeds = wsreactor_fuzz::seeds::all();
    for target in [
        "handshake_request",
        "handshake_response",
        "frame_header",
        "conn_server",
        "conn_client",
        "tls_server",
    ] {
        let dir = corpus.join(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
    }
    for seed in &seeds {
        std::fs::write(corpus.join(seed.target).join(&seed.name), &seed.bytes)?;
    }
    println!("{} seeds written to {}", seeds.len(), corpus.display());
    Ok(())
}
