//! kaigo-relay's admin web UI: a hyper service served over rustls, with tera templates and
//! static files embedded in the binary. It knows nothing of the store or the pipeline: every
//! page asks the [`Backend`] the daemon implements, passing the [`Principal`] of the session.
//!
//! This module owns [`AdminUi`] and its request pipeline: match the route ([`ROUTES`]), check
//! the origin of a POST, resolve the session, send a password that must be changed to its
//! form, check the route's [`Access`] and the CSRF token, run the handler, and harden the
//! response. [`serve`] puts it on a TLS listener.
//!
//! Invariants kept here: the principal comes only from [`Backend::session`] with the session
//! cookie (architecture invariant 7: the backend then decides every call from it); no state
//! changes on GET; every POST carries the session's synchronizer CSRF token (the login forms a
//! double-submit cookie) and passes an Origin / Sec-Fetch-Site check; the session cookie is
//! `Secure; HttpOnly; SameSite=Strict`; every response carries the security headers.

pub mod backend;
mod chart;
mod forms;
mod handlers;
pub mod help;
mod lists;
mod metrics;
mod pages;
mod routes;
mod security;
mod server;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;

pub use backend::*;
pub use forms::BODY_LIMIT;
pub use routes::{Access, ROUTES, Route};
pub use security::{LOGIN_COOKIE, SESSION_COOKIE};
pub use server::serve;

use forms::Form;
use handlers::Req;
use pages::{Pages, Problem};
use routes::Matched;

/// The admin UI over a backend: cheap to clone (one `Arc` inside).
pub struct AdminUi<B: Backend> {
    inner: Arc<Inner<B>>,
}

impl<B: Backend> Clone for AdminUi<B> {
    fn clone(&self) -> Self {
        AdminUi {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: Backend> std::fmt::Debug for AdminUi<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminUi").finish_non_exhaustive()
    }
}

/// What the clones share.
pub(crate) struct Inner<B> {
    pub(crate) backend: Arc<B>,
    pub(crate) pages: Pages,
}

impl<B: Backend> AdminUi<B> {
    /// Compiles every embedded template once; a template error fails here.
    pub fn new(backend: Arc<B>) -> anyhow::Result<Self> {
        Ok(AdminUi {
            inner: Arc::new(Inner {
                backend,
                pages: Pages::new()?,
            }),
        })
    }

    /// One request, without TLS or sockets (tests call this directly). `client` comes from
    /// the connection.
    pub async fn handle(&self, req: Request<Bytes>, client: Client) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let lang = pages::Lang::of(req.headers());
        let here = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let mut resp = pages::REQUEST
            .scope(
                pages::RequestView { lang, here },
                self.inner.dispatch(req, client),
            )
            .await;
        security::apply_headers(resp.headers_mut());
        if resp.extensions().get::<pages::PdfViewer>().is_some() {
            resp.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(security::PDF_CSP),
            );
        }
        tracing::debug!(%method, status = resp.status().as_u16(), "admin UI request");
        resp
    }

    /// An error page for a request that never reached [`AdminUi::handle`] (the server's body
    /// limit, a body that could not be read), with the same headers.
    pub(crate) fn problem(&self, problem: &Problem) -> Response<Full<Bytes>> {
        let mut resp = self.inner.pages.problem(None, problem);
        security::apply_headers(resp.headers_mut());
        resp
    }
}

impl<B: Backend> Inner<B> {
    async fn dispatch(&self, req: Request<Bytes>, client: Client) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        if body.len() > BODY_LIMIT {
            return self.pages.problem(None, &Problem::TooLarge);
        }
        let (route, params) = match routes::find(parts.method.as_str(), parts.uri.path()) {
            Matched::Found(route, params) => (route, params),
            Matched::MethodNotAllowed(allow) => {
                let mut r = self.pages.problem(None, &Problem::MethodNotAllowed);
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    r.headers_mut().insert(header::ALLOW, v);
                }
                return r;
            }
            Matched::NotFound => return self.pages.problem(None, &Problem::NotFound),
        };
        let is_post = route.method == "POST";
        if is_post {
            if !security::same_origin(&parts) {
                return self.pages.problem(None, &Problem::CrossSite);
            }
            if !forms::is_urlencoded(&parts.headers) {
                return self.pages.problem(None, &Problem::UnsupportedForm);
            }
        }
        let req = Req {
            query: Form::parse(parts.uri.query().unwrap_or("").as_bytes()),
            form: if is_post {
                Form::parse(&body)
            } else {
                Form::default()
            },
            parts,
            params,
            client,
        };
        if route.access == Access::Public {
            return self.public(route, &req).await;
        }

        let token = security::cookie(&req.parts.headers, SESSION_COOKIE);
        if route.access == Access::Help {
            let principal = match token {
                Some(t) => self.backend.session(t).await.ok().flatten(),
                None => None,
            };
            let principal = principal.filter(|p| !p.must_change_password);
            return self.help(route, &req, principal.as_ref());
        }
        let principal = match token {
            None => None,
            Some(t) => match self.backend.session(t).await {
                Ok(p) => p,
                Err(BackendError::Internal) => {
                    return self.pages.problem(None, &Problem::Internal);
                }
                Err(_) => None,
            },
        };
        let Some(p) = principal else {
            if token.is_none() {
                return pages::redirect("/login");
            }
            // A stale cookie (timed out, ended elsewhere, password changed): drop it, and
            // say on the login page why the person has to log in again.
            let mut r = pages::redirect("/login?expired=1");
            r.headers_mut()
                .append(header::SET_COOKIE, security::clear_cookie(SESSION_COOKIE));
            return r;
        };
        if p.must_change_password && route.access != Access::PasswordChange {
            return pages::redirect("/account/password");
        }
        let allowed = match route.access {
            Access::ManageAccounts => p.may_manage_accounts,
            Access::Admin => p.is_admin,
            Access::Public | Access::Help | Access::PasswordChange | Access::Session => true,
        };
        if !allowed {
            return self.pages.problem(Some(&p), &Problem::Forbidden);
        }
        if is_post && !security::tokens_equal(req.form.text("csrf_token"), &p.csrf_token) {
            return self.pages.problem(Some(&p), &Problem::FormExpired);
        }
        self.private(route, &req, &p).await
    }
}
