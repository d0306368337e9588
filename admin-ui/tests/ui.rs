//! The admin UI through `AdminUi::handle` with the in-memory fake backend: login and its
//! cookies, CSRF and origin checks, sessions and forced password changes, every route in
//! `ROUTES`, every template, the security headers, and what the UI asks the backend.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

mod common;

use std::collections::BTreeSet;

use admin_ui::{Access, LOGIN_COOKIE, ROUTES, SESSION_COOKIE};
use common::*;
use http::StatusCode;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn assert_security_headers(a: &Answer) {
    assert_eq!(a.header("content-security-policy"), Some(CSP), "{a:?}");
    assert_eq!(
        a.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    assert_eq!(a.header("x-frame-options"), Some("DENY"));
    assert_eq!(a.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
}

/// Cookie attributes as a set, with the name=value pair first.
fn cookie_parts(c: &str) -> (String, BTreeSet<String>) {
    let mut it = c.split(';').map(|s| s.trim().to_owned());
    let pair = it.next().unwrap_or_default();
    (pair, it.collect())
}

/// GET /login, returning the login cookie value and the form's token.
async fn login_form(ui: &admin_ui::AdminUi<Fake>) -> (String, String) {
    let a = get("/login").send(ui).await;
    assert_eq!(a.status, StatusCode::OK);
    let cookie = a.set_cookie(LOGIN_COOKIE).expect("login cookie");
    let (pair, attrs) = cookie_parts(&cookie);
    let value = pair
        .strip_prefix(&format!("{LOGIN_COOKIE}="))
        .unwrap()
        .to_owned();
    let expected: BTreeSet<String> = ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(attrs, expected);
    assert_eq!(value.len(), 43, "32 bytes base64url");
    assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let field = a.csrf_field().expect("csrf field");
    assert_eq!(field, value);
    (value, field)
}

#[tokio::test]
async fn login_success_sets_the_session_cookie_and_redirects() {
    let (ui, fake) = ui();
    let (cookie, token) = login_form(&ui).await;
    let a = post("/login")
        .cookie(LOGIN_COOKIE, &cookie)
        .field("id", "clerk")
        .field("password", "correct horse battery")
        .field("csrf_token", &token)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), Some("/"));
    let session = a.set_cookie(SESSION_COOKIE).expect("session cookie");
    let (pair, attrs) = cookie_parts(&session);
    assert_eq!(pair, format!("{SESSION_COOKIE}={STAFF}"));
    let expected: BTreeSet<String> = ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(attrs, expected, "exactly these attributes, no Domain");
    let cleared = a.set_cookie(LOGIN_COOKIE).expect("login cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_security_headers(&a);
    assert_eq!(
        fake.calls().iter().filter(|c| c.method == "login").count(),
        1
    );
    // The password is never echoed.
    assert!(!a.body.contains("correct horse battery"));
}

#[tokio::test]
async fn login_with_must_change_goes_to_the_change_form() {
    let (ui, _) = ui();
    let (cookie, token) = login_form(&ui).await;
    let a = post("/login")
        .cookie(LOGIN_COOKIE, &cookie)
        .field("id", "newbie")
        .field("password", "first-password")
        .field("csrf_token", &token)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), Some("/account/password"));
    assert!(a.set_cookie(SESSION_COOKIE).is_some());
}

#[tokio::test]
async fn login_without_a_matching_login_cookie_is_403() {
    let (ui, fake) = ui();
    let (cookie, token) = login_form(&ui).await;
    let cases = [
        // No cookie at all.
        post("/login").field("csrf_token", &token),
        // A cookie, no field.
        post("/login").cookie(LOGIN_COOKIE, &cookie),
        // Mismatched.
        post("/login")
            .cookie(LOGIN_COOKIE, &cookie)
            .field("csrf_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        // Both empty.
        post("/login")
            .cookie(LOGIN_COOKIE, "")
            .field("csrf_token", ""),
    ];
    for req in cases {
        let a = req
            .field("id", "clerk")
            .field("password", "correct horse battery")
            .send(&ui)
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
        assert!(a.set_cookie(SESSION_COOKIE).is_none());
        // The form comes back with a fresh token to try again.
        assert!(a.set_cookie(LOGIN_COOKIE).is_some());
        assert!(a.body.contains("有効期限"));
        assert_security_headers(&a);
    }
    assert!(!fake.called("login"));
    // The login-screen password change checks the same cookie.
    let a = post("/login/password")
        .field("csrf_token", &token)
        .field("id", "clerk")
        .field("old_password", "a")
        .field("new_password", "b")
        .field("new_password_confirm", "b")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(!fake.called("change_password_at_login"));
}

#[tokio::test]
async fn refused_and_throttled_logins() {
    let (ui, _) = ui();
    let (cookie, token) = login_form(&ui).await;
    let a = post("/login")
        .cookie(LOGIN_COOKIE, &cookie)
        .field("id", "someone")
        .field("password", "wrong-password-xyz")
        .field("csrf_token", &token)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("IDまたはパスワードが違います。"));
    assert!(a.body.contains("Wrong ID or password."));
    assert!(a.body.contains("value=\"someone\""), "the ID is kept");
    assert!(
        !a.body.contains("wrong-password-xyz"),
        "the password is not"
    );
    let fresh = a.set_cookie(LOGIN_COOKIE).expect("a new login cookie");
    assert!(!fresh.contains(&cookie));
    assert!(a.set_cookie(SESSION_COOKIE).is_none());

    let a = post("/login")
        .cookie(LOGIN_COOKIE, &cookie)
        .field("id", "slow")
        .field("password", "whatever-password")
        .field("csrf_token", &token)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(a.body.contains("ログインの試行が多すぎます。"));

    let a = post("/login")
        .cookie(LOGIN_COOKIE, &cookie)
        .field("id", "")
        .field("password", "")
        .field("csrf_token", &token)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);

    let a = post("/login")
        .cookie(LOGIN_COOKIE, &cookie)
        .field("id", "broken")
        .field("password", "whatever-password")
        .field("csrf_token", &token)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn login_page_redirects_a_valid_session_and_shows_the_changed_message() {
    let (ui, _) = ui();
    let a = get("/login").session(STAFF).send(&ui).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), Some("/"));
    let a = get("/login").session("tok-stale").send(&ui).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = get("/login?changed=1").send(&ui).await;
    assert!(
        a.body
            .contains("パスワードを変更しました。新しいパスワードでログインしてください。")
    );
    assert!(a.body.contains("href=\"/login/password\""));
    assert!(a.body.contains("パスワードの変更"));
}

