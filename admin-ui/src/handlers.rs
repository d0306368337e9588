//! The pages: one function per route, each turning a request into backend calls and a view.
//! By the time a handler runs, the dispatcher has matched the route, checked the origin of a
//! POST, resolved the session and its access, and checked the CSRF token.
//!
//! Invariants kept here: GET handlers call only the backend's read methods (`notice_download`
//! is a read the backend audits); every call passes the session's principal and the ID or
//! office number from the request unchanged, and the backend decides (invariant 7); a
//! password appears in a response only on the one-time-password page, to the person who set
//! it, and is never logged, put in a URL or echoed back into a form.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use crate::Inner;
use crate::backend::{
    AccountView, AlertPrefsForm, Backend, BackendError, Client, LoginOutcome, NewAccount,
    OfficeRef, Principal, Role, TestAlertRow,
};
use crate::forms::Form;
use crate::help;
use crate::lists::{self, chosen_office, office_ref};
use crate::pages::{self, Msg, Problem, View};
use crate::routes::{self, Route};
use crate::security::{self, LOGIN_COOKIE, SESSION_COOKIE};

type Resp = Response<Full<Bytes>>;

/// A request as the handlers see it.
#[derive(Debug)]
pub(crate) struct Req {
    pub parts: http::request::Parts,
    /// Path parameters, decoded, in pattern order.
    pub params: Vec<String>,
    pub query: Form,
    /// The POST form (empty for GET).
    pub form: Form,
    pub client: Client,
}

impl Req {
    fn param(&self) -> &str {
        self.params.first().map(String::as_str).unwrap_or("")
    }
}

/// Unwraps a backend result or answers its error page.
macro_rules! or_fail {
    ($inner:expr, $p:expr, $call:expr) => {
        match $call {
            Ok(v) => v,
            Err(e) => return $inner.fail($p, e),
        }
    };
}

/// Whether `s` is a path on this server (the language switch goes back only there): one
/// leading slash, no scheme or host, no backslash or control character.
fn local_path(s: &str) -> bool {
    s.starts_with('/')
        && !s.starts_with("//")
        && !s.contains('\\')
        && !s.chars().any(char::is_control)
        && s.len() <= 2048
}

/// The screen a help topic explains (for the "open this screen" link).
fn screen_of(topic: &str) -> Option<&'static str> {
    Some(match topic {
        "home" => "/",
        "login" => "/login",
        "submissions" => "/submissions",
        "notices" => "/notices",
        "returns" => "/returns",
        "offices" => "/offices",
        "alerts" => "/alerts",
        "accounts" => "/accounts",
        "account" => "/account",
        "system" => "/system",
        "certificate" => "/certificate",
        "backups" => "/backups",
        "audit" => "/audit",
        _ => return None,
    })
}

/// The roles a principal may pick on the new-account form (the backend decides again).
fn creatable_roles(p: &Principal) -> &'static [Role] {
    if p.is_admin {
        &[
            Role::SystemAdmin,
            Role::Corporation,
            Role::Office,
            Role::Staff,
        ]
    } else {
        match p.role {
            Role::SystemAdmin => &[
                Role::SystemAdmin,
                Role::Corporation,
                Role::Office,
                Role::Staff,
            ],
            Role::Corporation => &[Role::Office, Role::Staff],
            Role::Office => &[Role::Staff],
            Role::Staff => &[],
        }
    }
}

fn role_value(r: Role) -> &'static str {
    match r {
        Role::SystemAdmin => "system_admin",
        Role::Corporation => "corporation",
        Role::Office => "office",
        Role::Staff => "staff",
    }
}

fn parse_role(s: &str) -> Option<Role> {
    [
        Role::SystemAdmin,
        Role::Corporation,
        Role::Office,
        Role::Staff,
    ]
    .into_iter()
    .find(|r| role_value(*r) == s)
}

#[derive(Debug, Serialize)]
struct RoleOption {
    value: &'static str,
    ja: &'static str,
    en: &'static str,
    selected: bool,
}

/// One office on a form, with whether each of its choices is on.
#[derive(Debug, Serialize)]
struct OfficeChoice<'a> {
    number: &'a str,
    name: &'a str,
    /// Selected as an office account's office.
    office: bool,
    /// Granted (staff).
    grant: bool,
    /// One of a new corporation's offices.
    corporation: bool,
}

/// What the new-account form shows again after an error (no password is ever in it).
#[derive(Debug, Default, Serialize)]
struct NewAccountForm {
    id: String,
    display_name: String,
    role: String,
    office: String,
    grants: Vec<String>,
    corporation_name: String,
    corporation_offices: Vec<String>,
}

impl NewAccountForm {
    fn from_form(f: &Form) -> NewAccountForm {
        NewAccountForm {
            id: f.text("id").trim().to_owned(),
            display_name: f.text("display_name").trim().to_owned(),
            role: f.text("role").to_owned(),
            office: f.text("office").trim().to_owned(),
            grants: f.all("grants"),
            corporation_name: f.text("corporation_name").trim().to_owned(),
            corporation_offices: f.all("corporation_offices"),
        }
    }

    fn to_new_account(&self) -> NewAccount {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        NewAccount {
            id: self.id.clone(),
            display_name: self.display_name.clone(),
            role: parse_role(&self.role),
            office: opt(&self.office),
            grants: self.grants.clone(),
            corporation_name: opt(&self.corporation_name),
            corporation_offices: self.corporation_offices.clone(),
        }
    }
}

