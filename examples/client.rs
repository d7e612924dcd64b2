//! A command-line WebSocket client on `wsreactor::client`: connects, sends each line of
//! standard input as a text message, and prints every message that arrives.
//!
//! ```text
//! cargo run --example client -- ws://127.0.0.1:9001/
//! cargo run --features tls --example client -- wss://localhost:9443/ --ca ca.pem
//! ```
//!
//! Text messages are printed as they are, one per line; binary ones as
//! `[binary, N bytes]`. At the end of input it closes with 1000 and waits for the
//! server's close; the close code goes to standard error. It exits 0 after a clean
//! close handshake, 1 otherwise.
//!
//! Flags: `--protocol P` and `--header 'Name: value'` (both repeatable), `--origin O`,
//! and with the `tls` feature `--ca FILE` (trust this CA) and `--insecure` (trust any
//! certificate). Reading and sending happen on two threads, through a `Sender`.

use std::error::Error;
use std::io::{self, BufRead, Write};
use std::process::exit;
use std::thread;

use wsreactor::client::{ClientBuilder, Incoming};
use wsreactor::{CloseCode, Message};

const USAGE: &str = "usage: client URL [--protocol P]... [--header 'Name: value']... \
                     [--origin O] [--ca FILE] [--insecure]";

fn main() {
    let builder = match parse_args() {
        Ok(builder) => builder,
        Err(e) => {
            eprintln!("client: {e}\n{USAGE}");
            exit(2);
        }
    };
    let mut client = match builder.connect() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("client: {e}");
            exit(1);
        }
    };
    if let Some(protocol) = client.protocol() {
        eprintln!("[subprotocol {protocol}]");
    }
    let sender = client.sender();

    // This thread reads and prints until the connection ends, then ends the process.
    let reader = thread::spawn(move || {
        let stdout = io::stdout();
        loop {
            let incoming = client.recv();
            let mut out = stdout.lock();
            let printed = match incoming {
                Ok(Incoming::Message(Message::Text(text))) => writeln!(out, "{text}"),
                Ok(Incoming::Message(Message::Binary(bytes))) => {
                    writeln!(out, "[binary, {} bytes]", bytes.len())
                }
                Ok(Incoming::Ping(_) | Incoming::Pong(_)) => Ok(()),
                Ok(Incoming::Close(frame)) => {
                    let _ = out.flush();
                    match frame {
                        Some(f) => eprintln!("[closed {} {:?}]", f.code, f.reason),
                        None => eprintln!("[closed without a code]"),
                    }
                    exit(0);
                }
                Err(e) => {
                    let _ = out.flush();
                    eprintln!("client: {e}");
                    exit(1);
                }
            };
            if printed.and_then(|()| out.flush()).is_err() {
                exit(1); // standard output was closed
            }
        }
    });

    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if let Err(e) = sender.send(Message::Text(&line)) {
            eprintln!("client: {e}");
            break;
        }
    }
    // End of input: the reader thread ends the process once the server has answered.
    if let Err(e) = sender.close(CloseCode::NORMAL, "") {
        eprintln!("client: {e}");
    }
    let _ = reader.join();
    exit(1);
}

fn parse_args() -> Result<ClientBuilder, Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let url = match args.next() {
        Some(flag) if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            exit(0);
        }
        Some(url) => url,
        None => return Err("no URL".into()),
    };
    let mut builder = ClientBuilder::new(url);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        builder = match flag.as_str() {
            "--protocol" => builder.protocol(value()?),
            "--origin" => builder.origin(value()?),
            "--header" => {
                let header = value()?;
                let (name, value) = header
                    .split_once(':')
                    .ok_or("--header takes 'Name: value'")?;
                builder.header(name.trim(), value.trim())
            }
            #[cfg(feature = "tls")]
            "--ca" => builder.ca_file(value()?),
            #[cfg(feature = "tls")]
            "--insecure" => builder.danger_accept_invalid_certs(true),
            #[cfg(not(feature = "tls"))]
            "--ca" | "--insecure" => return Err(format!("{flag} needs --features tls").into()),
            other => return Err(format!("unknown flag {other}").into()),
        };
    }
    Ok(builder)
}
