//! Rendering: the embedded tera templates (compiled once), the context every page shares (the
//! user, the stylesheet's address, a message), the error pages, and the response shapes
//! (HTML, redirect, download, stylesheet).
//!
//! Invariants kept here: templates are autoescaped (every name ends in `.html`) and a variable
//! a template names but the context lacks is an error, never an empty string; no page holds
//! inline script or style (the CSP forbids both); a failed render answers a fixed 500 page
//! without details; the user view carries no session token and no password.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;
use tera::{Context, Kwargs, State, Tera};

use crate::backend::{OfficeRef, Principal};
use crate::routes;

/// Every template, embedded; the stem of the name is the page's CSS class (`page-login`).
pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("pager.html", include_str!("../templates/pager.html")),
    (
        "office_select.html",
        include_str!("../templates/office_select.html"),
    ),
    ("login.html", include_str!("../templates/login.html")),
    ("help.html", include_str!("../templates/help.html")),
    ("help_doc.html", include_str!("../templates/help_doc.html")),
    (
        "help_codes.html",
        include_str!("../templates/help_codes.html"),
    ),
    (
        "help_code.html",
        include_str!("../templates/help_code.html"),
    ),
    (
        "login_password.html",
        include_str!("../templates/login_password.html"),
    ),
    ("home.html", include_str!("../templates/home.html")),
    (
        "certificate.html",
        include_str!("../templates/certificate.html"),
    ),
    ("account.html", include_str!("../templates/account.html")),
    (
        "account_password.html",
        include_str!("../templates/account_password.html"),
    ),
    ("accounts.html", include_str!("../templates/accounts.html")),
    (
        "account_new.html",
        include_str!("../templates/account_new.html"),
    ),
    (
        "account_detail.html",
        include_str!("../templates/account_detail.html"),
    ),
    (
        "one_time_password.html",
        include_str!("../templates/one_time_password.html"),
    ),
    ("offices.html", include_str!("../templates/offices.html")),
    (
        "office_detail.html",
        include_str!("../templates/office_detail.html"),
    ),
    (
        "submissions.html",
        include_str!("../templates/submissions.html"),
    ),
    (
        "submission_detail.html",
        include_str!("../templates/submission_detail.html"),
    ),
    ("notices.html", include_str!("../templates/notices.html")),
    (
        "notice_detail.html",
        include_str!("../templates/notice_detail.html"),
    ),
    ("returns.html", include_str!("../templates/returns.html")),
    ("audit.html", include_str!("../templates/audit.html")),
    ("system.html", include_str!("../templates/system.html")),
    ("backups.html", include_str!("../templates/backups.html")),
    ("alerts.html", include_str!("../templates/alerts.html")),
    (
        "restarting.html",
        include_str!("../templates/restarting.html"),
    ),
    ("error.html", include_str!("../templates/error.html")),
];

/// The one stylesheet.
pub(crate) const STYLESHEET: &str = include_str!("../static/style.css");

/// Shown when even the error page cannot be rendered.
const FALLBACK_500: &str = "<!DOCTYPE html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\">\
<title>エラー / Error</title></head><body><h1>内部エラーが発生しました</h1>\
<p>Internal error. しばらくしてからもう一度お試しください。 Please try again later.</p>\
<p><a href=\"/\">ホームへ / Home</a></p></body></html>\n";

/// A message shown above a page's content, Japanese first.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Msg {
    /// `info` or `error` (a CSS class).
    pub kind: &'static str,
    /// Japanese.
    pub ja: String,
    /// English.
    pub en: String,
    /// Where it is explained; without one the page links to its screen's help.
    pub help: Option<String>,
}

impl Msg {
    pub(crate) fn info(ja: &str, en: &str) -> Msg {
        Msg {
            kind: "info",
            ja: ja.to_owned(),
            en: en.to_owned(),
            help: None,
        }
    }

    pub(crate) fn error(ja: &str, en: &str) -> Msg {
        Msg {
            kind: "error",
            ja: ja.to_owned(),
            en: en.to_owned(),
            help: None,
        }
    }

    /// The message explained by the catalogue entry `code`, if there is one.
    pub(crate) fn coded(mut self, code: Option<crate::help::Code>) -> Msg {
        if let Some(c) = code {
            self.help = Some(c.href());
        }
        self
    }
}