#[tokio::test]
async fn password_change_at_login() {
    let (ui, fake) = ui();
    let a = get("/login/password").send(&ui).await;
    assert_eq!(a.status, StatusCode::OK);
    let cookie = a.set_cookie(LOGIN_COOKIE).unwrap();
    let value = cookie_parts(&cookie)
        .0
        .strip_prefix(&format!("{LOGIN_COOKIE}="))
        .unwrap()
        .to_owned();
    assert_eq!(a.csrf_field().as_deref(), Some(value.as_str()));
    let send = |old: &'static str, new: &'static str, confirm: &'static str| {
        post("/login/password")
            .cookie(LOGIN_COOKIE, &value)
            .field("csrf_token", &value)
            .field("id", "clerk")
            .field("old_password", old)
            .field("new_password", new)
            .field("new_password_confirm", confirm)
    };
    let a = send("old-password-1", "new-password-12", "new-password-13")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("一致しません"));
    assert!(!fake.called("change_password_at_login"));
    for secret in ["old-password-1", "new-password-12", "new-password-13"] {
        assert!(!a.body.contains(secret));
    }
    let a = send("wrong-old-password", "new-password-12", "new-password-12")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("IDまたはパスワードが違います。"));
    let a = send("old-password-1", "new-password-12", "new-password-12")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), Some("/login?changed=1"));
}

#[tokio::test]
async fn a_post_with_a_wrong_csrf_token_is_403() {
    let (ui, fake) = ui();
    for token in ["", "csrf-tok-admin-but-longer", "csrf-tok-staff"] {
        let a = post("/office")
            .session(ADMIN)
            .field("csrf_token", token)
            .field("office", OFFICE_B)
            .send(&ui)
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "token {token:?}");
        assert!(a.body.contains("フォームの有効期限が切れました"));
        assert!(a.body.contains("再読み込み"));
        assert_security_headers(&a);
    }
    // Every non-public POST route checks it.
    for r in ROUTES
        .iter()
        .filter(|r| r.method == "POST" && r.access != Access::Public)
    {
        let mut req = post(&concrete(r.path))
            .session(ADMIN)
            .field("csrf_token", "wrong");
        for (k, v) in fields_for(r.path) {
            req = req.field(k, v);
        }
        let a = req.send(&ui).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", r.path);
    }
    assert!(
        fake.mutating_calls().is_empty(),
        "{:?}",
        fake.mutating_calls()
    );
    // With the right token it goes through.
    let a = post("/office")
        .with_user(ADMIN)
        .field("office", OFFICE_B)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), Some("/"));
    assert_eq!(
        fake.mutating_calls(),
        vec![Call {
            method: "switch_office",
            account: Some("admin".into()),
            arg: OFFICE_B.into()
        }]
    );
}

#[tokio::test]
async fn cross_site_posts_are_403() {
    let (ui, fake) = ui();
    let (cookie, token) = login_form(&ui).await;
    let login = || {
        post("/login")
            .cookie(LOGIN_COOKIE, &cookie)
            .field("csrf_token", &token)
            .field("id", "clerk")
            .field("password", "correct horse battery")
    };
    let bad: [(&'static str, &str); 5] = [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "https://evil.example"),
        ("origin", "http://kaigo.local:8443"),
        ("origin", "null"),
    ];
    for (k, v) in bad {
        let a = login().header(k, v).send(&ui).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{k}: {v}");
        let a = post("/office")
            .with_user(ADMIN)
            .field("office", OFFICE_B)
            .header(k, v)
            .send(&ui)
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{k}: {v}");
        assert_security_headers(&a);
    }
    assert!(fake.mutating_calls().is_empty());
    // Same origin passes.
    let a = login()
        .header("origin", "https://kaigo.local:8443")
        .header("sec-fetch-site", "same-origin")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    // A GET is not checked (links from elsewhere may open pages).
    let a = get("/")
        .session(ADMIN)
        .header("sec-fetch-site", "cross-site")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn without_a_session_every_private_route_redirects_to_login() {
    let (ui, fake) = ui();
    for r in ROUTES
        .iter()
        .filter(|r| r.access != Access::Public && r.access != Access::Help)
    {
        for token in [None, Some("tok-unknown")] {
            let mut req = if r.method == "POST" {
                post(&concrete(r.path)).field("csrf_token", "x")
            } else {
                get(&concrete(r.path))
            };
            if let Some(t) = token {
                req = req.session(t);
            }
            let a = req.send(&ui).await;
            assert_eq!(a.status, StatusCode::SEE_OTHER, "{} {}", r.method, r.path);
            // A stale session is told why it must log in again.
            let want = if token.is_some() {
                "/login?expired=1"
            } else {
                "/login"
            };
            assert_eq!(a.location(), Some(want), "{} {}", r.method, r.path);
            if token.is_some() {
                let cleared = a.set_cookie(SESSION_COOKIE).unwrap();
                assert!(cleared.contains("Max-Age=0"));
            }
        }
    }
    assert!(fake.mutating_calls().is_empty());
    // A failing session store is a 500, not a login loop.
    let a = get("/").session("tok-broken").send(&ui).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn must_change_password_sends_everything_to_the_change_form() {
    let (ui, fake) = ui();
    for r in ROUTES.iter().filter(|r| {
        !matches!(
            r.access,
            Access::Public | Access::Help | Access::PasswordChange
        )
    }) {
        let mut req = if r.method == "POST" {
            post(&concrete(r.path)).with_user(MUST)
        } else {
            get(&concrete(r.path)).session(MUST)
        };
        for (k, v) in fields_for(r.path) {
            req = req.field(k, v);
        }
        let a = req.send(&ui).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{} {}", r.method, r.path);
        assert_eq!(a.location(), Some("/account/password"), "{}", r.path);
    }
    assert!(fake.mutating_calls().is_empty());

    let a = get("/account/password").session(MUST).send(&ui).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("ほかの人が設定したもの"), "the explanation");
    assert!(!a.body.contains("href=\"/submissions\""), "no menu yet");
    assert!(a.body.contains("action=\"/logout\""), "but logout");

    let a = post("/account/password")
        .with_user(MUST)
        .field("old_password", "first-password")
        .field("new_password", "my-own-password-1")
        .field("new_password_confirm", "my-own-password-1")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), Some("/account?changed=1"));
    assert!(fake.called("change_password"));

    let a = post("/logout").with_user(MUST).send(&ui).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), Some("/login"));
}

