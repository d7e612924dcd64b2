//! Answers in plain HTTP: a page from `on_http`, a refused upgrade. The connection
//! drains after either: our side is shut once the answer is written.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::Reactor;
use super::output::Owner;
use crate::handler::Handler;
use crate::proto::handshake::{self, HandshakeError, HttpRequest};
use crate::response::HttpResponse;

impl<H: Handler> Reactor<H> {
    /// Serves a plain HTTP request with the handler's response (its head only for
    /// `HEAD`), or 426 when the handler has none.
    pub(super) fn answer_http(&mut self, key: usize, owner: Owner, http: &HttpRequest<'_, '_>) {
        let handler = &mut self.handler;
        let response = catch_unwind(AssertUnwindSafe(|| handler.on_http(http)));
        if response.is_err() {
            self.output.stats.panics += 1;
            crate::observe::event!(error, conn = ?(self.index, key), "panic in on_http: answered 500");
        }
        match response {
            Ok(Some(response)) if response.is_sendable(200..=599) => {
                self.write_response(key, owner, &response, http.method() == "HEAD");
                // Served, not refused: only drain.
                self.drain(key);
            }
            // A response HTTP cannot carry is the handler's bug: answer 500.
            Ok(Some(_)) | Err(_) => {
                handshake::write_status(self.output.cork(owner), 500);
                self.reject(key);
            }
            Ok(None) => {
                handshake::write_error(self.output.cork(owner), &HandshakeError::NotUpgrade);
                self.reject(key);
            }
        }
    }

    /// Refuses an upgrade with the handler's response; one that is not a refusal
    /// (a status outside 300–599) or that HTTP cannot carry is answered as 500.
    pub(super) fn refuse_upgrade(&mut self, key: usize, owner: Owner, response: &HttpResponse) {
        if response.is_sendable(300..=599) {
            self.write_response(key, owner, response, false);
        } else {
            handshake::write_status(self.output.cork(owner), 500);
        }
        self.reject(key);
    }

    /// Corks the head and sends the body after it without a copy. 204 and 304 carry
    /// neither a body nor its length; `head_only` keeps the length, not the body.
    fn write_response(
        &mut self,
        key: usize,
        owner: Owner,
        response: &HttpResponse,
        head_only: bool,
    ) {
        let bodiless = matches!(response.status, 204 | 304);
        let headers = response.headers.iter().map(|(n, v)| (&**n, &**v));
        handshake::write_http_head_with_headers(
            self.output.cork(owner),
            response.status,
            response.content_type.as_deref(),
            headers,
            (!bodiless).then_some(response.body.len()),
        );
        if !head_only
            && !bodiless
            && let Some(conn) = self.conns.get_mut(key)
        {
            self.output.send_body(owner, conn, &response.body);
        }
    }
}
