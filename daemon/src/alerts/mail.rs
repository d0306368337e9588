//! Alert e-mail: one SMTP submission per message through `lettre`, with STARTTLS (refused when
//! the server does not offer it), implicit TLS, or plain SMTP to a server on this machine;
//! AUTH when configured; the system's CA roots plus an optional private CA.
//!
//! Invariant: a send succeeds only when the server accepted the message for delivery (a 2xx
//! to the end of DATA); every other outcome is an error the dispatcher retries, and a permanent
//! refusal (5xx) is told apart so that it is not hammered.

use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::render::Rendered;
use crate::config::{MailSecurity, MailSettings};

/// Why a mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The settings cannot be used (an unreadable CA file, a bad address).
    #[error("メールの設定が使えません (mail settings unusable): {0}")]
    Settings(String),
    /// The server refused the message for good (5xx).
    #[error("メールサーバーが受け取りを拒否しました (the mail server refused the message): {0}")]
    Refused(String),
    /// Anything else: connection, TLS, timeout, a temporary refusal.
    #[error("メールを送れませんでした (could not send the mail): {0}")]
    Failed(String),
}

impl MailError {
    /// Its entry in the message catalogue.
    pub fn code(&self) -> admin_ui::help::Code {
        use admin_ui::help::code;
        match self {
            MailError::Settings(_) => code::ALERTS_MAIL_SETTINGS,
            MailError::Refused(_) => code::ALERTS_MAIL_REFUSED,
            MailError::Failed(_) => code::ALERTS_MAIL_FAILED,
        }
    }

    /// Whether retrying may help.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, MailError::Failed(_))
    }
}

/// A configured mail sender.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    /// A sender for `settings`; reads the CA file now.
    pub fn new(settings: &MailSettings) -> Result<Mailer, MailError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| MailError::Settings(format!("alerts.mail.from: {e}")))?;
        let domain = from.email.domain().to_owned();
        let tls_params = || -> Result<TlsParameters, MailError> {
            let mut b = TlsParameters::builder(settings.server.clone());
            if let Some(ca) = &settings.ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    MailError::Settings(format!("alerts.mail.ca_file {}: {e}", ca.display()))
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    MailError::Settings(format!("alerts.mail.ca_file {}: {e}", ca.display()))
                })?;
                b = b.add_root_certificate(cert);
            }
            b.build_rustls()
                .map_err(|e| MailError::Settings(format!("TLS: {e}")))
        };
        let tls = match settings.security {
            MailSecurity::StartTls => Tls::Required(tls_params()?),
            MailSecurity::Tls => Tls::Wrapper(tls_params()?),
            MailSecurity::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.server)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout));
        if let Some((user, password)) = &settings.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            domain,
        })
    }

    /// Sends one message to `name <address>`; `id` becomes its `Message-ID` (so that a retry
    /// after an unclear failure is recognisable as the same mail) and `kind` its
    /// `X-Kaigo-Relay-Kind`.
    pub async fn send(
        &self,
        address: &str,
        name: &str,
        rendered: &Rendered,
        id: &str,
        kind: &str,
    ) -> Result<(), MailError> {
        let to_addr: lettre::Address = address
            .parse()
            .map_err(|e| MailError::Refused(format!("{address}: {e}")))?;
        let to = Mailbox::new(Some(name.to_owned()).filter(|n| !n.is_empty()), to_addr);
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject.clone())
            .message_id(Some(format!("<{id}@{}>", self.domain)))
            .date_now()
            .user_agent(format!("kaigo-relay/{}", env!("CARGO_PKG_VERSION")))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Kaigo-Relay-Kind"),
                kind.to_owned(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_owned(),
            ))
            .header(ContentType::TEXT_PLAIN)
            .body(rendered.body.clone())
            .map_err(|e| MailError::Settings(e.to_string()))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => {
                Err(MailError::Refused(crate::transport::error_chain(&e)))
            }
            Err(e) => Err(MailError::Failed(crate::transport::error_chain(&e))),
        }
    }
}