/// Whether a return item can still be closed by hand (not in a final state).
fn closable(status: &str) -> bool {
    !matches!(status, "resolved" | "returned_again" | "closed")
}

#[derive(Debug, Serialize)]
struct ReturnItem<'a> {
    #[serde(flatten)]
    row: &'a crate::backend::ReturnRow,
    closable: bool,
}

impl<B: Backend> Inner<B> {
    /// The error page for a backend error.
    pub(crate) fn fail(&self, p: Option<&Principal>, e: BackendError) -> Resp {
        let problem = match e {
            BackendError::NotFound => Problem::NotFound,
            BackendError::Forbidden => Problem::Forbidden,
            BackendError::Invalid {
                message_ja,
                message_en,
                code,
            } => Problem::Invalid {
                ja: message_ja,
                en: message_en,
                code,
            },
            BackendError::Internal => Problem::Internal,
        };
        self.pages.problem(p, &problem)
    }

    fn render(&self, view: View) -> Resp {
        self.pages.render(view)
    }

    // ---- help ----------------------------------------------------------------------------

    /// The help pages: open to everyone, with the menu of the session asking, if any.
    pub(crate) fn help(&self, route: &Route, req: &Req, user: Option<&Principal>) -> Resp {
        let lang = pages::REQUEST
            .try_with(|r| r.lang)
            .unwrap_or_default()
            .code();
        match route.path {
            "/help" => {
                #[derive(Serialize)]
                struct TopicLink {
                    id: &'static str,
                    title_ja: &'static str,
                    title_en: &'static str,
                }
                let topics: Vec<TopicLink> = help::TOPICS
                    .iter()
                    .map(|t| TopicLink {
                        id: t,
                        title_ja: help::topic_doc(t, "ja").map_or(*t, |d| d.title.as_str()),
                        title_en: help::topic_doc(t, "en").map_or(*t, |d| d.title.as_str()),
                    })
                    .collect();
                self.render(View::new("help.html", user).with("topics", &topics))
            }
            "/help/codes" => {
                self.render(View::new("help_codes.html", user).with("areas", help::AREAS))
            }
            "/help/code/{code}" => {
                let code = req.param();
                let area = help::AREAS
                    .iter()
                    .find(|a| a.entries.iter().any(|e| e.code == code));
                match (help::find(code), area) {
                    (Some(e), Some(area)) => self.render(
                        View::new("help_code.html", user)
                            .with("e", e)
                            .with("area", area)
                            .with("help_section", &e.help_href()),
                    ),
                    _ => self.pages.problem(user, &Problem::NotFound),
                }
            }
            _ => {
                let (doc, screen) = if route.path == "/help/manual" {
                    (help::manual(lang), None)
                } else {
                    let topic = req.param();
                    (help::topic_doc(topic, lang), screen_of(topic))
                };
                match doc {
                    Some(d) => self.render(
                        View::new("help_doc.html", user)
                            .with("doc_title", &d.title)
                            .with("doc_html", &d.html)
                            .with("doc_lang", lang)
                            .with("screen", &screen),
                    ),
                    None => self.pages.problem(user, &Problem::NotFound),
                }
            }
        }
    }

    // ---- public routes -------------------------------------------------------------------

    pub(crate) async fn public(&self, route: &Route, req: &Req) -> Resp {
        match (route.method, route.path) {
            ("GET", "/login") => self.get_login(req).await,
            ("POST", "/login") => self.post_login(req).await,
            ("GET", "/login/password") => self.login_form(
                "login_password.html",
                StatusCode::OK,
                req.query.text("id"),
                None,
            ),
            ("POST", "/login/password") => self.post_login_password(req).await,
            ("GET", "/static/style.css") => pages::stylesheet(),
            ("GET", "/certificate") => {
                let ca = self.backend.ca_certificate().await;
                self.render(View::new("certificate.html", None).with("ca", &ca))
            }
            ("GET", "/certificate/kaigo-relay-ca.crt") => match self.backend.ca_certificate().await
            {
                Some(ca) => {
                    pages::download("kaigo-relay-ca.crt", "application/x-x509-ca-cert", ca.pem)
                }
                None => self.pages.problem(None, &Problem::NotFound),
            },
            ("GET", "/lang") => {
                let lang = match req.query.get("to") {
                    Some("en") => "en",
                    _ => "ja",
                };
                let back = req
                    .query
                    .opt("back")
                    .filter(|b| local_path(b))
                    .unwrap_or_else(|| "/".to_owned());
                let mut r = pages::redirect(&back);
                let cookie = format!(
                    "{}={lang}; Path=/; Secure; SameSite=Lax; Max-Age=31536000",
                    pages::LANG_COOKIE
                );
                if let Ok(v) = http::HeaderValue::from_str(&cookie) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
                r
            }
            ("GET", "/healthz") => crate::metrics::health(&self.backend.health_check().await),
            ("GET", "/metrics") => {
                let bearer = req
                    .parts
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                match self.backend.metrics(&req.client, bearer).await {
                    Ok(families) => crate::metrics::exposition(&families),
                    Err(BackendError::Forbidden) => crate::metrics::forbidden(),
                    Err(e) => self.fail(None, e),
                }
            }
            _ => self.unrouted(route),
        }
    }

    fn unrouted(&self, route: &Route) -> Resp {
        tracing::error!(
            method = route.method,
            path = route.path,
            "admin UI: a route has no handler"
        );
        self.pages.problem(None, &Problem::Internal)
    }