#[tokio::test]
async fn own_password_change_errors_show_the_form_again() {
    let (ui, _) = ui();
    let a = post("/account/password")
        .with_user(STAFF)
        .field("old_password", "wrong-old-password")
        .field("new_password", "my-own-password-1")
        .field("new_password_confirm", "my-own-password-1")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("今のパスワードが違います。"));
    assert!(a.body.contains("The current password is wrong."));
    assert!(!a.body.contains("my-own-password-1"));
    assert_eq!(a.page().as_deref(), Some("account_password"));
    let a = get("/account?changed=1").session(STAFF).send(&ui).await;
    assert!(a.body.contains("パスワードを変更しました。"));
}

/// Sends every route the way a page would, as the administrator (who may use all of them).
async fn walk_all_routes(ui: &admin_ui::AdminUi<Fake>) -> Vec<(String, Answer)> {
    let mut out = Vec::new();
    for r in ROUTES {
        let path = concrete(r.path);
        let mut req = match (r.method, r.access) {
            // A scraper on the LAN carries the token.
            ("GET", Access::Public) if r.path == "/metrics" => {
                get(&path).header("authorization", "Bearer sesame-sesame-sesame")
            }
            ("GET", Access::Public) => get(&path),
            ("GET", _) => get(&path).session(ADMIN),
            ("POST", Access::Public) => {
                let form = get(r.path).send(ui).await;
                let cookie = form.csrf_field().unwrap();
                post(&path)
                    .cookie(LOGIN_COOKIE, &cookie)
                    .field("csrf_token", &cookie)
            }
            _ => post(&path).with_user(ADMIN),
        };
        for (k, v) in fields_for(r.path) {
            req = req.field(k, v);
        }
        out.push((format!("{} {}", r.method, r.path), req.send(ui).await));
    }
    out
}

#[tokio::test]
async fn every_route_answers() {
    let (ui, _) = ui();
    for (route, a) in walk_all_routes(&ui).await {
        assert!(
            a.status == StatusCode::OK || a.status == StatusCode::SEE_OTHER,
            "{route}: {} {}",
            a.status,
            a.body
        );
        assert_security_headers(&a);
    }
}

#[tokio::test]
async fn every_template_renders_with_sample_data() {
    let (ui, _) = ui();
    let mut seen = BTreeSet::new();
    let mut answers: Vec<(String, Answer)> = walk_all_routes(&ui).await;
    // Pages the walk does not reach: errors, the office picker without an office, a text
    // notice, form errors, the other roles' menus.
    let more = [
        ("404", get("/nope")),
        ("403", get("/audit").session(STAFF)),
        ("no office", get("/submissions").session(NO_OFFICE)),
        ("no office", get("/notices").session(NO_OFFICE)),
        ("no office", get("/returns").session(NO_OFFICE)),
        ("text notice", get("/notices/n-text").session(STAFF)),
        ("staff home", get("/").session(STAFF)),
        ("corp home", get("/").session(CORP)),
        ("corp new", get("/accounts/new").session(CORP)),
        ("disabled", get("/accounts/disabled01").session(ADMIN)),
        (
            "taken",
            post("/accounts")
                .with_user(ADMIN)
                .field("id", "taken")
                .field("role", "staff"),
        ),
        ("reset", post("/accounts/staff01/reset").with_user(ADMIN)),
    ];
    for (what, req) in more {
        answers.push((what.to_owned(), req.send(&ui).await));
    }
    for (what, a) in &answers {
        assert_ne!(
            a.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{what}: {}",
            a.body
        );
        if a.header("content-type") == Some("text/html; charset=utf-8") && !a.body.is_empty() {
            let page = a.page().unwrap_or_else(|| panic!("{what}: no page class"));
            seen.insert(page);
            assert!(a.body.starts_with("<!DOCTYPE html>"), "{what}");
            assert!(
                a.body.contains("<html lang=\"ja\" class=\"lang-ja\">"),
                "{what}"
            );
            assert!(a.body.contains("kaigo-relay 介護給付費 伝送装置"), "{what}");
            // No script, no inline style, and the nasty sample names came out escaped.
            assert!(!a.body.contains("<script"), "{what}");
            assert!(!a.body.contains(" style="), "{what}");
            assert!(!a.body.contains("<style"), "{what}");
        }
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
    let expected: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter_map(|n| n.strip_suffix(".html").map(str::to_owned))
        // The layout and the partial are parts of every other page.
        .filter(|n| n != "base" && n != "office_select" && n != "pager")
        .collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn every_form_field_has_a_label() {
    let (ui, _) = ui();
    let mut answers = walk_all_routes(&ui).await;
    answers.push((
        "detail".into(),
        get("/accounts/staff01").session(ADMIN).send(&ui).await,
    ));
    for (what, a) in answers {
        let body = &a.body;
        let mut rest = body.as_str();
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let tag_end = rest.find('>').unwrap_or(rest.len());
            let tag = &rest[..tag_end];
            let is_field = tag.starts_with("input ")
                || tag.starts_with("select ")
                || tag.starts_with("textarea ");
            if is_field && !tag.contains("type=\"hidden\"") {
                let id = tag
                    .split("id=\"")
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .unwrap_or_else(|| panic!("{what}: a field without id: {tag}"));
                assert!(
                    body.contains(&format!("<label for=\"{id}\">")),
                    "{what}: no label for {id}"
                );
            }
        }
    }
}

#[tokio::test]
async fn security_headers_on_200_303_404_405_413() {
    let (ui, _) = ui();
    let ok = get("/").session(ADMIN).send(&ui).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_security_headers(&ok);
    assert_eq!(ok.header("cache-control"), Some("no-store"));

    let see_other = get("/").send(&ui).await;
    assert_eq!(see_other.status, StatusCode::SEE_OTHER);
    assert_security_headers(&see_other);
    assert_eq!(see_other.header("cache-control"), Some("no-store"));

    let not_found = get("/no/such/page").session(ADMIN).send(&ui).await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    assert_security_headers(&not_found);
    assert!(not_found.body.contains("ページが見つかりません"));

    let wrong_method = get("/logout").send(&ui).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    assert_security_headers(&wrong_method);
    let wrong_method = get("/login").method("DELETE").send(&ui).await;
    assert_eq!(wrong_method.header("allow"), Some("GET, POST"));

    let big = post("/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 64 * 1024 + 1])
        .send(&ui)
        .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_security_headers(&big);

    let css = get("/static/style.css").send(&ui).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert!(css.header("cache-control").unwrap().starts_with("public"));
    assert!(css.body.contains("@media print"));
    assert_security_headers(&css);
    // Pages link the stylesheet with a content version.
    assert!(ok.body.contains("href=\"/static/style.css?v="));
}

#[tokio::test]
async fn roles_without_the_right_get_403() {
    let (ui, fake) = ui();
    for path in ["/accounts", "/accounts/new", "/accounts/staff01", "/audit"] {
        let a = get(path).session(STAFF).send(&ui).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}");
        assert!(a.body.contains("権限がありません"));
    }
    let a = post("/accounts/staff01/reset")
        .with_user(STAFF)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = get("/audit").session(CORP).send(&ui).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(!fake.called("reset_password"));
    assert!(!fake.called("audit_log"));
    // Hidden links.
    let home = get("/").session(STAFF).send(&ui).await;
    assert!(!home.body.contains("href=\"/accounts\""));
    assert!(!home.body.contains("href=\"/audit\""));
    let home = get("/").session(CORP).send(&ui).await;
    assert!(home.body.contains("href=\"/accounts\""));
    assert!(!home.body.contains("href=\"/audit\""));
    let home = get("/").session(ADMIN).send(&ui).await;
    assert!(home.body.contains("href=\"/audit\""));
}

#[tokio::test]
async fn backend_errors_map_to_pages() {
    let (ui, _) = ui();
    let a = get("/accounts/missing").session(ADMIN).send(&ui).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = get("/accounts/forbidden").session(ADMIN).send(&ui).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = get("/submissions/broken").session(ADMIN).send(&ui).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(a.body.contains("内部エラーが発生しました"));
    assert!(!a.body.to_lowercase().contains("internal error:"));
    // Invalid on a form: the form again, 422, with the backend's message.
    let a = post("/accounts/invalid/unlock")
        .with_user(ADMIN)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("入力が正しくありません（テスト）"));
    assert!(a.body.contains("Invalid input (test)"));
    let a = post("/office")
        .with_user(ADMIN)
        .field("office", "invalid")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.page().as_deref(), Some("home"));
    let a = post("/account/sessions/revoke")
        .with_user(ADMIN)
        .field("session_id", "invalid")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.page().as_deref(), Some("account"));
    let a = post("/accounts")
        .with_user(ADMIN)
        .field("id", "taken")
        .field("display_name", "再入力される名前")
        .field("role", "staff")
        .field("grants", OFFICE_B)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("このログインIDは使われています。"));
    assert!(a.body.contains("value=\"再入力される名前\""));
    assert!(a.body.contains(&format!("value=\"{OFFICE_B}\" checked")));
    assert!(!a.body.contains(OTP));
}