/// What the header shows of the logged-in user (no session token, only the per-session CSRF
/// token that the page's forms must carry).
#[derive(Debug, Clone, Serialize)]
struct UserView<'a> {
    account_id: &'a str,
    display_name: &'a str,
    role_ja: &'static str,
    role_en: &'static str,
    must_change_password: bool,
    csrf_token: &'a str,
    offices: &'a [OfficeRef],
    current_office: Option<&'a OfficeRef>,
    may_manage_accounts: bool,
    is_admin: bool,
}

impl<'a> UserView<'a> {
    fn of(p: &'a Principal) -> UserView<'a> {
        UserView {
            account_id: &p.account_id,
            display_name: &p.display_name,
            role_ja: p.role.label_ja(),
            role_en: p.role.label_en(),
            must_change_password: p.must_change_password,
            csrf_token: &p.csrf_token,
            offices: &p.offices,
            current_office: p.current_office.as_ref(),
            may_manage_accounts: p.may_manage_accounts,
            is_admin: p.is_admin,
        }
    }
}

/// A page to render: the template, the status and the context.
#[derive(Debug)]
pub(crate) struct View {
    template: &'static str,
    status: StatusCode,
    ctx: Context,
}

impl View {
    /// A page of `template` for `user` (none on the login pages), status 200, no message.
    pub(crate) fn new(template: &'static str, user: Option<&Principal>) -> View {
        let mut ctx = Context::new();
        ctx.insert("user", &user.map(UserView::of));
        ctx.insert("message", &None::<Msg>);
        let page = template.trim_end_matches(".html");
        ctx.insert("page", page);
        let help_href = if page.starts_with("help") {
            "/help".to_owned()
        } else {
            format!("/help/{}", crate::help::topic_of(page))
        };
        ctx.insert("help_href", &help_href);
        View {
            template,
            status: StatusCode::OK,
            ctx,
        }
    }

    pub(crate) fn status(mut self, status: StatusCode) -> View {
        self.status = status;
        self
    }

    pub(crate) fn with<T: Serialize + ?Sized>(mut self, key: &'static str, value: &T) -> View {
        self.ctx.insert(key, value);
        self
    }

    pub(crate) fn message(self, msg: Msg) -> View {
        self.with("message", &msg)
    }
}

/// The standard error and refusal pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    NotFound,
    MethodNotAllowed,
    Forbidden,
    /// The session's CSRF token did not match.
    FormExpired,
    /// Origin / Sec-Fetch-Site said another site.
    CrossSite,
    TooLarge,
    UnsupportedForm,
    BadRequest,
    Timeout,
    Internal,
    /// A backend `Invalid` where there is no form to show again.
    Invalid {
        ja: String,
        en: String,
        code: Option<crate::help::Code>,
    },
}

impl Problem {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Problem::NotFound => StatusCode::NOT_FOUND,
            Problem::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Problem::Forbidden | Problem::FormExpired | Problem::CrossSite => StatusCode::FORBIDDEN,
            Problem::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Problem::UnsupportedForm => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Problem::BadRequest => StatusCode::BAD_REQUEST,
            Problem::Timeout => StatusCode::REQUEST_TIMEOUT,
            Problem::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Problem::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// Where the help explains this refusal.
    fn help(&self) -> String {
        match self {
            Problem::Forbidden => crate::help::code::ACCOUNTS_FORBIDDEN.href(),
            Problem::FormExpired => crate::help::code::ACCOUNTS_CSRF.href(),
            Problem::CrossSite => crate::help::code::ACCOUNTS_CROSS_SITE.href(),
            Problem::Internal => crate::help::code::SYSTEM_INTERNAL_ERROR.href(),
            Problem::Invalid { code: Some(c), .. } => c.href(),
            _ => "/help".to_owned(),
        }
    }

