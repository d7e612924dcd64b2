//! The client's settings, and the connect: TCP, then TLS (`wss://`), then the HTTP
//! upgrade, each under its own timeout.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Client;
use super::error::{Error, Phase, Result, io_error};
use super::read::{Input, Reader};
use super::rejection::{self, Body};
use super::url::WsUrl;
use super::write::Shared;
use crate::proto::deflate::ClientDeflate;
use crate::proto::handshake::{
    ClientHandshakeError, EMPTY_HEADER, encode_key, parse_response_with_deflate, write_request,
};
use crate::proto::{Connection, Limits};

/// Headers the client writes itself (the extensions header with
/// [`ClientBuilder::deflate`]), which [`ClientBuilder::header`] may not set.
const OWN_HEADERS: [&str; 9] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

/// Settings for a connection; [`connect`](Self::connect) opens it.
///
/// Every default is chosen for a tool or a service link on a network that works; each
/// setter says why its default is what it is.
///
/// ```no_run
/// use std::time::Duration;
/// use wsreactor::client::ClientBuilder;
///
/// let client = ClientBuilder::new("ws://127.0.0.1:9001/chat")
///     .protocol("chat.v1")
///     .origin("http://127.0.0.1")
///     .header("Authorization", "Bearer 123")
///     .read_timeout(Some(Duration::from_secs(30)))
///     .max_message_size(1 << 20)
///     .connect()?;
/// assert_eq!(client.protocol(), Some("chat.v1"));
/// # Ok::<(), wsreactor::client::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `connect`"]
pub struct ClientBuilder {
    url: String,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    connect_timeout: Option<Duration>,
    handshake_timeout: Duration,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    close_timeout: Duration,
    max_message_size: usize,
    deflate: bool,
    #[cfg(feature = "tls")]
    pub(super) tls: super::tls::TlsOptions,
}

