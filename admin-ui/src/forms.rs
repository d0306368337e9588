//! Form bodies and query strings: `application/x-www-form-urlencoded`, repeated keys kept in
//! order, and the body limit.
//!
//! Invariant: a body larger than [`BODY_LIMIT`] is never parsed (413), and a POST whose body
//! is not a urlencoded form is refused before any handler sees it.

use http::HeaderMap;
use http::header::CONTENT_TYPE;

/// The largest request body accepted (64 KiB); beyond it the answer is 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A parsed form or query string.
#[derive(Debug, Default, Clone)]
pub(crate) struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Parses urlencoded bytes (`+` is a space, invalid UTF-8 is replaced).
    pub(crate) fn parse(bytes: &[u8]) -> Form {
        Form {
            pairs: form_urlencoded::parse(bytes).into_owned().collect(),
        }
    }

    /// The first value of `name`, if any.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, or "".
    pub(crate) fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// The first value of `name`, trimmed, `None` when empty.
    pub(crate) fn opt(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// Every non-empty value of a repeated field, trimmed, in order, without duplicates.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (k, v) in &self.pairs {
            let v = v.trim();
            if k == name && !v.is_empty() && !out.iter().any(|o| o == v) {
                out.push(v.to_owned());
            }
        }
        out
    }
}

/// Whether a POST body may be read as a urlencoded form: no content type (an empty body),
/// or `application/x-www-form-urlencoded` with any parameters.
pub(crate) fn is_urlencoded(headers: &HeaderMap) -> bool {
    match headers.get(CONTENT_TYPE) {
        None => true,
        Some(v) => v.to_str().is_ok_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_decoded() {
        let f = Form::parse(b"grants=1&grants=2&grants=&grants=1&name=%E5%B1%B1+%E7%94%B0&x=");
        assert_eq!(f.all("grants"), vec!["1".to_string(), "2".to_string()]);
        assert_eq!(f.get("name"), Some("山 田"));
        assert_eq!(f.opt("x"), None);
        assert_eq!(f.text("missing"), "");
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(is_urlencoded(&h));
        h.insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded; charset=UTF-8"),
        );
        assert!(is_urlencoded(&h));
        h.insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("multipart/form-data; boundary=x"),
        );
        assert!(!is_urlencoded(&h));
    }
}