    /// (title ja, title en, message ja, message en).
    fn texts(&self) -> (&str, &str, &str, &str) {
        match self {
            Problem::NotFound => (
                "ページが見つかりません",
                "Not found",
                "お探しのページまたはデータは見つかりませんでした。存在しないか、このアカウントでは見られないものです。",
                "The page or record was not found, or this account may not see it.",
            ),
            Problem::MethodNotAllowed => (
                "この操作はできません",
                "Method not allowed",
                "このページではこの操作はできません。画面のリンクやボタンから操作してください。",
                "This page does not accept this kind of request. Use the links and buttons on the pages.",
            ),
            Problem::Forbidden => (
                "権限がありません",
                "Forbidden",
                "このアカウントには、この操作の権限がありません。必要な場合は管理者に依頼してください。",
                "This account may not do this. Ask an administrator if you need it.",
            ),
            Problem::FormExpired => (
                "フォームの有効期限が切れました",
                "The form has expired",
                "画面を開いてから時間がたったか、別の画面でログインし直したため、この操作は受け付けられませんでした。ページを再読み込みしてから、もう一度操作してください。",
                "The form has expired. Reload the page and try again.",
            ),
            Problem::CrossSite => (
                "この操作は受け付けられません",
                "Request refused",
                "この操作は、この装置の画面以外から送られたため受け付けませんでした。kaigo-relay の画面を開き直して操作してください。",
                "This request did not come from this appliance's own pages, so it was refused.",
            ),
            Problem::TooLarge => (
                "送信内容が大きすぎます",
                "Request too large",
                "送信された内容が大きすぎます（64 KiB まで）。入力を短くしてください。",
                "The request body is too large (64 KiB at most).",
            ),
            Problem::UnsupportedForm => (
                "送信形式が違います",
                "Unsupported form",
                "この形式の送信は受け付けていません。画面のフォームから送信してください。",
                "Only the pages' own forms are accepted.",
            ),
            Problem::BadRequest => (
                "送信を読み取れませんでした",
                "Bad request",
                "送信内容を読み取れませんでした。もう一度操作してください。",
                "The request could not be read. Please try again.",
            ),
            Problem::Timeout => (
                "時間切れです",
                "Request timeout",
                "送信に時間がかかりすぎたため中断しました。もう一度操作してください。",
                "The request took too long to arrive. Please try again.",
            ),
            Problem::Internal => (
                "内部エラーが発生しました",
                "Internal error",
                "装置の内部でエラーが発生しました。しばらくしてからもう一度お試しください。続く場合は管理者に連絡してください。",
                "Something went wrong inside the appliance. Try again later; if it persists, tell the administrator.",
            ),
            Problem::Invalid { ja, en, .. } => {
                ("入力内容を確認してください", "Check your input", ja, en)
            }
        }
    }
}

/// The cookie that keeps a browser's language choice (not a secret: a display preference).
pub const LANG_COOKIE: &str = "kaigo_lang";

/// The language a browser chose: Japanese with English under it (the default), or English
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Lang {
    #[default]
    Ja,
    En,
}

impl Lang {
    /// The choice in the request's cookie.
    pub(crate) fn of(headers: &http::HeaderMap) -> Lang {
        match crate::security::cookie(headers, LANG_COOKIE) {
            Some("en") => Lang::En,
            _ => Lang::Ja,
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }
}

/// What every page of one request shows besides its own data: the language and where it is
/// (for the language switch to come back to).
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestView {
    pub lang: Lang,
    /// Path and query of the request.
    pub here: String,
}

tokio::task_local! {
    /// The request being answered (set by `AdminUi::handle` around the dispatch).
    pub(crate) static REQUEST: RequestView;
}

/// The compiled templates.
#[derive(Debug)]
pub(crate) struct Pages {
    tera: Tera,
    css_href: String,
}

impl Pages {
    /// Compiles every embedded template; an error in any of them fails here.
    pub(crate) fn new() -> anyhow::Result<Pages> {
        let mut tera = Tera::new();
        tera.register_filter("segment", |s: String, _: Kwargs, _: &State| {
            routes::segment(&s)
        });
        tera.register_filter("help_href", |code: String, _: Kwargs, _: &State| {
            crate::help::href(&code)
        });
        tera.add_raw_templates(TEMPLATES.iter().copied())
            .map_err(|e| anyhow::anyhow!("admin UI templates: {e:#}"))?;
        Ok(Pages {
            tera,
            css_href: format!("/static/style.css?v={:016x}", fnv1a(STYLESHEET.as_bytes())),
        })
    }