impl ClientBuilder {
    /// Settings for `url` (`ws://` or, with the `tls` feature, `wss://`), all defaults.
    pub fn new(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            headers: Vec::new(),
            protocols: Vec::new(),
            connect_timeout: Some(Duration::from_secs(10)),
            handshake_timeout: Duration::from_secs(10),
            read_timeout: None,
            write_timeout: Some(Duration::from_secs(30)),
            close_timeout: Duration::from_secs(5),
            max_message_size: 16 << 20,
            deflate: false,
            #[cfg(feature = "tls")]
            tls: super::tls::TlsOptions::default(),
        }
    }

    /// Adds a header to the upgrade request (a cookie, an `Authorization`), after the
    /// ones the client writes. The name must be an HTTP token and the value free of
    /// control characters; the headers of the handshake itself (`Host`, `Upgrade`,
    /// `Connection`, `Sec-WebSocket-*`) are refused: [`connect`](Self::connect) fails
    /// with [`Error::Config`].
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends `Origin: origin`, as a browser would; servers that check origins need it.
    pub fn origin(self, origin: impl Into<String>) -> Self {
        self.header("Origin", origin)
    }

    /// Offers a subprotocol, in order of preference (call once per protocol). The
    /// server's choice is [`Client::protocol`]; a choice that was not offered fails
    /// the handshake. A server may choose none.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// How long the TCP connect may take, for each address the host resolves to.
    /// Default 10 s: a reachable server answers in milliseconds, and the system's own
    /// limit is minutes. `None` leaves it to the system.
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the TLS handshake and the HTTP upgrade may take together. Default
    /// 10 s, the server's own default: a server that accepted TCP and says nothing
    /// would otherwise hold `connect` for ever.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long [`Client::recv`] waits for the server before it returns
    /// [`Error::Timeout`] with [`Phase::Read`] (the client stays usable). Default
    /// `None`: waiting for the next message is what a client mostly does.
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// How long one send may wait for the kernel to take its bytes; after that the
    /// send fails with [`Phase::Write`] and nothing more can be sent (a frame may be
    /// half written). Default 30 s, the server's write timeout: a server that stops
    /// reading would otherwise hold a sender for ever. `None`: no limit.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long to wait for the server's close frame after ours, and then for the
    /// server to close TCP. Default 5 s, the server's close timeout.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// The largest message (and frame) accepted; a larger one fails the connection
    /// with 1009. Default 16 MiB, as the server's: it bounds the memory a server can
    /// make the client hold. Values of 4 GiB and more act as 4 GiB − 1.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Offers permessage-deflate (RFC 7692) as browsers do
    /// (`permessage-deflate; client_max_window_bits`). If the server accepts, messages
    /// of at least 64 bytes (160 when the server asked us not to keep our context)
    /// are sent compressed at level 1, and compressed messages from the server are
    /// inflated, the size limit and UTF-8 checked while inflating. A server that
    /// declines leaves the connection uncompressed. Default `false`.
    pub fn deflate(mut self, enabled: bool) -> Self {
        self.deflate = enabled;
        self
    }

    /// Connects, upgrades, and returns the open connection.
    ///
    /// # Errors
    ///
    /// [`Error::Url`] and [`Error::Config`] for settings that cannot be used (checked
    /// before any connection is made); [`Error::Unsupported`] for `wss://` without the
    /// `tls` feature; [`Error::Resolve`], [`Error::Connect`] (refused, unreachable) and
    /// [`Error::Timeout`]; with TLS, `Error::Tls`; [`Error::Rejected`] for a status
    /// other than 101, with the server's headers and body (redirects are not
    /// followed); [`Error::Handshake`] for a 101 that is not a valid one;
    /// [`Error::Io`] if the server closes or resets the connection during the upgrade.
    pub fn connect(&self) -> Result<Client> {
        let url = WsUrl::parse(&self.url).map_err(|e| Error::Url(format!("{}: {e}", self.url)))?;
        self.check_request()?;
        #[cfg(not(feature = "tls"))]
        if url.secure {
            return Err(Error::Unsupported(
                "wss:// needs wsreactor's `tls` cargo feature",
            ));
        }
        // TLS settings are checked before any connection is made, too.
        #[cfg(feature = "tls")]
        let mut tls = if url.secure {
            Some(Box::new(self.tls.connection(&url.host)?))
        } else {
            None
        };

        let mut stream = self.tcp_connect(&url)?;
        stream.set_nodelay(true).map_err(Error::Io)?;
        let mut exchange = Exchange {
            stream: &mut stream,
            #[cfg(feature = "tls")]
            tls: tls.as_deref_mut(),
            deadline: crate::config::deadline(Instant::now(), self.handshake_timeout),
        };

        let key = encode_key(random_nonce());
        let protocols: Vec<&str> = self.protocols.iter().map(String::as_str).collect();
        let offer = ClientDeflate::default();
        let offer_text = offer.offer();
        let mut headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        if self.deflate {
            headers.push(("Sec-WebSocket-Extensions", &offer_text));
        }
        let deflate: Option<crate::proto::deflate::PerMessageDeflate>;
        let mut request = Vec::with_capacity(256);
        write_request(
            &mut request,
            &url.host_header(),
            &url.resource,
            &key,
            &protocols,
            &headers,
        );
        exchange.write_all(&request)?;

        // Frames may arrive in the same read as the end of the 101's head.
        let mut input = Input::new();
        let (protocol, response_headers, head_len) = loop {
            let n = exchange.read(input.spare())?;
            if n == 0 {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the upgrade",
                )));
            }
            input.filled(n);
            let mut slots = [EMPTY_HEADER; 64];
            let parsed = parse_response_with_deflate(
                input.data(),
                &mut slots,
                &key,
                &protocols,
                self.deflate.then_some(&offer),
            );
            if let Err(ClientHandshakeError::Status(status)) = parsed {
                return Err(exchange.rejection(&mut input, status));
            }
            if let Some((response, len)) = parsed? {
                let headers = response
                    .headers()
                    .map(|(name, value)| (name.to_owned(), value.to_vec()))
                    .collect::<Vec<_>>();
                deflate = response.deflate();
                break (response.protocol().map(str::to_owned), headers, len);
            }
        };
        input.consume(head_len);

        stream
            .set_read_timeout(self.read_timeout)
            .and_then(|()| stream.set_write_timeout(self.write_timeout))
            .map_err(Error::Io)?;
        let mut conn = Connection::client(random_u64());
        conn.set_deflate(deflate);
        let reader_stream = stream.try_clone().map_err(Error::Io)?;
        #[cfg(feature = "tls")]
        let secure = tls.is_some();
        let shared = Shared::new(
            conn,
            deflate,
            stream,
            self.close_timeout,
            #[cfg(feature = "tls")]
            tls,
        )
        .map_err(Error::Io)?;
        let limits = Limits::new(self.max_message_size, self.max_message_size);
        let reader = Reader::new(
            reader_stream,
            input,
            deflate,
            limits,
            self.read_timeout,
            #[cfg(feature = "tls")]
            secure,
        );
        Ok(Client {
            shared: Arc::new(shared),
            reader,
            protocol,
            headers: response_headers,
        })
    }

    /// Refuses headers and subprotocols that would corrupt the request (proto's
    /// writer panics on them) or that the client writes itself.
    fn check_request(&self) -> Result<()> {
        for (name, value) in &self.headers {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(Error::Config(format!(
                    "header name {name:?} is not an HTTP token"
                )));
            }
            if OWN_HEADERS.iter().any(|own| name.eq_ignore_ascii_case(own)) {
                return Err(Error::Config(format!(
                    "header {name} is written by the client itself"
                )));
            }
            if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
                return Err(Error::Config(format!(
                    "the value of header {name} contains control characters"
                )));
            }
        }
        for protocol in &self.protocols {
            if protocol.is_empty() || !protocol.bytes().all(is_token_byte) {
                return Err(Error::Config(format!(
                    "subprotocol {protocol:?} is not an HTTP token"
                )));
            }
        }
        Ok(())
    }

    /// Connects to each address of the host in turn; reports the last failure.
    fn tcp_connect(&self, url: &WsUrl) -> Result<TcpStream> {
        let resolve_error = |source| Error::Resolve {
            host: url.host.clone(),
            source,
        };
        let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(resolve_error)?
            .collect();
        let mut last = None;
        for addr in addrs {
            let connected = match self.connect_timeout {
                Some(timeout) => TcpStream::connect_timeout(&addr, timeout),
                None => TcpStream::connect(addr),
            };
            match connected {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some((addr, e)),
            }
        }
        match last {
            Some((_, e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                Err(Error::Timeout(Phase::Connect))
            }
            Some((addr, source)) => Err(Error::Connect { addr, source }),
            None => Err(resolve_error(io::Error::new(
                io::ErrorKind::NotFound,
                "the host has no address",
            ))),
        }
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The handshake's I/O: through TLS when there is a session, each call bounded by
/// what is left of the handshake timeout.
struct Exchange<'a> {
    stream: &'a mut TcpStream,
    #[cfg(feature = "tls")]
    tls: Option<&'a mut rustls::ClientConnection>,
    deadline: Instant,
}

impl Exchange<'_> {
    /// The refusal whose head starts `input`: its headers, and its body read within
    /// the handshake's deadline (a timeout or an end keeps what came).
    fn rejection(&mut self, input: &mut Input, status: u16) -> Error {
        let Some(head) = rejection::parse_head(input.data()) else {
            return Error::Handshake(ClientHandshakeError::Status(status));
        };
        let mut rejection = head.rejection;
        input.consume(head.len);
        // Ended: the connection's end, or a read that failed (the timeout), which
        // also cuts short a body that only the end delimits.
        let (mut ended, mut cut) = (false, false);
        loop {
            match rejection::body(head.framing, input.data(), ended) {
                Body::Done(body, truncated) => {
                    rejection.body = body;
                    rejection.truncated = truncated || cut;
                    return Error::Rejected(Box::new(rejection));
                }
                Body::More => match self.read(input.spare()) {
                    Ok(0) => ended = true,
                    Err(_) => (ended, cut) = (true, true),
                    Ok(n) => input.filled(n),
                },
            }
        }
    }

    /// Sets both socket timeouts to the time left.
    fn arm(&mut self) -> Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout(Phase::Handshake));
        }
        self.stream
            .set_read_timeout(Some(left))
            .and_then(|()| self.stream.set_write_timeout(Some(left)))
            .map_err(Error::Io)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.arm()?;
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            let mut stream = rustls::Stream::new(tls, &mut *self.stream);
            return stream
                .write_all(bytes)
                .and_then(|()| stream.flush())
                .map_err(|e| io_error(e, Phase::Handshake));
        }
        self.stream
            .write_all(bytes)
            .map_err(|e| io_error(e, Phase::Handshake))
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            self.arm()?;
            #[cfg(feature = "tls")]
            let read = match self.tls.as_deref_mut() {
                Some(tls) => rustls::Stream::new(tls, &mut *self.stream).read(buf),
                None => self.stream.read(buf),
            };
            #[cfg(not(feature = "tls"))]
            let read = self.stream.read(buf);
            match read {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // TCP closed without TLS's close_notify: the same as a plain end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                result => return result.map_err(|e| io_error(e, Phase::Handshake)),
            }
        }
    }
}

/// 64 unpredictable bits, from the randomly keyed hasher that std seeds from the
/// operating system: for the handshake key and the seed of the masking keys.
fn random_u64() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

fn random_nonce() -> [u8; 16] {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&random_u64().to_ne_bytes());
    nonce[8..].copy_from_slice(&random_u64().to_ne_bytes());
    nonce
}