#[tokio::test]
async fn another_offices_data_is_what_the_backend_says() {
    let (ui, fake) = ui();
    for list in ["/submissions", "/notices", "/returns"] {
        fake.clear();
        // Hidden by the backend: 404, whatever the URL says.
        let a = get(&format!("{list}?office={OFFICE_FOREIGN}"))
            .session(STAFF)
            .send(&ui)
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{list}");
        // Not in the principal's menu, but the backend allows it: the UI does not second-guess.
        let a = get(&format!("{list}?office={OFFICE_EXTRA}"))
            .session(STAFF)
            .send(&ui)
            .await;
        assert_eq!(a.status, StatusCode::OK, "{list}");
        assert!(a.body.contains(OFFICE_EXTRA));
        // No office in the URL: the session's current office.
        let a = get(list).session(STAFF).send(&ui).await;
        assert_eq!(a.status, StatusCode::OK);
        let method = list.trim_start_matches('/');
        let asked: Vec<(Option<String>, String)> = fake
            .calls()
            .into_iter()
            .filter(|c| c.method == method)
            // The office is the query's first part.
            .map(|c| (c.account, c.arg.split('|').next().unwrap_or("").to_owned()))
            .collect();
        assert_eq!(
            asked,
            vec![
                (Some("staff".into()), OFFICE_FOREIGN.into()),
                (Some("staff".into()), OFFICE_EXTRA.into()),
                (Some("staff".into()), OFFICE_A.into()),
            ],
            "{list}"
        );
    }
    // IDs go through unchanged (decoded once), with the session's principal.
    fake.clear();
    let a = get("/submissions/sub-%E4%BB%96%2F1")
        .session(CORP)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        fake.calls().last().cloned(),
        Some(Call {
            method: "submission",
            account: Some("corp".into()),
            arg: "sub-他/1".into()
        })
    );
    let a = get(&format!("/offices/{OFFICE_FOREIGN}"))
        .session(CORP)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    // No current office and none asked for: a message to pick one, no backend call.
    fake.clear();
    let a = get("/returns").session(NO_OFFICE).send(&ui).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("事業所が選ばれていません"));
    assert!(!fake.called("returns"));
}

#[tokio::test]
async fn get_routes_never_call_a_mutating_method() {
    let (ui, fake) = ui();
    let tokens = [ADMIN, CORP, STAFF, MUST, NO_OFFICE];
    for r in ROUTES.iter().filter(|r| r.method == "GET") {
        for token in tokens {
            for path in [
                concrete(r.path),
                r.path
                    .replace("{id}", "missing")
                    .replace("{number}", "missing"),
                format!("{}?office={OFFICE_B}&changed=1", concrete(r.path)),
            ] {
                let a = get(&path).session(token).send(&ui).await;
                assert_ne!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            }
        }
        let _ = get(&concrete(r.path)).send(&ui).await;
    }
    assert!(
        fake.mutating_calls().is_empty(),
        "{:?}",
        fake.mutating_calls()
    );
    // notice_download is a read (audited by the backend) and was called.
    assert!(fake.called("notice_download"));
}

#[tokio::test]
async fn logout_clears_the_cookie() {
    let (ui, fake) = ui();
    let a = post("/logout").with_user(STAFF).send(&ui).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), Some("/login"));
    let c = a.set_cookie(SESSION_COOKIE).unwrap();
    let (pair, attrs) = cookie_parts(&c);
    assert_eq!(pair, format!("{SESSION_COOKIE}="));
    assert!(attrs.contains("Max-Age=0"));
    assert!(attrs.contains("Secure") && attrs.contains("HttpOnly"));
    assert!(fake.called("logout"));
}

