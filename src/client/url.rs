//! `ws://` and `wss://` URLs (RFC 6455 §3), parsed just far enough to connect.
//!
//! No URL crate: the grammar the client needs is small (scheme, host, port, path and
//! query), and everything else is refused with a reason rather than guessed at.

use std::fmt;

/// A parsed WebSocket URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WsUrl {
    /// `wss://`: TLS.
    pub secure: bool,
    /// The host as written, without the brackets of an IPv6 literal.
    pub host: String,
    /// The port, given or the scheme's default (80, 443).
    pub port: u16,
    /// The request target: the path (at least `/`) and the query.
    pub resource: String,
    /// Whether the port was written in the URL and differs from the default: then the
    /// `Host` header carries it (RFC 6455 §4.1, item 4).
    explicit_port: bool,
}

/// Why a URL cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UrlError(pub &'static str);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl WsUrl {
    /// Parses `ws://host[:port][/path][?query]` or the same with `wss://`.
    pub fn parse(url: &str) -> Result<WsUrl, UrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(UrlError(
            "no scheme: the URL must start with ws:// or wss://",
        ))?;
        let secure = if scheme.eq_ignore_ascii_case("ws") {
            false
        } else if scheme.eq_ignore_ascii_case("wss") {
            true
        } else {
            return Err(UrlError("the scheme must be ws or wss"));
        };
        if rest.contains('#') {
            // RFC 6455 §3: fragment identifiers are meaningless here and must not be used.
            return Err(UrlError("a WebSocket URL has no fragment (#)"));
        }
        if rest
            .bytes()
            .any(|b| b <= b' ' || b == 0x7f || !b.is_ascii())
        {
            return Err(UrlError(
                "the URL contains whitespace, control or non-ASCII characters (percent-encode them)",
            ));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(UrlError(
                "user information in the URL is not supported (send an Authorization header)",
            ));
        }
        let (host, port) = split_host_port(authority)?;
        let default_port = if secure { 443 } else { 80 };
        let resource = if target.starts_with('?') || target.is_empty() {
            format!("/{target}")
        } else {
            target.to_owned()
        };
        Ok(WsUrl {
            secure,
            host: host.to_owned(),
            port: port.unwrap_or(default_port),
            resource,
            explicit_port: port.is_some_and(|p| p != default_port),
        })
    }

    /// The value of the `Host` header: the host (bracketed if IPv6), and the port when
    /// it is not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.explicit_port {
            format!("{host}:{}", self.port)
        } else {
            host
        }
    }
}

/// Splits `host[:port]` or `[v6]:port`; the port is `None` when absent.
fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), UrlError> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or(UrlError("an IPv6 address without its closing ]"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(UrlError("not an IPv6 address between [ and ]"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(UrlError("unexpected characters after ]")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError("no host in the URL"));
    }
    if !authority.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b))
    {
        return Err(UrlError("the host contains characters a host name cannot"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(UrlError("the port is not a number from 1 to 65535")),
            Ok(port) => Some(port),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> WsUrl {
        WsUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn host_port_and_resource() {
        let u = parse("ws://example.com/chat?room=1");
        assert!(!u.secure);
        assert_eq!((u.host.as_str(), u.port), ("example.com", 80));
        assert_eq!(u.resource, "/chat?room=1");
        assert_eq!(u.host_header(), "example.com");

        let u = parse("WSS://127.0.0.1:9001");
        assert!(u.secure);
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 9001));
        assert_eq!(u.resource, "/");
        assert_eq!(u.host_header(), "127.0.0.1:9001");

        let u = parse("ws://h?q");
        assert_eq!(u.resource, "/?q");
    }

    #[test]
    fn the_default_port_is_left_out_of_host() {
        assert_eq!(parse("ws://h:80/").host_header(), "h");
        assert_eq!(parse("wss://h:443/").host_header(), "h");
        assert_eq!(parse("wss://h:80/").host_header(), "h:80");
        assert_eq!(parse("wss://h:80/").port, 80);
    }

    #[test]
    fn ipv6_literals_keep_their_brackets_in_host() {
        let u = parse("ws://[::1]:9001/x");
        assert_eq!((u.host.as_str(), u.port), ("::1", 9001));
        assert_eq!(u.host_header(), "[::1]:9001");
        assert_eq!(parse("ws://[::1]").host_header(), "[::1]");
    }

    #[test]
    fn what_cannot_be_used_is_refused_with_a_reason() {
        for bad in [
            "example.com",
            "http://example.com/",
            "ws://",
            "ws:///path",
            "ws://h:0/",
            "ws://h:65536/",
            "ws://h:x/",
            "ws://h/#frag",
            "ws://user:pw@h/",
            "ws://h/a b",
            "ws://h/\u{e9}",
            "ws://[::1/",
            "ws://[nope]/",
            "ws://[::1]x/",
            "ws://h\\x/",
        ] {
            assert!(WsUrl::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