    /// Renders a view; a render error is logged and answers the fixed 500 page.
    pub(crate) fn render(&self, view: View) -> Response<Full<Bytes>> {
        let View {
            template,
            status,
            mut ctx,
        } = view;
        ctx.insert("css_href", &self.css_href);
        let request = REQUEST.try_with(Clone::clone).unwrap_or_default();
        ctx.insert("lang", request.lang.code());
        let back: String = form_urlencoded::byte_serialize(request.here.as_bytes()).collect();
        ctx.insert("lang_back", &back);
        match self.tera.render(template, &ctx) {
            Ok(body) => html(status, body),
            Err(e) => {
                tracing::error!(template, error = %ErrorChain(&e), "admin UI: a page failed to render");
                html(StatusCode::INTERNAL_SERVER_ERROR, FALLBACK_500.to_owned())
            }
        }
    }

    /// An error page.
    pub(crate) fn problem(
        &self,
        user: Option<&Principal>,
        problem: &Problem,
    ) -> Response<Full<Bytes>> {
        let (title_ja, title_en, message_ja, message_en) = problem.texts();
        let status = problem.status();
        let view = View::new("error.html", user)
            .status(status)
            .with("code", &status.as_u16())
            .with("title_ja", title_ja)
            .with("title_en", title_en)
            .with("message_ja", message_ja)
            .with("message_en", message_en)
            .with("problem_help", &problem.help());
        self.render(view)
    }
}

/// A tera error with its causes (tera puts the useful part in the source chain).
struct ErrorChain<'a>(&'a tera::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// 64-bit FNV-1a, for the stylesheet's cache-busting version.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// An HTML page.
pub(crate) fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    response(status, "text/html; charset=utf-8", Bytes::from(body))
}

/// `303 See Other` to a path of this site (already encoded).
pub(crate) fn redirect(location: &str) -> Response<Full<Bytes>> {
    let mut r = response(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        Bytes::new(),
    );
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/"));
        }
    }
    r
}

/// The stylesheet, cacheable (its address carries a hash of its content).
pub(crate) fn stylesheet() -> Response<Full<Bytes>> {
    let mut r = response(
        StatusCode::OK,
        "text/css; charset=utf-8",
        Bytes::from_static(STYLESHEET.as_bytes()),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    r
}

/// A file download: `Content-Disposition: attachment` with an ASCII fallback name and the
/// UTF-8 name (RFC 6266 / RFC 8187).
pub(crate) fn download(
    file_name: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut r = response(
        StatusCode::OK,
        "application/octet-stream",
        Bytes::from(bytes),
    );
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    let disposition = content_disposition(file_name);
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// A file the browser shows itself (its PDF viewer, plain text): `Content-Disposition:
/// inline`, so that "save" still offers the right name.
pub(crate) fn inline(file_name: &str, content_type: &str, bytes: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = download(file_name, content_type, bytes);
    let disposition = content_disposition(file_name).replacen("attachment", "inline", 1);
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    if content_type.starts_with("application/pdf") {
        r.extensions_mut().insert(PdfViewer);
    }
    r
}

/// Marks a PDF shown inline: Chromium's PDF viewer is an embedded plugin page with inline
/// styles, which `default-src 'none'` blocks (crbug.com/271452), so such a response carries
/// [`crate::security::PDF_CSP`] instead of the page CSP.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PdfViewer;

pub(crate) fn content_disposition(file_name: &str) -> String {
    // The name only, never a path.
    let name = file_name
        .rsplit(['/', '\\'])
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("download");
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = routes::percent_encode(name, |b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            )
    });
    let mut out = String::new();
    let _ = write!(
        out,
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        assert!(Pages::new().is_ok());
    }

    #[test]
    fn disposition_has_both_names() {
        assert_eq!(
            content_disposition("返戻一覧 202611.csv"),
            "attachment; filename=\"____ 202611.csv\"; \
             filename*=UTF-8''%E8%BF%94%E6%88%BB%E4%B8%80%E8%A6%A7%20202611.csv"
        );
        assert_eq!(
            content_disposition("../a\"b.csv"),
            "attachment; filename=\"a_b.csv\"; filename*=UTF-8''a%22b.csv"
        );
    }

    #[test]
    fn a_missing_variable_is_an_error() {
        let Ok(pages) = Pages::new() else {
            panic!("templates")
        };
        // error.html without its variables: strictness is kept, the fallback page answers.
        let r = pages.render(View::new("error.html", None));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