#[tokio::test]
async fn one_time_password_is_shown_once_in_the_body_only() {
    let (ui, fake) = ui();
    let a = post("/accounts")
        .with_user(CORP)
        .field("id", "staff02")
        .field("display_name", "介護 花子")
        .field("role", "staff")
        .field("grants", OFFICE_A)
        .field("grants", OFFICE_B)
        .field("office", "")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert!(a.body.contains(OTP));
    assert!(a.location().is_none());
    assert!(a.body.contains("一度だけ"));
    let created = fake
        .calls()
        .into_iter()
        .find(|c| c.method == "create_account")
        .unwrap();
    assert_eq!(created.account.as_deref(), Some("corp"));
    assert_eq!(
        created.arg,
        format!("staff02|Some(Staff)|None|{OFFICE_A},{OFFICE_B}|None|")
    );

    let a = post("/accounts/staff01/reset")
        .with_user(ADMIN)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains(OTP));
    assert!(a.body.contains("パスワードを再設定しました"));
    // The account page never shows it.
    let a = get("/accounts/staff01").session(ADMIN).send(&ui).await;
    assert!(!a.body.contains(OTP));
}

#[tokio::test]
async fn account_actions_redirect_back_to_the_account() {
    let (ui, fake) = ui();
    for (action, expected) in [
        ("unlock", "staff 01"),
        ("disable", "staff 01|true"),
        ("enable", "staff 01|false"),
        ("grants", &format!("staff 01|{OFFICE_A},{OFFICE_B}")),
    ] {
        let mut req = post(&format!("/accounts/staff%2001/{action}")).with_user(ADMIN);
        if action == "grants" {
            req = req.field("office", OFFICE_A).field("office", OFFICE_B);
        }
        let a = req.send(&ui).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{action}");
        assert_eq!(a.location(), Some("/accounts/staff%2001"), "{action}");
        assert_eq!(fake.calls().last().unwrap().arg, expected, "{action}");
    }
}

#[tokio::test]
async fn closing_a_return_needs_a_note() {
    let (ui, fake) = ui();
    let a = post("/returns/ret-1/close")
        .with_user(STAFF)
        .field("note", "   ")
        .field("office", OFFICE_A)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("メモ（対応内容）を入力してください"));
    assert_eq!(a.page().as_deref(), Some("returns"));
    assert!(!fake.called("close_return"));

    let a = post("/returns/ret-1/close")
        .with_user(STAFF)
        .field("note", "電話で確認しました")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), Some("/returns?closed=1"));
    assert_eq!(fake.calls().last().unwrap().arg, "ret-1|電話で確認しました");
    let a = get("/returns?closed=1").session(STAFF).send(&ui).await;
    assert!(
        a.body.contains("返戻を「完了」にしました"),
        "the clerk is told it was done"
    );
    // The list shown was another office: back to it.
    let a = post("/returns/ret-1/close")
        .with_user(STAFF)
        .field("note", "済")
        .field("office", OFFICE_EXTRA)
        .send(&ui)
        .await;
    assert_eq!(
        a.location(),
        Some(format!("/returns?office={OFFICE_EXTRA}&closed=1").as_str())
    );
    // Only open items have a close form.
    let a = get("/returns").session(STAFF).send(&ui).await;
    assert_eq!(a.body.matches("/close\"").count(), 1);
}

#[tokio::test]
async fn notice_downloads_are_attachments_with_both_names() {
    let (ui, fake) = ui();
    let a = get("/notices/n-1/original").session(STAFF).send(&ui).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.header("content-type"),
        Some("text/csv; charset=Shift_JIS")
    );
    let cd = a.header("content-disposition").unwrap();
    assert!(cd.starts_with("attachment; "), "{cd}");
    assert!(cd.contains("filename=\"____ 202611.csv\""), "{cd}");
    assert!(
        cd.contains("filename*=UTF-8''%E8%BF%94%E6%88%BB%E4%B8%80%E8%A6%A7%20202611.csv"),
        "{cd}"
    );
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_security_headers(&a);
    assert_eq!(a.body, "a,b\r\n");
    let a = get("/notices/n-1/utf8").session(STAFF).send(&ui).await;
    assert_eq!(a.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        fake.calls()
            .into_iter()
            .filter(|c| c.method == "notice_download")
            .map(|c| c.arg)
            .collect::<Vec<_>>(),
        vec!["n-1|false".to_string(), "n-1|true".to_string()]
    );
    let a = get("/notices/missing/utf8").session(STAFF).send(&ui).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn pages_escape_backend_text() {
    let (ui, _) = ui();
    let a = get("/").session(STAFF).send(&ui).await;
    assert!(a.body.contains("&lt;script&gt;"));
    assert!(!a.body.contains("<script>"));
    let a = get("/notices/n-text").session(STAFF).send(&ui).await;
    assert!(a.body.contains("&lt;script&gt;"));
    assert!(!a.body.contains("<script>"));
}

#[tokio::test]
async fn forms_other_than_urlencoded_are_refused() {
    let (ui, fake) = ui();
    let a = post("/office")
        .session(ADMIN)
        .header("content-type", "multipart/form-data; boundary=x")
        .body(b"--x--".to_vec())
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(fake.mutating_calls().is_empty());
}

#[tokio::test]
async fn the_office_switcher_shows_only_with_several_offices() {
    let (ui, _) = ui();
    let a = get("/").session(CORP).send(&ui).await;
    assert!(a.body.contains("action=\"/office\""));
    let a = get("/").session(STAFF).send(&ui).await;
    assert!(!a.body.contains("action=\"/office\""));
}

