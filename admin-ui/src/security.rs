//! The request guards and response hardening every page shares: the security headers, the
//! session and login-CSRF cookies, constant-time token comparison, the Origin /
//! Sec-Fetch-Site check, and fresh random tokens.
//!
//! Invariants kept here: every response gets the same security headers (and `no-store`
//! unless a handler set its own cache policy, which only the stylesheet does); cookies are
//! `__Host-` prefixed, `Path=/; Secure; HttpOnly; SameSite=Strict` with no `Domain`; a token
//! is compared in constant time; a cross-site POST never reaches a handler.

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;

/// The session cookie (the backend's opaque token).
pub const SESSION_COOKIE: &str = "__Host-kaigo_session";
/// The login form's double-submit CSRF cookie.
pub const LOGIN_COOKIE: &str = "__Host-kaigo_login";

/// The Content-Security-Policy of every response: no scripts at all, styles from the
/// stylesheet only, forms post only to this origin, no framing.
pub(crate) const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The CSP of a PDF shown inline (no page of ours: the browser's viewer): still never framed,
/// no base or form targets; `nosniff` and the exact content type keep it a PDF.
pub(crate) const PDF_CSP: &str = "frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const COOKIE_ATTRIBUTES: &str = "Path=/; Secure; HttpOnly; SameSite=Strict";

/// Sets the security headers on a response (overwriting any a handler set, except a
/// `Cache-Control` it chose on purpose).
pub(crate) fn apply_headers(headers: &mut HeaderMap) {
    let fixed: [(HeaderName, &'static str); 5] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// The first value of cookie `name` in the request's `Cookie` header(s) (h2 may split them).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether a value may stand in a cookie as is (RFC 6265 cookie-octet).
fn is_cookie_value(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e))
}

/// `Set-Cookie` for a cookie with the fixed attributes; `None` when the value cannot be a
/// cookie value (the caller treats that as an internal error).
pub(crate) fn set_cookie(name: &str, value: &str) -> Option<HeaderValue> {
    if !is_cookie_value(value) {
        return None;
    }
    HeaderValue::from_str(&format!("{name}={value}; {COOKIE_ATTRIBUTES}")).ok()
}

/// `Set-Cookie` that removes a cookie.
pub(crate) fn clear_cookie(name: &str) -> HeaderValue {
    // The names are our two constants, always valid header text.
    HeaderValue::from_str(&format!("{name}=; {COOKIE_ATTRIBUTES}; Max-Age=0"))
        .unwrap_or_else(|_| HeaderValue::from_static("x=; Max-Age=0"))
}

/// Compares two tokens without an early exit on the first differing byte. Empty tokens never
/// match (a missing cookie and a missing field must not agree).
pub(crate) fn tokens_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.is_empty() || a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// 32 random bytes, base64url without padding (43 characters), from the ring provider's
/// system random source.
pub(crate) fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The Origin / Sec-Fetch-Site check every POST passes: a `Sec-Fetch-Site` header, if sent,
/// must say `same-origin` or `none`; an `Origin` header, if sent, must name this request's
/// own authority (the `Host` header, or the URI authority on h2) over https.
///
/// Every page is served with `Referrer-Policy: no-referrer`, under which browsers send
/// `Origin: null` with a form post even to the same site; `null` is therefore accepted only
/// together with `Sec-Fetch-Site: same-origin`, which the browser sets and no page script
/// can, and refused otherwise.
pub(crate) fn same_origin(parts: &Parts) -> bool {
    let mut fetched_same_origin = false;
    if let Some(site) = parts.headers.get("sec-fetch-site") {
        match site.to_str() {
            Ok(s) if s.eq_ignore_ascii_case("same-origin") => fetched_same_origin = true,
            Ok(s) if s.eq_ignore_ascii_case("none") => {}
            _ => return false,
        }
    }
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if origin.trim() == "null" {
        return fetched_same_origin;
    }
    let Some(origin_authority) = strip_scheme(origin.trim(), "https://") else {
        return false;
    };
    let own = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    let Some(own) = own else {
        return false;
    };
    normalize_authority(origin_authority) == normalize_authority(own)
}

fn strip_scheme<'a>(s: &'a str, scheme: &str) -> Option<&'a str> {
    let head = s.get(..scheme.len())?;
    if !head.eq_ignore_ascii_case(scheme) {
        return None;
    }
    let rest = &s[scheme.len()..];
    // An origin is scheme://host[:port] with nothing after it.
    (!rest.is_empty() && !rest.contains(['/', '?', '#', '@'])).then_some(rest)
}

/// Lowercased, with https's default port removed.
fn normalize_authority(a: &str) -> String {
    let a = a.trim().to_ascii_lowercase();
    match a.strip_suffix(":443") {
        Some(host) => host.to_owned(),
        None => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)], uri: &str) -> Parts {
        let mut b = http::Request::builder().method("POST").uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        match b.body(()) {
            Ok(r) => r.into_parts().0,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn origin_rules() {
        let h = ("host", "kaigo.local:8443");
        assert!(same_origin(&parts(&[h], "/x")));
        assert!(same_origin(&parts(
            &[h, ("origin", "https://KAIGO.local:8443")],
            "/x"
        )));
        assert!(same_origin(&parts(
            &[h, ("sec-fetch-site", "same-origin")],
            "/x"
        )));
        assert!(same_origin(&parts(&[h, ("sec-fetch-site", "none")], "/x")));
        assert!(!same_origin(&parts(
            &[h, ("sec-fetch-site", "cross-site")],
            "/x"
        )));
        assert!(!same_origin(&parts(
            &[h, ("sec-fetch-site", "same-site")],
            "/x"
        )));
        assert!(!same_origin(&parts(
            &[h, ("origin", "https://evil.example")],
            "/x"
        )));
        assert!(!same_origin(&parts(
            &[h, ("origin", "http://kaigo.local:8443")],
            "/x"
        )));
        assert!(!same_origin(&parts(&[h, ("origin", "null")], "/x")));
        // What a browser sends for a form post from a no-referrer page of this site.
        assert!(same_origin(&parts(
            &[h, ("origin", "null"), ("sec-fetch-site", "same-origin")],
            "/x"
        )));
        assert!(!same_origin(&parts(
            &[h, ("origin", "null"), ("sec-fetch-site", "none")],
            "/x"
        )));
        assert!(!same_origin(&parts(
            &[h, ("origin", "null"), ("sec-fetch-site", "cross-site")],
            "/x"
        )));
        assert!(!same_origin(&parts(
            &[h, ("origin", "https://kaigo.local:8443/path")],
            "/x"
        )));
        // h2: no Host header, the authority is in the URI.
        assert!(same_origin(&parts(
            &[("origin", "https://kaigo.local")],
            "https://kaigo.local:443/x"
        )));
        assert!(!same_origin(&parts(
            &[("origin", "https://kaigo.local")],
            "/x"
        )));
    }

    #[test]
    fn cookies_and_tokens() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-kaigo_login=xyz"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-kaigo_session=tok"),
        );
        assert_eq!(cookie(&h, LOGIN_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "b"), None);
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "abcd"));
        assert!(!tokens_equal("", ""));
        assert!(set_cookie(SESSION_COOKIE, "bad value;").is_none());
        let t = random_token().unwrap_or_default();
        assert_eq!(t.len(), 43);
        assert_ne!(t, random_token().unwrap_or_default());
        assert!(set_cookie(LOGIN_COOKIE, &t).is_some());
    }
}
