//! A deferred upgrade answered from a tokio task: `on_upgrade` answers
//! `Upgrade::later()`, an async task (a stand-in for an auth service) answers 50 ms
//! later through the engine's `Sender`, accepting one token and refusing another.

use std::sync::mpsc;
use std::time::Duration;

use tungstenite::Message as T;
use wsreactor::{Config, ConnId, Handler, HttpResponse, Message, Request, Server, Socket, Upgrade};

/// A guard against a hang, never a measure.
const PATIENCE: Duration = Duration::from_secs(60);

/// Defers every upgrade to a tokio task, with its id and token.
#[derive(Clone)]
struct Deferred {
    asks: tokio::sync::mpsc::UnboundedSender<(ConnId, String)>,
}

impl Handler for Deferred {
    /// The user the token named.
    type Session = String;

    fn on_upgrade(&mut self, request: &Request) -> Upgrade<String> {
        let token = request
            .query_param("token")
            .unwrap_or_default()
            .into_owned();
        match request.id().map(|id| self.asks.send((id, token))) {
            Some(Ok(())) => Upgrade::later(),
            _ => Upgrade::reject(503),
        }
    }

    fn on_message(&mut self, ws: &mut Socket<'_, String>, message: Message<'_>) {
        let reply = format!(
            "{}: {}",
            ws.session(),
            String::from_utf8_lossy(message.as_bytes())
        );
        let _ = ws.send_text(&reply);
    }
}

#[test]
fn a_tokio_task_answers_an_upgrade_50_ms_later() {
    let (asks, mut asked) = tokio::sync::mpsc::unbounded_channel();
    let config = Config::default()
        .with_reactors(1)
        .with_handshake_timeout(Some(PATIENCE));
    let server = Server::bind("127.0.0.1:0", config)
        .and_then(|s| s.spawn(Deferred { asks }))
        .unwrap();
    let sender = server.sender();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (done, answered) = mpsc::channel();
    runtime.spawn(async move {
        while let Some((id, token)) = asked.recv().await {
            let sender = sender.clone();
            let done = done.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let answer = if token == "ada-token" {
                    Upgrade::accept("ada".to_owned())
                } else {
                    Upgrade::reject_with(HttpResponse::new(401, "text/plain", "unknown token\n"))
                };
                let _ = done.send(sender.answer_upgrade(id, answer));
            });
        }
    });
    let addr = server.local_addr();
    let (mut ws, response) =
        tungstenite::connect(format!("ws://{addr}/?token=ada-token")).expect("accepted later");
    assert_eq!(response.status(), 101);
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    ws.send(T::text("hi")).unwrap();
    assert_eq!(ws.read().unwrap(), T::text("ada: hi"));
    match tungstenite::connect(format!("ws://{addr}/?token=forged")) {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
            assert_eq!(response.body().as_deref(), Some(&b"unknown token\n"[..]));
        }
        other => panic!("{:?}", other.map(|(_, r)| r.status())),
    }
    for _ in 0..2 {
        assert_eq!(
            answered.recv_timeout(PATIENCE).unwrap(),
            wsreactor::QueueStatus::Queued
        );
    }
    assert_eq!(server.stats().deferred_upgrades, 2);
}