#[tokio::test]
async fn the_home_page_shows_the_window_the_offices_the_alerts_and_the_chart() {
    let (ui, fake) = ui();
    let a = get("/").session(CORP).send(&ui).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(fake.calls().iter().any(|c| c.method == "dashboard"));
    let b = &a.body;
    // The window, in days and hours, and what is held for it.
    assert!(b.contains("受付中"), "{b}");
    assert!(b.contains("あと 8日 3時間"), "{b}");
    assert!(b.contains("2 件"), "{b}");
    // One row per office of the principal, linking to its lists.
    for n in [OFFICE_A, OFFICE_B] {
        assert!(b.contains(&format!("/submissions?office={n}")), "{n}");
        assert!(b.contains(&format!("/returns?office={n}")), "{n}");
    }
    // Alerts are escaped and link where they help; a nearly full disk is marked.
    assert!(
        b.contains("証明書の期限が近づいています &lt;script&gt;"),
        "{b}"
    );
    assert!(!b.contains("<script"));
    assert!(b.contains(r#"<a href="/offices">"#));
    assert!(b.contains(r#"<dd class="bad">0.9 GB（6%）</dd>"#), "{b}");
    // The chart is inline SVG with one pair of bars per month and a text equivalent.
    assert_eq!(b.matches(r#"<rect class="sent""#).count(), 2);
    assert_eq!(b.matches(r#"<rect class="returned""#).count(), 2);
    assert!(b.contains("202610: 送信 12 件、返戻 2 件。"), "{b}");
    assert!(b.contains("2026年10月"));
    assert!(b.contains(">11月<"));
}

#[tokio::test]
async fn healthz_answers_anyone_and_metrics_need_loopback_or_the_token() {
    let (ui, _) = ui();
    let h = get("/healthz").send(&ui).await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.header("content-type"), Some("application/json"));
    assert_eq!(h.header("cache-control"), Some("no-store"));
    let v: serde_json::Value = serde_json::from_str(&h.body).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["checks"][0]["name"], "store");

    // The test client is on the LAN (192.0.2.10), not loopback.
    let refused = get("/metrics").send(&ui).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    assert!(!refused.body.contains("kaigo_relay_"));
    let wrong = get("/metrics")
        .header("authorization", "Bearer not-the-token")
        .send(&ui)
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let ok = get("/metrics")
        .header("authorization", "Bearer sesame-sesame-sesame")
        .send(&ui)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        ok.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(ok.body.contains("# TYPE kaigo_relay_submissions gauge\n"));
    assert!(
        ok.body
            .contains("kaigo_relay_submissions{state=\"queued\"} 2\n")
    );
    assert_security_headers(&ok);
}

#[tokio::test]
async fn the_certificate_page_explains_the_install_and_offers_the_ca() {
    let (ui, _) = ui();
    let page = get("/certificate").send(&ui).await;
    assert_eq!(page.status, StatusCode::OK);
    for text in [
        "AB:CD:EF",
        "Windows",
        "macOS",
        "信頼されたルート証明機関",
        "常に信頼",
    ] {
        assert!(page.body.contains(text), "{text}");
    }
    assert!(page.body.contains("&lt;script&gt;"), "names are escaped");
    let file = get("/certificate/kaigo-relay-ca.crt").send(&ui).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(
        file.header("content-type"),
        Some("application/x-x509-ca-cert")
    );
    assert!(
        file.header("content-disposition")
            .unwrap()
            .contains("kaigo-relay-ca.crt")
    );
    assert!(file.body.starts_with("-----BEGIN CERTIFICATE-----"));
    // The login page links to it, for the first visit with a warning.
    let login = get("/login").send(&ui).await;
    assert!(login.body.contains(r#"href="/certificate""#));
}

#[tokio::test]
async fn list_filters_reach_the_backend_checked_and_the_pager_keeps_them() {
    let (ui, fake) = ui();
    let a = get(&format!(
        "/notices?office={OFFICE_A}&month=202611&kind=7411&unread=1&page=2"
    ))
    .session(STAFF)
    .send(&ui)
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        fake.calls().last().unwrap().arg,
        format!("{OFFICE_A}|202611|7411||true|2")
    );
    // The form shows the filters again, and both pager links carry them.
    assert!(
        a.body
            .contains("<option value=\"202611\" selected>2026年11月</option>")
    );
    assert!(
        a.body
            .contains("id=\"filter-unread\" name=\"unread\" value=\"1\" checked")
    );
    let keep = format!("office={OFFICE_A}&amp;month=202611&amp;kind=7411&amp;unread=1");
    assert!(
        a.body.contains(&format!("/notices?{keep}&amp;page=1")),
        "{}",
        a.body
    );
    assert!(a.body.contains(&format!("/notices?{keep}&amp;page=3")));
    assert!(a.body.contains("2 / 3 ページ（全 250 件）"));
    assert!(a.body.contains("未読"), "an unread notice is marked");
    assert!(
        a.body.contains("/notices/n-pdf/view"),
        "a PDF opens in the browser"
    );

    // A value no form sends is dropped, and the clerk is told.
    let a = get(&format!(
        "/returns?office={OFFICE_A}&month=2026-11&status=%3Cx%3E&kind=%E7%B5%A6&page=-1"
    ))
    .session(STAFF)
    .send(&ui)
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        fake.calls().last().unwrap().arg,
        format!("{OFFICE_A}||給||false|1")
    );
    assert!(a.body.contains("絞り込みの条件に正しくない値があった"));
    assert!(
        a.body.contains("給付管理票"),
        "the 種別 column says what was returned"
    );

    let a = get(&format!("/submissions?office={OFFICE_A}&status=refused"))
        .session(STAFF)
        .send(&ui)
        .await;
    assert_eq!(
        fake.calls().last().unwrap().arg,
        format!("{OFFICE_A}|||refused|false|1")
    );
    assert!(!a.body.contains("絞り込みの条件に正しくない値"));
}

#[tokio::test]
async fn returns_export_as_cp932_for_excel_and_as_utf8() {
    let (ui, fake) = ui();
    let a = get(&format!("/returns/export?office={OFFICE_A}&month=202611"))
        .session(STAFF)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.header("content-type"),
        Some("text/csv; charset=Shift_JIS")
    );
    let disposition = a.header("content-disposition").unwrap();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(
        disposition.contains("1310000001_202611.csv"),
        "{disposition}"
    );
    // Every row, not a page.
    assert_eq!(
        fake.calls().last().unwrap().arg,
        format!("{OFFICE_A}|202611|||false|")
    );
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&a.bytes);
    assert!(!bad, "valid CP932");
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(lines[0].starts_with("事業所番号,審査月,種別,保険者番号,被保険者番号,氏名"));
    assert_eq!(lines.len(), 4, "header, two rows, the final CRLF: {text}");
    assert!(lines[1].contains("給付管理票"));
    // The nasty name is one quoted field, its quotes doubled.
    assert!(
        lines[1].contains("\"<script>alert(\"\"x\"\")</script>&'\""),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains("電話で確認済み"));

    let a = get(&format!("/returns/export?office={OFFICE_A}&encoding=utf8"))
        .session(STAFF)
        .send(&ui)
        .await;
    assert_eq!(a.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(
        a.bytes.starts_with(b"\xEF\xBB\xBF"),
        "a BOM, so that Excel reads UTF-8"
    );
    assert!(a.body.contains("事業所番号,審査月"));
    assert!(
        a.header("content-disposition")
            .unwrap()
            .contains("UTF-8.csv")
    );

    // Another corporation's office: not found, as everywhere.
    let a = get(&format!("/returns/export?office={OFFICE_FOREIGN}"))
        .session(STAFF)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn resend_and_withdraw_show_the_submission_with_what_happened() {
    let (ui, fake) = ui();
    let a = get("/submissions/sub-1").session(STAFF).send(&ui).await;
    assert!(a.body.contains("action=\"/submissions/sub-1/withdraw\""));
    assert!(
        !a.body.contains("/submissions/sub-1/resend"),
        "the fake's file is not resendable"
    );

    let a = post("/submissions/sub-1/withdraw")
        .with_user(STAFF)
        .send(&ui)
        .await;
    assert_eq!(
        a.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not without the tick"
    );
    assert!(a.body.contains("チェックを入れてから"));
    assert!(!fake.called("withdraw"));
    let a = post("/submissions/missing/withdraw")
        .with_user(STAFF)
        .send(&ui)
        .await;
    assert_eq!(
        a.status,
        StatusCode::NOT_FOUND,
        "another office's: not found first"
    );

    let a = post("/submissions/sub-1/withdraw")
        .with_user(STAFF)
        .field("confirm", "1")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.page().as_deref(), Some("submission_detail"));
    assert!(
        a.body.contains("取消：&lt;script&gt;"),
        "escaped: {}",
        a.body
    );
    assert!(fake.called("withdraw"));

    let a = post("/submissions/refused/resend")
        .with_user(STAFF)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("再送："));
    assert!(a.body.contains("class=\"message error\""));

    let a = post("/submissions/missing/resend")
        .with_user(STAFF)
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_pdf_notice_opens_inline() {
    let (ui, _) = ui();
    let a = get("/notices/n-1/view").session(STAFF).send(&ui).await;
    assert_eq!(a.status, StatusCode::OK);
    let d = a.header("content-disposition").unwrap();
    assert!(d.starts_with("inline;"), "{d}");
    assert!(
        a.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'"),
        "a CSV keeps the strict policy"
    );
    let a = get("/notices/n-1/original").session(STAFF).send(&ui).await;
    assert!(
        a.header("content-disposition")
            .unwrap()
            .starts_with("attachment;")
    );

    // A PDF: Chromium's viewer needs a policy without default-src 'none' (crbug 271452);
    // it still may not be framed, and is never sniffed as anything else.
    let a = get("/notices/n-pdf/view").session(STAFF).send(&ui).await;
    assert_eq!(a.header("content-type"), Some("application/pdf"));
    let csp = a.header("content-security-policy").unwrap();
    assert!(!csp.contains("default-src"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(a.header("x-frame-options"), Some("DENY"));
}

#[tokio::test]
async fn english_is_one_click_away_and_kept_in_a_cookie() {
    let (ui, _) = ui();
    let a = get("/notices?office=1310000001")
        .session(STAFF)
        .send(&ui)
        .await;
    assert!(a.body.contains("<html lang=\"ja\" class=\"lang-ja\">"));
    let link = "/lang?to=en&amp;back=%2Fnotices%3Foffice%3D1310000001";
    assert!(a.body.contains(link), "the switch comes back here");

    let a = get("/lang?to=en&back=%2Fnotices%3Foffice%3D1310000001")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), Some("/notices?office=1310000001"));
    let cookie = a.set_cookie("kaigo_lang").unwrap();
    assert!(cookie.starts_with("kaigo_lang=en;"), "{cookie}");
    assert!(cookie.contains("Secure"));

    let a = get("/notices?office=1310000001")
        .session(STAFF)
        .cookie("kaigo_lang", "en")
        .send(&ui)
        .await;
    assert!(a.body.contains("<html lang=\"en\" class=\"lang-en\">"));
    assert!(a.body.contains("日本語で表示"));
    // Every Japanese text that has an English one is marked, so that English mode hides it.
    assert!(
        a.body
            .contains("<span class=\"ja\">通知文書</span><span class=\"en\">Notices</span>")
    );

    // Only back to this server.
    for evil in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil",
        "javascript:alert(1)",
    ] {
        let url = format!(
            "/lang?to=en&back={}",
            form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
        );
        let a = get(&url).send(&ui).await;
        assert_eq!(a.location(), Some("/"), "{evil}");
    }
}

#[tokio::test]
async fn backups_page_run_now_and_key_confirmation() {
    let (ui, fake) = ui();
    // Administrators only, and only they see the link.
    for who in [STAFF, CORP] {
        let a = get("/backups").session(who).send(&ui).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        let home = get("/").session(who).send(&ui).await;
        assert!(!home.body.contains("href=\"/backups\""));
    }
    assert!(!fake.called("backups"));
    let home = get("/").session(ADMIN).send(&ui).await;
    assert!(home.body.contains("href=\"/backups\""));

    let a = get("/backups").session(ADMIN).send(&ui).await;
    assert_eq!(a.status, StatusCode::OK);
    // Both sites, the failing one marked, its error escaped.
    assert!(a.body.contains("usb") && a.body.contains("s3://bucket/office"));
    assert!(a.body.contains("class=\"needs-attention\""));
    assert!(a.body.contains("#12 2026年12月3日 09:00"));
    assert!(!a.body.contains(NASTY));
    assert!(a.body.contains("&lt;script&gt;"));
    // The key is not confirmed yet: the page says so and offers the export and the form.
    assert!(a.body.contains("鍵の書き出しがまだ確認されていません"));
    assert!(a.body.contains("href=\"/backups/key\""));

    // Back up now: the backend is asked, and the page says it started.
    let a = post("/backups/run").with_user(ADMIN).send(&ui).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location(), Some("/backups?started=1"));
    assert!(fake.called("backup_now"));
    let a = get("/backups?started=1").session(ADMIN).send(&ui).await;
    assert!(a.body.contains("バックアップを始めました"));

    // The key file downloads as an attachment.
    let a = get("/backups/key").session(ADMIN).send(&ui).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("key-id: 0123456789abcdef"));

    // A wrong key ID is refused with a reason; the right one is recorded.
    let a = post("/backups/key/confirm")
        .with_user(ADMIN)
        .field("key_id", "ffffffffffffffff")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("鍵IDが違います"));
    let a = post("/backups/key/confirm")
        .with_user(ADMIN)
        .field("key_id", " 0123456789abcdef ")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("記録しました"));
    assert_eq!(
        fake.calls()
            .iter()
            .filter(|c| c.method == "confirm_backup_key")
            .map(|c| c.arg.clone())
            .collect::<Vec<_>>(),
        vec!["ffffffffffffffff".to_owned(), "0123456789abcdef".to_owned()]
    );

    // Restore needs the tick; a bad copy number is refused before the backend is asked.
    let a = post("/backups/restore")
        .with_user(ADMIN)
        .field("site", "usb")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("確認の欄にチェック"));
    let a = post("/backups/restore")
        .with_user(ADMIN)
        .field("site", "usb")
        .field("seq", "12a")
        .field("confirm", "1")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!fake.called("restore_backup"));
    let a = post("/backups/restore")
        .with_user(ADMIN)
        .field("site", "cloud")
        .field("confirm", "1")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(a.body.contains("戻せませんでした"));
    let a = post("/backups/restore")
        .with_user(ADMIN)
        .field("site", "usb")
        .field("seq", "12")
        .field("confirm", "1")
        .send(&ui)
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("装置を再起動しています"));
    let asked: Vec<String> = fake
        .calls()
        .iter()
        .filter(|c| c.method == "restore_backup")
        .map(|c| c.arg.clone())
        .collect();
    assert_eq!(
        asked,
        vec!["cloud#None".to_owned(), "usb#Some(12)".to_owned()]
    );
}

