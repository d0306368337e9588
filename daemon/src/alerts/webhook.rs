//! Alert webhooks: an HTTPS POST of a JSON body, signed so that the receiver can tell it came
//! from this appliance and was not replayed: `X-Kaigo-Relay-Signature: sha256=<hex>` is the
//! HMAC-SHA256, keyed with the webhook's secret, of `<X-Kaigo-Relay-Timestamp>.<body>`.
//! `X-Kaigo-Relay-Delivery` names the delivery, the same on every retry, for the receiver to
//! de-duplicate. The server is verified against the system's CA roots plus an optional CA file.
//!
//! Invariant: a delivery counts as sent only on a 2xx answer; 4xx answers other than 408 and
//! 429 are permanent refusals, everything else is retried by the dispatcher.

use std::sync::Arc;

use hmac::{KeyInit, Mac};

use crate::config::WebhookSettings;

/// Why a webhook was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The settings cannot be used (an unreadable CA file).
    #[error("Webhook の設定が使えません (webhook settings unusable): {0}")]
    Settings(String),
    /// The receiver refused it for good.
    #[error("Webhook の受け手が拒否しました (the receiver refused it): HTTP {0}")]
    Refused(u16),
    /// Connection, TLS, timeout or a temporary refusal.
    #[error("Webhook を送れませんでした (could not deliver the webhook): {0}")]
    Failed(String),
}

impl WebhookError {
    /// Its entry in the message catalogue.
    pub fn code(&self) -> admin_ui::help::Code {
        use admin_ui::help::code;
        match self {
            WebhookError::Settings(_) => code::ALERTS_WEBHOOK_SETTINGS,
            WebhookError::Refused(_) => code::ALERTS_WEBHOOK_REFUSED,
            WebhookError::Failed(_) => code::ALERTS_WEBHOOK_FAILED,
        }
    }

    /// Whether retrying may help.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, WebhookError::Failed(_))
    }
}

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error branch cannot happen.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A configured webhook.
#[derive(Debug, Clone)]
pub struct Hook {
    settings: WebhookSettings,
    client: reqwest::Client,
}

impl Hook {
    /// A client for `settings`; reads the CA file and the system roots now.
    pub fn new(settings: &WebhookSettings) -> Result<Hook, WebhookError> {
        let mut roots = match &settings.ca_file {
            Some(ca) => crate::transport::load_roots(ca)
                .map_err(|e| WebhookError::Settings(format!("{}: {e:#}", ca.display())))?,
            None => rustls::RootCertStore::empty(),
        };
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if roots.is_empty() {
            return Err(WebhookError::Settings(
                "信頼する CA がありません（ca-certificates を入れるか ca_file を指定してください） (no CA roots: install ca-certificates or set ca_file)".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| WebhookError::Settings(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(format!("kaigo-relay/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Settings(e.to_string()))?;
        Ok(Hook {
            settings: settings.clone(),
            client,
        })
    }

    /// The webhook's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// POSTs `body`, signed, as delivery `id` of `kind`.
    pub async fn send(
        &self,
        body: &serde_json::Value,
        id: &str,
        kind: &str,
    ) -> Result<(), WebhookError> {
        let bytes = serde_json::to_vec(body).map_err(|e| WebhookError::Settings(e.to_string()))?;
        let ts = jiff::Timestamp::now().as_second();
        let sig = signature(self.settings.secret.expose().as_bytes(), ts, &bytes);
        let answer = self
            .client
            .post(self.settings.url.to_string())
            .header("content-type", "application/json; charset=utf-8")
            .header("x-kaigo-relay-delivery", id)
            .header("x-kaigo-relay-event", kind)
            .header("x-kaigo-relay-timestamp", ts.to_string())
            .header("x-kaigo-relay-signature", sig)
            .body(bytes)
            .send()
            .await
            .map_err(|e| WebhookError::Failed(crate::transport::error_chain(&e)))?;
        let status = answer.status().as_u16();
        match status {
            200..=299 => Ok(()),
            408 | 429 => Err(WebhookError::Failed(format!("HTTP {status}"))),
            400..=499 => Err(WebhookError::Refused(status)),
            _ => Err(WebhookError::Failed(format!("HTTP {status}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(b"secret", b'1700000000.{"a":1}', sha256).
        assert_eq!(
            signature(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "sha256=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
        assert_ne!(signature(b"k", 1, b"x"), signature(b"k", 2, b"x"));
        assert_ne!(signature(b"k", 1, b"x"), signature(b"j", 1, b"x"));
    }
}
