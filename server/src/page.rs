//! The web page: the chat pane served at `GET /` for people without an AI host.
//!
//! The page is the same file as the MCP App view (`mcp_chat::pane::CHAT_HTML`). As a top-level
//! page it speaks MCP Streamable HTTP to `/mcp` of the same origin, so the relay only has to
//! serve it and let same-origin requests past the Origin check ([`strip_same_origin`]).
//!
//! Its Content-Security-Policy allows exactly what the file needs: its own inline scripts (by
//! hash, computed once from the embedded file), inline styles, and connections to this origin.

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};
use mcp_chat::pane::CHAT_HTML;
use sha2::{Digest, Sha256};

/// The page's Content-Security-Policy: nothing from anywhere but its inline code and this
/// origin, and no framing (the page holds the visitor's identity token).
static CONTENT_SECURITY_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let scripts: String = inline_scripts(CHAT_HTML)
        .map(|script| format!(" 'sha256-{}'", base64(&Sha256::digest(script.as_bytes()))))
        .collect();
    let policy = format!(
        "default-src 'none'; script-src{scripts}; style-src 'unsafe-inline'; \
         img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    HeaderValue::from_str(&policy).expect("a CSP of ASCII text")
});

/// `GET /` (and `/?room=CODE`): the chat page.
pub async fn chat_page() -> Response {
    let headers = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY.clone(),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, CHAT_HTML).into_response()
}

/// Removes the `Origin` header of a request whose origin is the relay's own (scheme
/// `http`/`https` and the request's `Host`), so that the page served at `/` passes the Origin
/// check that refuses every other browser origin. Returns true when it did.
///
/// This lets nothing new in through DNS rebinding: a rebound page's Origin names the attacker's
/// host, which then is also the `Host`, and the Host check (which still runs) refuses it unless
/// the operator allowed that name.
pub fn strip_same_origin(headers: &mut HeaderMap) -> bool {
    let same = match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (Some(origin), Some(host)) => is_same_origin(origin.as_bytes(), host.as_bytes()),
        _ => false,
    };
    if same {
        headers.remove(header::ORIGIN);
    }
    same
}

fn is_same_origin(origin: &[u8], host: &[u8]) -> bool {
    let rest = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    rest.is_some_and(|authority| !host.is_empty() && authority.eq_ignore_ascii_case(host))
}

/// The bodies of the file's inline `<script>` elements.
fn inline_scripts(html: &str) -> impl Iterator<Item = &str> {
    html.split("<script").skip(1).filter_map(|tail| {
        let body = &tail[tail.find('>')? + 1..];
        Some(&body[..body.find("</script>")?])
    })
}

/// Standard base64 with padding (RFC 4648), for CSP hashes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn inline_scripts_are_found() {
        let html = "<p><script>a()</script><script type=\"module\">b()\n</script></p>";
        assert_eq!(inline_scripts(html).collect::<Vec<_>>(), ["a()", "b()\n"]);
    }

    #[test]
    fn only_the_relays_own_origin_is_same_origin() {
        assert!(is_same_origin(b"http://127.0.0.1:8080", b"127.0.0.1:8080"));
        assert!(is_same_origin(
            b"https://Chat.Example.com",
            b"chat.example.com"
        ));
        assert!(!is_same_origin(b"http://127.0.0.1:8081", b"127.0.0.1:8080"));
        assert!(!is_same_origin(b"http://evil.example", b"127.0.0.1:8080"));
        assert!(!is_same_origin(b"null", b"null"));
        assert!(!is_same_origin(b"ftp://127.0.0.1:8080", b"127.0.0.1:8080"));
        assert!(!is_same_origin(b"http://", b""));
    }
}