/// The `href` targets of a page that lead into the help.
fn help_links(body: &str) -> Vec<String> {
    body.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|h| h.starts_with("/help"))
        .map(|h| h.replace("&amp;", "&"))
        .collect()
}

/// Every help link on every page (as the administrator and as staff, in both languages), and
/// every link in the help pages themselves, opens a page that exists, at a section that
/// exists; and every message box and error page carries such a link.
#[tokio::test]
async fn every_help_link_in_the_ui_resolves() {
    let (ui, _) = ui();
    let mut todo: Vec<(String, String)> = Vec::new();
    for (route, a) in walk_all_routes(&ui).await {
        if a.status == StatusCode::OK && a.body.contains("<html") {
            assert!(
                a.body.contains("class=\"help-link\"><a href=\"/help"),
                "{route}: no help link in the header"
            );
            // Every error or warning box explains itself.
            for part in a
                .body
                .split("class=\"message ")
                .skip(1)
                .filter(|p| p.starts_with("error") || p.starts_with("warning"))
            {
                let head = part.split("</div>").next().unwrap_or(part);
                let head = head.split("</p>\n").take(4).collect::<String>();
                assert!(
                    head.contains("href=\"/help"),
                    "{route}: a message without a help link: {head}"
                );
            }
        }
        for link in help_links(&a.body) {
            todo.push((route.clone(), link));
        }
    }
    // Pages a staff member sees, and the error pages.
    for path in ["/", "/submissions/sub-1", "/no-such-page", "/accounts"] {
        let a = get(path).session(STAFF).send(&ui).await;
        for link in help_links(&a.body) {
            todo.push((format!("GET {path} (staff)"), link));
        }
    }
    let a = get("/no-such-page").session(STAFF).send(&ui).await;
    assert!(a.body.contains("<p class=\"help\"><a href=\"/help"));
    let detail = get("/submissions/sub-1").session(ADMIN).send(&ui).await;
    assert!(
        detail
            .body
            .contains("href=\"/help/code/data.insured_number\""),
        "a finding links to its entry"
    );
    assert!(
        detail
            .body
            .contains("href=\"/help/code/relay.accepted_with_returns\""),
        "the note links to its entry"
    );
    assert!(
        detail
            .body
            .contains("href=\"/help/code/gateway.bad_insurer_number\"")
            && detail.body.contains("href=\"/help/code/gateway.other\""),
        "the federation's reasons link to theirs, an unknown one to gateway.other"
    );
    let backups = get("/backups").session(ADMIN).send(&ui).await;
    assert!(
        backups
            .body
            .matches("href=\"/help/code/backup.site_write\"")
            .count()
            >= 2,
        "a site's error and a run's error link to their entry"
    );
    let alerts = get("/alerts").session(ADMIN).send(&ui).await;
    assert!(
        alerts
            .body
            .contains("href=\"/help/code/alerts.mail_refused\""),
        "a failed delivery links to its entry"
    );
    let system = get("/system").session(ADMIN).send(&ui).await;
    assert!(
        system.body.contains("href=\"/help/code/system.disk_low\""),
        "a log line that names a code links to it"
    );

    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut checked = 0;
    while let Some((from, link)) = todo.pop() {
        if !seen.insert(link.clone()) {
            continue;
        }
        let (path, fragment) = match link.split_once('#') {
            Some((p, f)) => (p.to_owned(), Some(f.to_owned())),
            None => (link.clone(), None),
        };
        for lang in ["ja", "en"] {
            let a = get(&path).cookie("kaigo_lang", lang).send(&ui).await;
            assert_eq!(a.status, StatusCode::OK, "{from}: {link} ({lang})");
            if let Some(f) = &fragment {
                assert!(
                    a.body.contains(&format!("id=\"{f}\"")),
                    "{from}: {link} ({lang}): no section #{f}"
                );
            }
            for next in help_links(&a.body) {
                let next = if next.starts_with('#') {
                    format!("{path}{next}")
                } else {
                    next
                };
                todo.push((link.clone(), next));
            }
            checked += 1;
        }
    }
    assert!(
        seen.len() > 150,
        "the walk reached only {} help links",
        seen.len()
    );
    assert!(checked > 300);
}

#[tokio::test]
async fn help_pages_open_without_a_session_and_keep_the_menu_with_one() {
    let (ui, fake) = ui();
    let a = get("/help/login").send(&ui).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        !a.body.contains("href=\"/submissions\""),
        "no menu without a session"
    );
    assert_security_headers(&a);
    let a = get("/help/submissions").session(STAFF).send(&ui).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.body.contains("href=\"/submissions\""),
        "the menu of the session"
    );
    assert!(a.body.contains("id=\"refused\""));
    // Unknown topics and codes are 404, not an empty page.
    for path in ["/help/nothing", "/help/code/no.such_code"] {
        assert_eq!(
            get(path).send(&ui).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // The manual in each language.
    let ja = get("/help/manual").send(&ui).await;
    let en = get("/help/manual")
        .cookie("kaigo_lang", "en")
        .send(&ui)
        .await;
    assert!(ja.body.contains("id=\"install\"") && en.body.contains("id=\"install\""));
    assert_ne!(ja.body, en.body);
    assert!(
        !ja.body.contains("<script"),
        "no script in rendered Markdown"
    );
    assert!(fake.mutating_calls().is_empty());
}
