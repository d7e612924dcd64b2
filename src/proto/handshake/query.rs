//! The query string's parameters, percent-decoded (`application/x-www-form-urlencoded`,
//! as browsers encode a form and `URLSearchParams`).

use std::borrow::Cow;

use super::*;

impl<'h, 'b> HttpRequest<'h, 'b> {
    /// The value of the first query parameter called `name`, percent-decoded (`+` is
    /// a space, as in a form), or `None` if there is none. A parameter without `=`
    /// has the empty value. Decoding borrows the request unless the value had
    /// escapes; bytes that are not UTF-8 become U+FFFD.
    ///
    /// ```
    /// use wsreactor::proto::handshake::{self, EMPTY_HEADER};
    ///
    /// let bytes = b"GET /feed?symbols=AAPL%2CMSFT&depth=5&name=J+Doe HTTP/1.1\r\nHost: h\r\n\r\n";
    /// let mut headers = [EMPTY_HEADER; 4];
    /// let (request, _) = handshake::parse_http_request(bytes, &mut headers, 8192)?.unwrap();
    /// assert_eq!(request.query_param("symbols").as_deref(), Some("AAPL,MSFT"));
    /// assert_eq!(request.query_param("name").as_deref(), Some("J Doe"));
    /// assert_eq!(request.query_param("missing"), None);
    /// # Ok::<(), handshake::HandshakeError>(())
    /// ```
    #[must_use]
    pub fn query_param(&self, name: &str) -> Option<Cow<'b, str>> {
        self.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Every query parameter in order, as percent-decoded (name, value) pairs.
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'b, str>, Cow<'b, str>)> + use<'b> {
        form_urlencoded::parse(self.query().unwrap_or("").as_bytes())
    }
}

impl<'h, 'b> Request<'h, 'b> {
    /// The value of the first query parameter called `name`, percent-decoded: see
    /// [`HttpRequest::query_param`].
    #[must_use]
    pub fn query_param(&self, name: &str) -> Option<Cow<'b, str>> {
        self.http().query_param(name)
    }

    /// Every query parameter in order, percent-decoded: see
    /// [`HttpRequest::query_pairs`].
    pub fn query_pairs(&self) -> impl Iterator<Item = (Cow<'b, str>, Cow<'b, str>)> + use<'b> {
        self.http().query_pairs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_target(target: &str, check: impl FnOnce(&HttpRequest<'_, '_>)) {
        let bytes = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut headers = [EMPTY_HEADER; 4];
        let parsed = parse_http_request(bytes.as_bytes(), &mut headers, 8192);
        let (request, _) = parsed.unwrap().unwrap();
        check(&request);
    }

    #[test]
    fn parameters_are_percent_decoded_and_the_first_of_a_name_wins() {
        with_target("/?a=1&a=2&b=%E2%82%AC&c&d=x%3Dy&e=%zz", |r| {
            assert_eq!(r.query_param("a").as_deref(), Some("1"));
            assert_eq!(r.query_param("b").as_deref(), Some("€"));
            assert_eq!(r.query_param("c").as_deref(), Some(""));
            assert_eq!(r.query_param("d").as_deref(), Some("x=y"));
            assert_eq!(
                r.query_param("e").as_deref(),
                Some("%zz"),
                "a bad escape stays"
            );
            assert_eq!(r.query_pairs().count(), 6);
        });
    }

    #[test]
    fn no_query_has_no_parameters() {
        with_target("/plain", |r| {
            assert_eq!(r.query_param("a"), None);
            assert_eq!(r.query_pairs().count(), 0);
        });
        with_target("/?", |r| assert_eq!(r.query_pairs().count(), 0));
    }

    #[test]
    fn undecoded_values_borrow_the_request() {
        with_target("/?plain=value&escaped=a%20b", |r| {
            assert!(matches!(
                r.query_param("plain"),
                Some(Cow::Borrowed("value"))
            ));
            assert!(matches!(r.query_param("escaped"), Some(Cow::Owned(_))));
        });
    }
}