    /// A login-screen form with a fresh login-CSRF token in a cookie and in the form.
    fn login_form(
        &self,
        template: &'static str,
        status: StatusCode,
        id: &str,
        msg: Option<Msg>,
    ) -> Resp {
        let token = match security::random_token() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "admin UI: no random token for the login form");
                return self.pages.problem(None, &Problem::Internal);
            }
        };
        let Some(cookie) = security::set_cookie(LOGIN_COOKIE, &token) else {
            return self.pages.problem(None, &Problem::Internal);
        };
        let mut view = View::new(template, None)
            .status(status)
            .with("csrf_token", &token)
            .with("id", id);
        if let Some(m) = msg {
            view = view.message(m);
        }
        let mut r = self.render(view);
        r.headers_mut().append(header::SET_COOKIE, cookie);
        r
    }

    /// The double-submit check of the login-screen forms.
    fn login_csrf_ok(req: &Req) -> bool {
        let cookie = security::cookie(&req.parts.headers, LOGIN_COOKIE).unwrap_or("");
        security::tokens_equal(req.form.text("csrf_token"), cookie)
    }

    async fn get_login(&self, req: &Req) -> Resp {
        if let Some(token) = security::cookie(&req.parts.headers, SESSION_COOKIE)
            && let Ok(Some(_)) = self.backend.session(token).await
        {
            return pages::redirect("/");
        }
        let msg = if req.query.get("changed") == Some("1") {
            Some(Msg::info(
                "パスワードを変更しました。新しいパスワードでログインしてください。",
                "Your password was changed. Log in with the new password.",
            ))
        } else if req.query.get("expired") == Some("1") {
            Some(
                Msg::info(
                    "ログインの有効期限が切れたか、ほかの画面でログアウトされたため、もう一度ログインしてください。入力中の内容は保存されていません。",
                    "Your log-in has ended (timed out, or ended elsewhere). Please log in again; anything not yet saved was not kept.",
                )
                .coded(Some(help::code::ACCOUNTS_SESSION_EXPIRED)),
            )
        } else {
            None
        };
        self.login_form("login.html", StatusCode::OK, "", msg)
    }

    async fn post_login(&self, req: &Req) -> Resp {
        let id = req.form.text("id").trim();
        if !Self::login_csrf_ok(req) {
            return self.login_form(
                "login.html",
                StatusCode::FORBIDDEN,
                id,
                Some(login_expired()),
            );
        }
        let password = req.form.text("password");
        if id.is_empty() || password.is_empty() {
            return self.login_form(
                "login.html",
                StatusCode::UNPROCESSABLE_ENTITY,
                id,
                Some(
                    Msg::error(
                        "ログインIDとパスワードを入力してください。",
                        "Enter your login ID and password.",
                    )
                    .coded(Some(help::code::ACCOUNTS_LOGIN_MISSING)),
                ),
            );
        }
        match self.backend.login(id, password, &req.client).await {
            Ok(LoginOutcome::LoggedIn {
                token,
                must_change_password,
            }) => {
                let Some(cookie) = security::set_cookie(SESSION_COOKIE, &token) else {
                    tracing::error!(
                        "admin UI: the backend's session token cannot be a cookie value"
                    );
                    return self.pages.problem(None, &Problem::Internal);
                };
                let mut r = pages::redirect(if must_change_password {
                    "/account/password"
                } else {
                    "/"
                });
                r.headers_mut().append(header::SET_COOKIE, cookie);
                r.headers_mut()
                    .append(header::SET_COOKIE, security::clear_cookie(LOGIN_COOKIE));
                r
            }
            Ok(LoginOutcome::Refused {
                message_ja,
                message_en,
                code,
            }) => self.login_form(
                "login.html",
                StatusCode::UNAUTHORIZED,
                id,
                Some(Msg::error(&message_ja, &message_en).coded(code)),
            ),
            Ok(LoginOutcome::Throttled {
                message_ja,
                message_en,
                code,
            }) => self.login_form(
                "login.html",
                StatusCode::TOO_MANY_REQUESTS,
                id,
                Some(Msg::error(&message_ja, &message_en).coded(code)),
            ),
            Err(BackendError::Invalid {
                message_ja,
                message_en,
                code,
            }) => self.login_form(
                "login.html",
                StatusCode::UNPROCESSABLE_ENTITY,
                id,
                Some(Msg::error(&message_ja, &message_en).coded(code)),
            ),
            Err(e) => self.fail(None, e),
        }
    }

    async fn post_login_password(&self, req: &Req) -> Resp {
        const T: &str = "login_password.html";
        let id = req.form.text("id").trim();
        if !Self::login_csrf_ok(req) {
            return self.login_form(T, StatusCode::FORBIDDEN, id, Some(login_expired()));
        }
        let old = req.form.text("old_password");
        let (new, confirm) = (
            req.form.text("new_password"),
            req.form.text("new_password_confirm"),
        );
        if let Some(m) = check_new_password(old, new, confirm, id.is_empty()) {
            return self.login_form(T, StatusCode::UNPROCESSABLE_ENTITY, id, Some(m));
        }
        match self
            .backend
            .change_password_at_login(id, old, new, &req.client)
            .await
        {
            Ok(()) => {
                let mut r = pages::redirect("/login?changed=1");
                r.headers_mut()
                    .append(header::SET_COOKIE, security::clear_cookie(LOGIN_COOKIE));
                r
            }
            Err(BackendError::Invalid {
                message_ja,
                message_en,
                code,
            }) => self.login_form(
                T,
                StatusCode::UNPROCESSABLE_ENTITY,
                id,
                Some(Msg::error(&message_ja, &message_en).coded(code)),
            ),
            Err(e) => self.fail(None, e),
        }
    }

    // ---- routes with a session -----------------------------------------------------------

    pub(crate) async fn private(&self, route: &Route, req: &Req, p: &Principal) -> Resp {
        match (route.method, route.path) {
            ("POST", "/logout") => self.post_logout(p).await,
            ("GET", "/account/password") => self.password_page(p, StatusCode::OK, None),
            ("POST", "/account/password") => self.post_password(req, p).await,
            ("GET", "/") => self.home(p, StatusCode::OK, None).await,
            ("POST", "/office") => self.post_office(req, p).await,
            ("GET", "/account") => {
                let msg = if req.query.get("changed") == Some("1") {
                    Some(Msg::info(
                        "パスワードを変更しました。",
                        "Your password was changed.",
                    ))
                } else if req.query.get("alerts") == Some("1") {
                    Some(Msg::info(
                        "通知の設定を保存しました。",
                        "Your alert settings were saved.",
                    ))
                } else {
                    None
                };
                self.account_page(p, StatusCode::OK, msg).await
            }
            ("POST", "/account/sessions/revoke") => self.post_revoke(req, p).await,
            ("POST", "/account/alerts") => {
                let form = AlertPrefsForm {
                    email: req.form.text("email").trim().to_owned(),
                    groups: req.form.all("group"),
                    digest: req.form.get("digest") == Some("1"),
                    language: req.form.text("language").trim().to_owned(),
                };
                let r = self.backend.set_alert_prefs(p, form).await;
                self.after_own_account_form(p, r, "/account?alerts=1").await
            }
            ("GET", "/alerts") => self.alerts_page(p, None, Vec::new()).await,
            ("POST", "/alerts/test") => {
                let outcomes = or_fail!(self, Some(p), self.backend.send_test_alert(p).await);
                let msg = if outcomes.is_empty() {
                    Msg::error(
                        "送り先がありません。自分のアカウントにメールアドレスを登録するか、設定ファイルに宛先を書いてください。",
                        "There is no destination: add your e-mail address on your account page, or configure recipients.",
                    )
                    .coded(Some(help::code::ALERTS_NO_DESTINATION))
                } else if outcomes.iter().all(|o| o.ok) {
                    Msg::info(
                        "テスト通知を送りました。届いたか確認してください。",
                        "The test alert was accepted; check that it arrived.",
                    )
                } else {
                    Msg::error(
                        "届かなかった宛先があります。下の結果を確認してください。",
                        "Some destinations did not accept it; see below.",
                    )
                    .coded(Some(help::code::ALERTS_TEST_FAILED))
                };
                self.alerts_page(p, Some(msg), outcomes).await
            }
            ("GET", "/accounts") => {
                let accounts = or_fail!(self, Some(p), self.backend.accounts(p).await);
                self.render(View::new("accounts.html", Some(p)).with("accounts", &accounts))
            }
            ("GET", "/accounts/new") => {
                self.new_account_page(p, StatusCode::OK, &NewAccountForm::default(), None)
            }
            ("POST", "/accounts") => self.post_new_account(req, p).await,
            ("GET", "/accounts/{id}") => {
                self.account_detail(p, req.param(), StatusCode::OK, None)
                    .await
            }
            ("POST", "/accounts/{id}/reset") => {
                let otp = or_fail!(
                    self,
                    Some(p),
                    self.backend.reset_password(p, req.param()).await
                );
                self.render(
                    View::new("one_time_password.html", Some(p))
                        .with("otp", &otp)
                        .with("reason", "reset"),
                )
            }
            ("POST", "/accounts/{id}/unlock") => {
                let r = self.backend.unlock(p, req.param()).await;
                self.after_account_change(p, req.param(), r).await
            }
            ("POST", "/accounts/{id}/grants") => {
                let r = self
                    .backend
                    .set_grants(p, req.param(), req.form.all("office"))
                    .await;
                self.after_account_change(p, req.param(), r).await
            }
            ("POST", "/accounts/{id}/disable") => {
                let r = self.backend.set_disabled(p, req.param(), true).await;
                self.after_account_change(p, req.param(), r).await
            }
            ("POST", "/accounts/{id}/enable") => {
                let r = self.backend.set_disabled(p, req.param(), false).await;
                self.after_account_change(p, req.param(), r).await
            }
            ("GET", "/offices") => {
                let offices = or_fail!(self, Some(p), self.backend.offices(p).await);
                self.render(View::new("offices.html", Some(p)).with("offices", &offices))
            }
            ("GET", "/offices/{number}") => {
                let office = or_fail!(self, Some(p), self.backend.office(p, req.param()).await);
                self.render(View::new("office_detail.html", Some(p)).with("office", &office))
            }
            ("GET", "/submissions") => self.submissions_page(req, p, None).await,
            ("GET", "/submissions/{id}") => {
                self.submission_page(p, req.param(), StatusCode::OK, None)
                    .await
            }
            ("POST", "/submissions/{id}/resend") => {
                let r = self.backend.resend(p, req.param()).await;
                self.after_submission_action(p, req.param(), r).await
            }
            ("POST", "/submissions/{id}/withdraw") => {
                if req.form.get("confirm") != Some("1") {
                    // Nothing is asked of the federation without the tick; the page (which
                    // the backend may refuse) says why.
                    let msg = Msg::error(
                        "取り消すには、確認の欄にチェックを入れてから押してください。",
                        "Tick the confirmation box to withdraw.",
                    )
                    .coded(Some(help::code::WITHDRAW_CONFIRM_MISSING));
                    return self
                        .submission_page(
                            p,
                            req.param(),
                            StatusCode::UNPROCESSABLE_ENTITY,
                            Some(msg),
                        )
                        .await;
                }
                let r = self.backend.withdraw(p, req.param()).await;
                self.after_submission_action(p, req.param(), r).await
            }
            ("GET", "/notices") => self.notices_page(req, p).await,
            ("GET", "/notices/{id}") => {
                let n = or_fail!(self, Some(p), self.backend.notice(p, req.param()).await);
                self.render(View::new("notice_detail.html", Some(p)).with("n", &n))
            }
            ("GET", "/notices/{id}/original") => self.notice_download(p, req.param(), false).await,
            ("GET", "/notices/{id}/utf8") => self.notice_download(p, req.param(), true).await,
            ("GET", "/notices/{id}/view") => {
                let d = or_fail!(
                    self,
                    Some(p),
                    self.backend.notice_download(p, req.param(), false).await
                );
                pages::inline(&d.file_name, &d.content_type, d.bytes)
            }
            ("GET", "/returns") => {
                let office = chosen_office(p, &req.query);
                let msg = (req.query.get("closed") == Some("1")).then(|| {
                    Msg::info(
                        "返戻を「完了」にしました。メモは一覧に残ります。",
                        "The item was closed; its note stays in the list.",
                    )
                });
                self.returns_page(p, office, &req.query, StatusCode::OK, msg)
                    .await
            }
            ("GET", "/returns/export") => self.returns_export(req, p).await,
            ("POST", "/returns/{id}/close") => self.post_close_return(req, p).await,
            ("GET", "/system") => {
                let v = or_fail!(self, Some(p), self.backend.system(p).await);
                self.render(View::new("system.html", Some(p)).with("sys", &v))
            }
            ("GET", "/audit") => {
                let rows = or_fail!(self, Some(p), self.backend.audit_log(p, 500).await);
                self.render(View::new("audit.html", Some(p)).with("entries", &rows))
            }
            ("GET", "/backups") => {
                let msg = (req.query.get("started") == Some("1")).then(|| {
                    Msg::info(
                        "バックアップを始めました。数分で終わります。このページを開き直すと結果が出ます。",
                        "The backup has started; reload this page in a few minutes for the result.",
                    )
                });
                self.backups_page(p, StatusCode::OK, msg).await
            }
            ("POST", "/backups/run") => {
                let o = or_fail!(self, Some(p), self.backend.backup_now(p).await);
                if o.done {
                    pages::redirect("/backups?started=1")
                } else {
                    let msg = Msg::error(&o.message_ja, &o.message_en).coded(o.code);
                    self.backups_page(p, StatusCode::UNPROCESSABLE_ENTITY, Some(msg))
                        .await
                }
            }
            ("POST", "/backups/restore") => {
                let site = req.form.get("site").unwrap_or_default().to_owned();
                let seq = match req.form.get("seq").map(str::trim).filter(|s| !s.is_empty()) {
                    None => None,
                    Some(s) => match s.parse::<u64>() {
                        Ok(n) => Some(n),
                        Err(_) => {
                            let msg = Msg::error(
                                "コピー番号は数字で入力してください（空欄なら最新）。",
                                "The copy number must be a number (empty: the newest).",
                            )
                            .coded(Some(help::code::BACKUP_RESTORE_SEQ_INVALID));
                            return self
                                .backups_page(p, StatusCode::UNPROCESSABLE_ENTITY, Some(msg))
                                .await;
                        }
                    },
                };
                if req.form.get("confirm") != Some("1") {
                    let msg = Msg::error(
                        "戻すには、確認の欄にチェックを入れてから押してください。",
                        "Tick the confirmation box to restore.",
                    )
                    .coded(Some(help::code::BACKUP_RESTORE_CONFIRM));
                    return self
                        .backups_page(p, StatusCode::UNPROCESSABLE_ENTITY, Some(msg))
                        .await;
                }
                let o = or_fail!(
                    self,
                    Some(p),
                    self.backend.restore_backup(p, &site, seq).await
                );
                if o.done {
                    let view = View::new("restarting.html", Some(p))
                        .message(Msg::info(&o.message_ja, &o.message_en).coded(o.code));
                    self.render(view)
                } else {
                    let msg = Msg::error(&o.message_ja, &o.message_en).coded(o.code);
                    self.backups_page(p, StatusCode::UNPROCESSABLE_ENTITY, Some(msg))
                        .await
                }
            }
            ("GET", "/backups/key") => {
                let d = or_fail!(self, Some(p), self.backend.backup_key_download(p).await);
                pages::download(&d.file_name, &d.content_type, d.bytes)
            }
            ("POST", "/backups/key/confirm") => {
                let key_id = req.form.get("key_id").unwrap_or_default().trim().to_owned();
                let o = or_fail!(
                    self,
                    Some(p),
                    self.backend.confirm_backup_key(p, &key_id).await
                );
                let (status, msg) = if o.done {
                    (
                        StatusCode::OK,
                        Msg::info(&o.message_ja, &o.message_en).coded(o.code),
                    )
                } else {
                    (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        Msg::error(&o.message_ja, &o.message_en).coded(o.code),
                    )
                };
                self.backups_page(p, status, Some(msg)).await
            }
            _ => self.unrouted(route),
        }
    }

    async fn post_logout(&self, p: &Principal) -> Resp {
        let mut r = match self.backend.logout(p).await {
            Ok(()) => pages::redirect("/login"),
            Err(e) => self.fail(None, e),
        };
        r.headers_mut()
            .append(header::SET_COOKIE, security::clear_cookie(SESSION_COOKIE));
        r
    }

    fn password_page(&self, p: &Principal, status: StatusCode, msg: Option<Msg>) -> Resp {
        let mut view = View::new("account_password.html", Some(p))
            .status(status)
            .with("forced", &p.must_change_password);
        if let Some(m) = msg {
            view = view.message(m);
        }
        self.render(view)
    }

    async fn post_password(&self, req: &Req, p: &Principal) -> Resp {
        let old = req.form.text("old_password");
        let (new, confirm) = (
            req.form.text("new_password"),
            req.form.text("new_password_confirm"),
        );
        if let Some(m) = check_new_password(old, new, confirm, false) {
            return self.password_page(p, StatusCode::UNPROCESSABLE_ENTITY, Some(m));
        }
        match self.backend.change_password(p, old, new).await {
            Ok(()) => pages::redirect("/account?changed=1"),
            Err(BackendError::Invalid {
                message_ja,
                message_en,
                code,
            }) => self.password_page(
                p,
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(Msg::error(&message_ja, &message_en).coded(code)),
            ),
            Err(e) => self.fail(Some(p), e),
        }
    }

    async fn home(&self, p: &Principal, status: StatusCode, msg: Option<Msg>) -> Resp {
        let dashboard = or_fail!(self, Some(p), self.backend.dashboard(p).await);
        let chart = crate::chart::layout(&dashboard.months);
        let mut view = View::new("home.html", Some(p))
            .status(status)
            .with("dashboard", &dashboard)
            .with("chart", &chart);
        if let Some(m) = msg {
            view = view.message(m);
        }
        self.render(view)
    }

    async fn post_office(&self, req: &Req, p: &Principal) -> Resp {
        match self
            .backend
            .switch_office(p, req.form.text("office").trim())
            .await
        {
            Ok(()) => pages::redirect("/"),
            Err(BackendError::Invalid {
                message_ja,
                message_en,
                code,
            }) => {
                self.home(
                    p,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(Msg::error(&message_ja, &message_en).coded(code)),
                )
                .await
            }
            Err(e) => self.fail(Some(p), e),
        }
    }

    async fn alerts_page(
        &self,
        p: &Principal,
        msg: Option<Msg>,
        outcomes: Vec<TestAlertRow>,
    ) -> Resp {
        let alerts = or_fail!(self, Some(p), self.backend.alerts(p).await);
        let mut view = View::new("alerts.html", Some(p))
            .with("alerts", &alerts)
            .with("outcomes", &outcomes);
        if let Some(m) = msg {
            view = view.message(m);
        }
        self.render(view)
    }

    async fn account_page(&self, p: &Principal, status: StatusCode, msg: Option<Msg>) -> Resp {
        let sessions = or_fail!(self, Some(p), self.backend.sessions(p).await);
        let prefs = or_fail!(self, Some(p), self.backend.alert_prefs(p).await);
        let mut view = View::new("account.html", Some(p))
            .status(status)
            .with("sessions", &sessions)
            .with("prefs", &prefs);
        if let Some(m) = msg {
            view = view.message(m);
        }
        self.render(view)
    }

    async fn post_revoke(&self, req: &Req, p: &Principal) -> Resp {
        let r = self
            .backend
            .revoke_session(p, req.form.text("session_id").trim())
            .await;
        self.after_own_account_form(p, r, "/account").await
    }

    /// After a form of the account page: on to `done`, or the page again with the refusal.
    async fn after_own_account_form(
        &self,
        p: &Principal,
        r: Result<(), BackendError>,
        done: &str,
    ) -> Resp {
        match r {
            Ok(()) => pages::redirect(done),
            Err(BackendError::Invalid {
                message_ja,
                message_en,
                code,
            }) => {
                self.account_page(
                    p,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(Msg::error(&message_ja, &message_en).coded(code)),
                )
                .await
            }
            Err(e) => self.fail(Some(p), e),
        }
    }

    fn new_account_page(
        &self,
        p: &Principal,
        status: StatusCode,
        form: &NewAccountForm,
        msg: Option<Msg>,
    ) -> Resp {
        let roles: Vec<RoleOption> = creatable_roles(p)
            .iter()
            .map(|r| RoleOption {
                value: role_value(*r),
                ja: r.label_ja(),
                en: r.label_en(),
                selected: form.role == role_value(*r),
            })
            .collect();
        let offices: Vec<OfficeChoice<'_>> = p
            .offices
            .iter()
            .map(|o| OfficeChoice {
                number: &o.number,
                name: &o.name,
                office: form.office == o.number,
                grant: form.grants.contains(&o.number),
                corporation: form.corporation_offices.contains(&o.number),
            })
            .collect();
        let mut view = View::new("account_new.html", Some(p))
            .status(status)
            .with("form", form)
            .with("roles", &roles)
            .with("choices", &offices);
        if let Some(m) = msg {
            view = view.message(m);
        }
        self.render(view)
    }

    async fn post_new_account(&self, req: &Req, p: &Principal) -> Resp {
        let form = NewAccountForm::from_form(&req.form);
        match self.backend.create_account(p, form.to_new_account()).await {
            Ok(otp) => self.render(
                View::new("one_time_password.html", Some(p))
                    .with("otp", &otp)
                    .with("reason", "created"),
            ),
            Err(BackendError::Invalid {
                message_ja,
                message_en,
                code,
            }) => self.new_account_page(
                p,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                Some(Msg::error(&message_ja, &message_en).coded(code)),
            ),
            Err(e) => self.fail(Some(p), e),
        }
    }

    async fn account_detail(
        &self,
        p: &Principal,
        id: &str,
        status: StatusCode,
        msg: Option<Msg>,
    ) -> Resp {
        let account: AccountView = or_fail!(self, Some(p), self.backend.account(p, id).await);
        let grants: Vec<OfficeChoice<'_>> = p
            .offices
            .iter()
            .map(|o| OfficeChoice {
                number: &o.number,
                name: &o.name,
                office: false,
                grant: account.grants.iter().any(|g| g.number == o.number),
                corporation: false,
            })
            .collect();
        let mut view = View::new("account_detail.html", Some(p))
            .status(status)
            .with("account", &account)
            .with("choices", &grants);
        if let Some(m) = msg {
            view = view.message(m);
        }
        self.render(view)
    }

    /// After unlock, grants, disable, enable: back to the account, or its page with the
    /// backend's message.
    async fn after_account_change(
        &self,
        p: &Principal,
        id: &str,
        r: Result<(), BackendError>,
    ) -> Resp {
        match r {
            Ok(()) => pages::redirect(&format!("/accounts/{}", routes::segment(id))),
            Err(BackendError::Invalid {
                message_ja,
                message_en,
                code,
            }) => {
                self.account_detail(
                    p,
                    id,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(Msg::error(&message_ja, &message_en).coded(code)),
                )
                .await
            }
            Err(e) => self.fail(Some(p), e),
        }
    }

    async fn notice_download(&self, p: &Principal, id: &str, utf8: bool) -> Resp {
        let d = or_fail!(
            self,
            Some(p),
            self.backend.notice_download(p, id, utf8).await
        );
        pages::download(&d.file_name, &d.content_type, d.bytes)
    }

    /// The submissions list of the chosen office, filtered.
    async fn submissions_page(&self, req: &Req, p: &Principal, msg: Option<Msg>) -> Resp {
        let office = chosen_office(p, &req.query);
        let mut view = View::new("submissions.html", Some(p)).with("path", "/submissions");
        let mut msg = msg;
        match &office {
            Some(o) => {
                let (q, shown, bad) = lists::parse(o, &req.query);
                let list = or_fail!(self, Some(p), self.backend.submissions(p, &q).await);
                msg = msg.or(bad);
                view = view.with("list", &list).with("q", &shown);
            }
            None => {
                view = view
                    .with("list", &None::<()>)
                    .with("q", &lists::Shown::default())
            }
        }
        view = view.with("office", &office);
        if let Some(m) = msg {
            view = view.message(m);
        }
        self.render(view)
    }

    async fn submission_page(
        &self,
        p: &Principal,
        id: &str,
        status: StatusCode,
        msg: Option<Msg>,
    ) -> Resp {
        let s = or_fail!(self, Some(p), self.backend.submission(p, id).await);
        let mut view = View::new("submission_detail.html", Some(p))
            .status(status)
            .with("s", &s);
        if let Some(m) = msg {
            view = view.message(m);
        }
        self.render(view)
    }

    async fn backups_page(&self, p: &Principal, status: StatusCode, msg: Option<Msg>) -> Resp {
        let v = or_fail!(self, Some(p), self.backend.backups(p).await);
        let mut view = View::new("backups.html", Some(p))
            .status(status)
            .with("b", &v);
        if let Some(m) = msg {
            view = view.message(m);
        }
        self.render(view)
    }

    /// After resend or withdraw: the submission again, with what happened.
    async fn after_submission_action(
        &self,
        p: &Principal,
        id: &str,
        r: crate::backend::BackendResult<crate::backend::ActionOutcome>,
    ) -> Resp {
        match r {
            Ok(o) => {
                let (status, msg) = if o.done {
                    (
                        StatusCode::OK,
                        Msg::info(&o.message_ja, &o.message_en).coded(o.code),
                    )
                } else {
                    (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        Msg::error(&o.message_ja, &o.message_en).coded(o.code),
                    )
                };
                self.submission_page(p, id, status, Some(msg)).await
            }
            Err(BackendError::Invalid {
                message_ja,
                message_en,
                code,
            }) => {
                self.submission_page(
                    p,
                    id,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(Msg::error(&message_ja, &message_en).coded(code)),
                )
                .await
            }
            Err(e) => self.fail(Some(p), e),
        }
    }

    /// The notices list of the chosen office, filtered.
    async fn notices_page(&self, req: &Req, p: &Principal) -> Resp {
        let office = chosen_office(p, &req.query);
        let mut view = View::new("notices.html", Some(p)).with("path", "/notices");
        let mut msg = None;
        match &office {
            Some(o) => {
                let (q, shown, bad) = lists::parse(o, &req.query);
                let list = or_fail!(self, Some(p), self.backend.notices(p, &q).await);
                msg = bad;
                view = view.with("list", &list).with("q", &shown);
            }
            None => {
                view = view
                    .with("list", &None::<()>)
                    .with("q", &lists::Shown::default())
            }
        }
        view = view.with("office", &office);
        if let Some(m) = msg {
            view = view.message(m);
        }
        self.render(view)
    }

    /// The returns of the chosen office as CSV: CP932 for Excel, or UTF-8 with a BOM.
    async fn returns_export(&self, req: &Req, p: &Principal) -> Resp {
        let Some(office) = chosen_office(p, &req.query) else {
            return self.pages.problem(Some(p), &Problem::NotFound);
        };
        let (mut q, _, _) = lists::parse(&office, &req.query);
        q.page = None;
        let list = or_fail!(self, Some(p), self.backend.returns(p, &q).await);
        let text = lists::returns_csv(&list.rows);
        let utf8 = req.query.get("encoding") == Some("utf8");
        let month = q.month.as_deref().unwrap_or("all");
        if utf8 {
            let mut bytes = "\u{feff}".as_bytes().to_vec();
            bytes.extend_from_slice(text.as_bytes());
            pages::download(
                &format!("返戻一覧_{}_{month}_UTF-8.csv", office.number),
                "text/csv; charset=utf-8",
                bytes,
            )
        } else {
            let (bytes, replaced) = lists::to_cp932(&text);
            if replaced > 0 {
                tracing::info!(
                    office = %office.number,
                    replaced,
                    "returns export: characters CP932 cannot hold were written as 〓"
                );
            }
            pages::download(
                &format!("返戻一覧_{}_{month}.csv", office.number),
                "text/csv; charset=Shift_JIS",
                bytes,
            )
        }
    }

    async fn returns_page(
        &self,
        p: &Principal,
        office: Option<OfficeRef>,
        query: &Form,
        status: StatusCode,
        msg: Option<Msg>,
    ) -> Resp {
        let mut view = View::new("returns.html", Some(p))
            .status(status)
            .with("path", "/returns");
        let mut msg = msg;
        match &office {
            Some(o) => {
                let (q, shown, bad) = lists::parse(o, query);
                let list = or_fail!(self, Some(p), self.backend.returns(p, &q).await);
                msg = msg.or(bad);
                let items: Vec<ReturnItem<'_>> = list
                    .rows
                    .iter()
                    .map(|row| ReturnItem {
                        row,
                        closable: closable(&row.status),
                    })
                    .collect();
                let page = crate::backend::ListPage {
                    rows: items,
                    total: list.total,
                    page: list.page,
                    pages: list.pages,
                    months: list.months.clone(),
                    kinds: list.kinds.clone(),
                    statuses: list.statuses.clone(),
                };
                view = view.with("list", &page).with("q", &shown);
            }
            None => {
                view = view
                    .with("list", &None::<()>)
                    .with("q", &lists::Shown::default())
            }
        }
        view = view.with("office", &office);
        if let Some(m) = msg {
            view = view.message(m);
        }
        self.render(view)
    }

    async fn post_close_return(&self, req: &Req, p: &Principal) -> Resp {
        // The office the list was showing (a hidden field), to show the same list again.
        let office = req
            .form
            .opt("office")
            .filter(|o| o.bytes().all(|b| b.is_ascii_digit()));
        let shown = match &office {
            Some(number) => Some(office_ref(p, number.clone())),
            None => p.current_office.clone(),
        };
        let Some(note) = req.form.opt("note") else {
            return self
                .returns_page(
                    p,
                    shown,
                    &Form::default(),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(
                        Msg::error(
                            "完了にするには、メモ（対応内容）を入力してください。",
                            "Enter a note (what was done) to close the item.",
                        )
                        .coded(Some(help::code::RETURNS_NOTE_MISSING)),
                    ),
                )
                .await;
        };
        match self.backend.close_return(p, req.param(), &note).await {
            Ok(()) => pages::redirect(&match office {
                Some(o) => format!("/returns?office={o}&closed=1"),
                None => "/returns?closed=1".to_owned(),
            }),
            Err(BackendError::Invalid {
                message_ja,
                message_en,
                code,
            }) => {
                self.returns_page(
                    p,
                    shown,
                    &Form::default(),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(Msg::error(&message_ja, &message_en).coded(code)),
                )
                .await
            }
            Err(e) => self.fail(Some(p), e),
        }
    }
}

fn login_expired() -> Msg {
    Msg::error(
        "画面の有効期限が切れたため、受け付けませんでした。もう一度入力してください。",
        "The form had expired. Please enter it again.",
    )
    .coded(Some(help::code::ACCOUNTS_CSRF))
}

/// The checks the UI can make itself before a password change reaches the backend (which
/// applies the policy).
fn check_new_password(old: &str, new: &str, confirm: &str, id_missing: bool) -> Option<Msg> {
    if id_missing || old.is_empty() || new.is_empty() {
        return Some(
            Msg::error("すべての項目を入力してください。", "Fill in every field.")
                .coded(Some(help::code::ACCOUNTS_PASSWORD_FIELDS_MISSING)),
        );
    }
    if new != confirm {
        return Some(
            Msg::error(
                "新しいパスワードと確認用のパスワードが一致しません。もう一度入力してください。",
                "The new password and its confirmation differ. Enter them again.",
            )
            .coded(Some(help::code::ACCOUNTS_PASSWORD_MISMATCH)),
        );
    }
    None
}
