//! Chat rooms on pub/sub topics: `/chat?room=NAME&name=NAME` joins a room (names and
//! rooms are 1 to 32 letters, digits, `-` or `_`; defaults `lobby` and `guest`); every
//! line goes to the others in the room, with join and leave lines. `/` serves a page
//! with a small JavaScript client that picks a room and a name, so a person can try it
//! in a browser.
//!
//! ```text
//! cargo run --release --example chat -- --addr 127.0.0.1:9002
//! ```
//! then open <http://127.0.0.1:9002/> in two tabs.
//!
//! Built with `--features tls`, `--tls-cert PEM --tls-key PEM` serves the page and
//! the chat over https:// and wss:// on `--addr`, or, with `--tls-addr HOST:PORT`,
//! there beside http:// and ws:// on `--addr`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[path = "shared/tls_flags.rs"]
mod tls_flags;
use tls_flags::Tls;

use wsreactor::{
    CloseCode, Config, ConnId, Handler, HttpRequest, HttpResponse, Message, Request, Sender,
    Server, Socket, Upgrade,
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
<form id="join">
  <input id="name" placeholder="Your name" value="guest" pattern="[A-Za-z0-9_-]{1,32}" required>
  <input id="room" placeholder="Room" value="lobby" pattern="[A-Za-z0-9_-]{1,32}" required>
  <button id="enter">Join</button>
</form>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" placeholder="Say something" disabled><button id="send" disabled>Send</button></form>
<script>
  const log = document.getElementById("log");
  const show = (line) => {
    const p = document.createElement("p");
    p.textContent = line;
    log.append(p);
    log.scrollTop = log.scrollHeight;
  };
  let ws = null;
  document.getElementById("join").onsubmit = (e) => {
    e.preventDefault();
    if (ws) ws.close();
    const name = document.getElementById("name").value;
    const room = document.getElementById("room").value;
    const query = new URLSearchParams({ room, name });
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${scheme}://${location.host}/chat?${query}`);
    ws.onopen = () => {
      show(`joined ${room} as ${name}`);
      document.getElementById("text").disabled = false;
      document.getElementById("send").disabled = false;
    };
    ws.onmessage = (e) => show(e.data);
    ws.onclose = (e) => show(`disconnected (${e.code})`);
  };
  document.getElementById("form").onsubmit = (e) => {
    e.preventDefault();
    const input = document.getElementById("text");
    if (input.value && ws) { ws.send(input.value); show(`me: ${input.value}`); input.value = ""; }
  };
</script>
"#;

/// Rooms are topics: a member subscribes to its room's topic, and every line is
/// published to it. Leaving is announced from `on_close` through a `Sender`.
#[derive(Clone)]
struct Chat {
    rooms: Sender,
}

/// Who a connection is, and where.
#[derive(Default)]
struct Member {
    room: String,
    name: String,
}

/// A room or a name: 1 to 32 letters, digits, `-` or `_`.
fn word(value: &str) -> Option<String> {
    let ok = (1..=32).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| value.to_owned())
}

fn topic(room: &str) -> String {
    format!("room/{room}")
}

impl Handler for Chat {
    type Session = Member;

    fn on_upgrade(&mut self, request: &Request) -> Upgrade<Member> {
        if request.path() != "/chat" {
            return Upgrade::reject(404);
        }
        let room = request
            .query_param("room")
            .map_or(Some("lobby".to_owned()), |r| word(&r));
        let name = request
            .query_param("name")
            .map_or(Some("guest".to_owned()), |n| word(&n));
        match (room, name) {
            (Some(room), Some(name)) => Upgrade::accept(Member { room, name }),
            _ => Upgrade::reject(400),
        }
    }

    fn on_open(&mut self, ws: &mut Socket<'_, Member>) {
        let topic = topic(&ws.session().room);
        let joined = format!("{} joined", ws.session().name);
        ws.publish(&topic, Message::Text(&joined));
        if ws.subscribe(&topic).is_err() {
            ws.close(CloseCode::INTERNAL_ERROR, "cannot join the room");
        }
    }

    fn on_message(&mut self, ws: &mut Socket<'_, Member>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        let line = format!("{}: {text}", ws.session().name);
        ws.publish(topic(&ws.session().room), Message::Text(&line));
    }

    fn on_close(&mut self, id: ConnId, member: Member, code: CloseCode, _: &str) {
        // Its subscription has ended: the others hear it, it does not.
        let left = format!("{} left", member.name);
        self.rooms
            .publish(topic(&member.room), Message::Text(&left));
        println!("{id:?} {} left {} ({code})", member.name, member.room);
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
    let mut tls = Tls::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--threads" => config = config.with_reactors(value()?.parse()?),
            "--tls-cert" => tls.cert = Some(value()?),
            "--tls-key" => tls.key = Some(value()?),
            "--tls-addr" => tls.addr = Some(value()?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;

    let server = tls.apply(Server::builder().config(config))?;
    let server = server.bind(addr.as_str())?;
    match server.tls_addr() {
        Some(https) if https == server.local_addr() => {
            println!("listening on {https} (open https://{https}/)")
        }
        Some(https) => println!(
            "listening on {} (open http://{0}/ or https://{https}/)",
            server.local_addr()
        ),
        None => println!("listening on {} (open http://{0}/)", server.local_addr()),
    }
    let rooms = server.sender();
    let handle = server.spawn(Chat { rooms })?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    handle.shutdown(Duration::from_secs(5))?;
    Ok(())
}
