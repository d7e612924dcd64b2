//! A chat room: every message goes to every other connection. `/` serves a page
//! with a small JavaScript client, so a person can try it in a browser.
//!
//! ```text
//! cargo run --release --example chat -- --addr 127.0.0.1:9002
//! ```
//! then open <http://127.0.0.1:9002/> in two tabs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wsreactor::{
    CloseCode, Config, ConnId, Handler, HttpRequest, HttpResponse, Message, Request, Sender,
    Server, Socket,
};

const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>wsreactor chat</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
  #log { border: 1px solid #ccc; height: 20em; overflow-y: auto; padding: .5em; }
  #log p { margin: .2em 0; }
  form { display: flex; gap: .5em; margin-top: .5em; }
  #text { flex: 1; }
</style>
<h1>wsreactor chat</h1>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" placeholder="Say something"><button>Send</button></form>
<script>
  const log = document.getElementById("log");
  const show = (line) => {
    const p = document.createElement("p");
    p.textContent = line;
    log.append(p);
    log.scrollTop = log.scrollHeight;
  };
  const ws = new WebSocket(`ws://${location.host}/chat`);
  ws.onopen = () => show("connected");
  ws.onmessage = (e) => show(e.data);
  ws.onclose = (e) => show(`disconnected (${e.code})`);
  document.getElementById("form").onsubmit = (e) => {
    e.preventDefault();
    const input = document.getElementById("text");
    if (input.value) { ws.send(input.value); show(`me: ${input.value}`); input.value = ""; }
  };
</script>
"#;

#[derive(Clone)]
struct Chat {
    room: Sender,
}

impl Handler for Chat {
    type Session = ();

    fn on_upgrade<'r>(&mut self, request: &Request<'_, 'r>) -> wsreactor::Upgrade<'r, ()> {
        if request.path() == "/chat" {
            wsreactor::Upgrade::accept(())
        } else {
            wsreactor::Upgrade::Reject(404)
        }
    }

    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        self.room.broadcast_except(message, ws.id());
    }

    fn on_close(&mut self, id: ConnId, _: (), code: CloseCode, _: &str) {
        println!("{id:?} left ({code})");
    }

    fn on_http(&mut self, request: &HttpRequest<'_, '_>) -> Option<HttpResponse> {
        match request.path() {
            "/" => Some(HttpResponse::html(PAGE)),
            _ => Some(HttpResponse::new(404, "text/plain", "not found\n")),
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("chat: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = String::from("127.0.0.1:9002");
    let mut config = Config::default().with_max_message_size(64 * 1024);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--threads" => config = config.with_reactors(value()?.parse()?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;

    let server = Server::bind(addr.as_str(), config)?;
    println!("listening on {} (open http://{0}/)", server.local_addr());
    let room = server.sender();
    let handle = server.spawn(Chat { room })?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    handle.shutdown(Duration::from_secs(5))?;
    Ok(())
}
