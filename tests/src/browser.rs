//! A small browser for the admin UI in tests: HTTPS that trusts the appliance's own local CA,
//! a cookie jar, forms posted as a real browser posts them (`Origin`, `Sec-Fetch-Site`), and
//! the CSRF token read from the page like a person's browser would carry it. Synchronous, so
//! tests read top to bottom.
//!
//! Invariant: it sends only what a browser sends; a test that wants to misbehave (a foreign
//! origin, a wrong token) says so explicitly.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// One answer.
#[derive(Debug, Clone)]
pub struct Page {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body bytes.
    pub bytes: Bytes,
}

impl Page {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Every `Set-Cookie` line.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    /// Every value of hidden or visible inputs named `name`, in page order.
    pub fn input_values(&self, name: &str) -> Vec<String> {
        let text = self.text();
        let needle = format!("name=\"{name}\" value=\"");
        text.match_indices(&needle)
            .filter_map(|(i, _)| {
                let rest = &text[i + needle.len()..];
                rest.find('"').map(|end| html_unescape(&rest[..end]))
            })
            .collect()
    }
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A browser with its own cookies.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: HttpsClient,
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    cookies: BTreeMap<String, String>,
    /// Requests made (for the test's own accounting).
    pub requests: u64,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("base", &self.base).finish()
    }
}

impl Browser {
    /// A browser for the UI at `admin_url` (as the daemon wrote it), trusting `ca_pem`. It
    /// connects to 127.0.0.1 (the certificate names it).
    pub fn new(admin_url: &str, ca_pem: &Path) -> Browser {
        let port = admin_url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .expect("port in the admin URL");
        let tls = client_tls(ca_pem);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = Client::builder(TokioExecutor::new()).build(https);
        Browser {
            rt,
            client,
            base: format!("https://127.0.0.1:{port}"),
            cookies: BTreeMap::new(),
            requests: 0,
        }
    }

    /// The cookie jar (name → value).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// Replaces a cookie (a test forging one).
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.into(), value.into());
    }

    /// Forgets every cookie.
    pub fn clear_cookies(&mut self) {
        self.cookies.clear();
    }

    fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn absorb(&mut self, page: &Page) {
        for line in page.set_cookies() {
            let first = line.split(';').next().unwrap_or_default();
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            let expired = line
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if expired || value.is_empty() {
                self.cookies.remove(name.trim());
            } else {
                self.cookies.insert(name.trim().into(), value.trim().into());
            }
        }
    }

    /// Sends a request with the jar's cookies and `extra` headers.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<String>,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(c) = self.cookie_header() {
            b = b.header("cookie", c);
        }
        if body.is_some() {
            b = b.header("content-type", "application/x-www-form-urlencoded");
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let req = b
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        self.requests += 1;
        let client = self.client.clone();
        let page = self.rt.block_on(async move {
            let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
                .await
                .expect("the admin UI answers within 30 s")
                .expect("HTTPS request");
            let (parts, body) = resp.into_parts();
            let bytes = body.collect().await.expect("body").to_bytes();
            Page {
                status: parts.status.as_u16(),
                headers: parts.headers,
                bytes,
            }
        });
        self.absorb(&page);
        page
    }

    /// GET, as a browser navigating within the site.
    pub fn get(&mut self, path: &str) -> Page {
        self.request("GET", path, None, &[("sec-fetch-site", "same-origin")])
    }

    /// POSTs a form as a browser on this site does.
    pub fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let origin = self.base.clone();
        let body = encode(form);
        self.request(
            "POST",
            path,
            Some(body),
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        )
    }

    /// The session's CSRF token, read from the home page (or the password page while a change
    /// is forced), as the forms carry it.
    pub fn csrf(&mut self) -> String {
        for path in ["/", "/account/password"] {
            let page = self.get(path);
            if let Some(t) = page.input_values("csrf_token").into_iter().next() {
                return t;
            }
        }
        panic!("no CSRF token on the home or password page");
    }

    /// Logs in through the login form (as a fresh visitor: a session it had is forgotten);
    /// returns the answer to the POST.
    pub fn login(&mut self, id: &str, password: &str) -> Page {
        self.cookies.remove("__Host-kaigo_session");
        let form = self.get("/login");
        let token = form
            .input_values("csrf_token")
            .into_iter()
            .next()
            .expect("login form token");
        self.post(
            "/login",
            &[("id", id), ("password", password), ("csrf_token", &token)],
        )
    }

    /// A first login as a person makes it: with the one-time password, then the forced
    /// change to `new` on the password form. Panics unless both succeed.
    pub fn first_login(&mut self, id: &str, one_time: &str, new: &str) {
        let page = self.login(id, one_time);
        assert_eq!(page.status, 303, "{id}: {}", page.text());
        let token = self.csrf();
        let changed = self.post(
            "/account/password",
            &[
                ("old_password", one_time),
                ("new_password", new),
                ("new_password_confirm", new),
                ("csrf_token", &token),
            ],
        );
        assert_eq!(changed.status, 303, "{id}: {}", changed.text());
    }
}

/// A TLS client configuration that trusts only `ca_pem` (the appliance's local CA).
pub fn client_tls(ca_pem: &Path) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_pem).expect("CA file") {
        roots.add(c.expect("CA certificate")).expect("add CA");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// `application/x-www-form-urlencoded`.
pub fn encode(form: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}
