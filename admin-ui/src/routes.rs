//! The route table: every method and path the UI answers, with who may use it, and the
//! matcher that turns a request line into a route and its path parameters.
//!
//! Invariant (architecture invariant 7, "every page checks who is asking"): [`ROUTES`] is the
//! single list the dispatcher matches against, so a page cannot exist without an [`Access`]
//! entry; the authorization test walks this same list.

/// Who may use a route, checked by the UI before any handler runs (the backend decides again
/// for every call, from the principal alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No session needed (login, the login-screen password change, the stylesheet).
    Public,
    /// No session needed, but the page shows the menu of a session that has one (help).
    Help,
    /// A valid session, even one whose password must be changed first (the change form and
    /// logout).
    PasswordChange,
    /// A valid session whose password need not be changed.
    Session,
    /// A session whose principal may manage accounts (`may_manage_accounts`).
    ManageAccounts,
    /// The system administrator's session (`is_admin`).
    Admin,
}

/// One route: a method, a path pattern (`{name}` matches one non-empty segment) and its access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Path pattern, e.g. `/accounts/{id}/reset`.
    pub path: &'static str,
    /// Who may use it.
    pub access: Access,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
    }
}

/// Every route, in matching order (a literal segment listed before a pattern that would also
/// match it wins: `/accounts/new` before `/accounts/{id}`).
pub const ROUTES: &[Route] = &[
    route("GET", "/login", Access::Public),
    route("POST", "/login", Access::Public),
    route("GET", "/login/password", Access::Public),
    route("POST", "/login/password", Access::Public),
    route("GET", "/static/style.css", Access::Public),
    route("GET", "/certificate", Access::Public),
    route("GET", "/certificate/kaigo-relay-ca.crt", Access::Public),
    route("GET", "/lang", Access::Public),
    route("GET", "/healthz", Access::Public),
    route("GET", "/metrics", Access::Public),
    route("GET", "/help", Access::Help),
    route("GET", "/help/codes", Access::Help),
    route("GET", "/help/manual", Access::Help),
    route("GET", "/help/code/{code}", Access::Help),
    route("GET", "/help/{topic}", Access::Help),
    route("POST", "/logout", Access::PasswordChange),
    route("GET", "/account/password", Access::PasswordChange),
    route("POST", "/account/password", Access::PasswordChange),
    route("GET", "/", Access::Session),
    route("POST", "/office", Access::Session),
    route("GET", "/account", Access::Session),
    route("POST", "/account/sessions/revoke", Access::Session),
    route("POST", "/account/alerts", Access::Session),
    route("GET", "/alerts", Access::Session),
    route("POST", "/alerts/test", Access::Admin),
    route("GET", "/accounts", Access::ManageAccounts),
    route("POST", "/accounts", Access::ManageAccounts),
    route("GET", "/accounts/new", Access::ManageAccounts),
    route("GET", "/accounts/{id}", Access::ManageAccounts),
    route("POST", "/accounts/{id}/reset", Access::ManageAccounts),
    route("POST", "/accounts/{id}/unlock", Access::ManageAccounts),
    route("POST", "/accounts/{id}/grants", Access::ManageAccounts),
    route("POST", "/accounts/{id}/disable", Access::ManageAccounts),
    route("POST", "/accounts/{id}/enable", Access::ManageAccounts),
    route("GET", "/offices", Access::Session),
    route("GET", "/offices/{number}", Access::Session),
    route("GET", "/submissions", Access::Session),
    route("GET", "/submissions/{id}", Access::Session),
    route("POST", "/submissions/{id}/resend", Access::Session),
    route("POST", "/submissions/{id}/withdraw", Access::Session),
    route("GET", "/notices", Access::Session),
    route("GET", "/notices/{id}", Access::Session),
    route("GET", "/notices/{id}/original", Access::Session),
    route("GET", "/notices/{id}/utf8", Access::Session),
    route("GET", "/notices/{id}/view", Access::Session),
    route("GET", "/returns", Access::Session),
    route("GET", "/returns/export", Access::Session),
    route("POST", "/returns/{id}/close", Access::Session),
    route("GET", "/system", Access::Admin),
    route("GET", "/audit", Access::Admin),
    route("GET", "/backups", Access::Admin),
    route("POST", "/backups/run", Access::Admin),
    route("POST", "/backups/restore", Access::Admin),
    route("GET", "/backups/key", Access::Admin),
    route("POST", "/backups/key/confirm", Access::Admin),
];

/// What the matcher found for a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Matched {
    /// A route and its decoded path parameters, in pattern order.
    Found(&'static Route, Vec<String>),
    /// The path is known, the method is not: the `Allow` header value.
    MethodNotAllowed(String),
    /// No such path (or a parameter that is not valid UTF-8 once decoded).
    NotFound,
}

/// Matches a method and a raw (still percent-encoded) path against [`ROUTES`].
pub(crate) fn find(method: &str, raw_path: &str) -> Matched {
    let mut allowed: Vec<&'static str> = Vec::new();
    for r in ROUTES {
        let Some(params) = match_pattern(r.path, raw_path) else {
            continue;
        };
        if r.method == method {
            let mut decoded = Vec::with_capacity(params.len());
            for p in params {
                match percent_decode(p) {
                    Some(d) if !d.is_empty() => decoded.push(d),
                    _ => return Matched::NotFound,
                }
            }
            return Matched::Found(r, decoded);
        }
        if !allowed.contains(&r.method) {
            allowed.push(r.method);
        }
    }
    if allowed.is_empty() {
        Matched::NotFound
    } else {
        allowed.sort_unstable();
        Matched::MethodNotAllowed(allowed.join(", "))
    }
}

/// The raw parameter segments when `path` fits `pattern`.
fn match_pattern<'a>(pattern: &str, path: &'a str) -> Option<Vec<&'a str>> {
    if pattern == "/" {
        return (path == "/").then(Vec::new);
    }
    let mut pat = pattern.split('/');
    let mut seg = path.split('/');
    let mut params = Vec::new();
    loop {
        match (pat.next(), seg.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) => {
                if p.starts_with('{') && p.ends_with('}') {
                    if s.is_empty() {
                        return None;
                    }
                    params.push(s);
                } else if p != s {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// Decodes `%XX` escapes of one path segment (no `+` → space: that is a form rule, not a path
/// rule). `None` for a broken escape or bytes that are not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes everything but `keep` bytes (uppercase hex).
pub(crate) fn percent_encode(s: &str, keep: fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// RFC 3986 unreserved characters: what a path segment or a query value may hold as is.
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// One path segment, encoded for an `href` or a `Location`.
pub(crate) fn segment(s: &str) -> String {
    percent_encode(s, is_unreserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_before_pattern_and_params_decoded() {
        match find("GET", "/accounts/new") {
            Matched::Found(r, p) => {
                assert_eq!(r.path, "/accounts/new");
                assert!(p.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match find("POST", "/accounts/a%20b%E3%81%82/reset") {
            Matched::Found(r, p) => {
                assert_eq!(r.path, "/accounts/{id}/reset");
                assert_eq!(p, vec!["a bあ".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn method_not_allowed_and_not_found() {
        assert_eq!(
            find("DELETE", "/login"),
            Matched::MethodNotAllowed("GET, POST".into())
        );
        assert_eq!(
            find("GET", "/logout"),
            Matched::MethodNotAllowed("POST".into())
        );
        assert_eq!(find("GET", "/nope"), Matched::NotFound);
        assert_eq!(find("GET", "/accounts/"), Matched::NotFound);
        assert_eq!(find("GET", "/accounts//reset"), Matched::NotFound);
        assert_eq!(find("GET", "/accounts/%ZZ"), Matched::NotFound);
        assert_eq!(find("GET", "/accounts/%FF"), Matched::NotFound);
        assert_eq!(find("GET", ""), Matched::NotFound);
    }

    #[test]
    fn every_route_matches_itself_only_once_per_method() {
        for r in ROUTES {
            let path = r
                .path
                .replace("{id}", "x1")
                .replace("{number}", "1234567890");
            match find(r.method, &path) {
                Matched::Found(found, _) => assert_eq!(found, r, "{path}"),
                other => panic!("{} {path}: {other:?}", r.method),
            }
        }
    }

    #[test]
    fn encode_round_trip() {
        let s = "職員 01/a?b";
        let e = segment(s);
        assert!(e.bytes().all(|b| b.is_ascii() && b != b'/' && b != b'?'));
        assert_eq!(percent_decode(&e).as_deref(), Some(s));
    }
}
