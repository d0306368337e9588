//! The test alert: sent at once, not through the outbox, to every configured destination (the
//! recipients and webhooks of the config, the administrators with an e-mail address, and any
//! address asked for), so that a person setting up mail sees each destination's outcome on the
//! spot: the 「テスト通知を送る」 button and `kaigo-relay alert test`.
//!
//! Invariant: a test reports one outcome per destination and never marks or changes the
//! outbox; its message names no office.

use jiff::Timestamp;

use super::dispatch::{SendError, Senders};
use super::outbox::{Delivery, Destination, Message, Phase};
use crate::accounts::{Account, Role};
use crate::config::{AlertSettings, Language};

/// The outcome of a test at one destination.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Where it went.
    pub destination: Destination,
    /// `Ok` when the server accepted it.
    pub result: Result<(), SendError>,
}

/// The destinations a test goes to: configured recipients and webhooks, administrators with
/// an e-mail address, and `extra` addresses (`name`, `address`).
pub fn destinations(
    settings: &AlertSettings,
    accounts: &[Account],
    extra: &[(String, String)],
) -> Vec<(Destination, Language)> {
    let mut out: Vec<(Destination, Language)> = Vec::new();
    let mut push = |d: Destination, l: Language| {
        if !out.iter().any(|(o, _)| *o == d) {
            out.push((d, l));
        }
    };
    for (name, address) in extra {
        push(
            Destination::Mail {
                address: address.clone(),
                name: name.clone(),
            },
            settings.language,
        );
    }
    for a in accounts {
        if let Some(email) = a
            .alerts
            .email
            .as_ref()
            .filter(|_| a.role == Role::SystemAdmin && !a.disabled)
        {
            push(
                Destination::Mail {
                    address: email.clone(),
                    name: a.display_name.clone(),
                },
                a.alerts.language.unwrap_or(settings.language),
            );
        }
    }
    for r in &settings.recipients {
        push(
            Destination::Mail {
                address: r.email.clone(),
                name: r.name.clone(),
            },
            r.scope.language.unwrap_or(settings.language),
        );
    }
    for w in &settings.webhooks {
        push(
            Destination::Webhook {
                name: w.name.clone(),
            },
            w.scope.language.unwrap_or(settings.language),
        );
    }
    out
}

/// Sends the test message, asked for by `who`, to each destination in turn.
pub async fn send(
    senders: &Senders,
    to: Vec<(Destination, Language)>,
    who: &str,
    base_url: &str,
) -> Vec<Outcome> {
    let now = Timestamp::now();
    let when = crate::timefmt::jst_minutes(now);
    let when_en = crate::timefmt::jst_minutes_en(now);
    let message = Message::new(
        format!("test/{}", now.as_millisecond()),
        Phase::Test,
        "test",
        "info",
        Vec::new(),
        format!(
            "これは kaigo-relay のテスト通知です（{who} が {when} に送信）。このメールが届いていれば、この宛先への通知は正しく届きます。"
        ),
        format!(
            "This is a kaigo-relay test alert (sent by {who} at {when_en}). If you received it, alerts reach this destination."
        ),
        Some("/alerts".to_owned()),
        now,
    );
    let names = Default::default();
    let mut out = Vec::new();
    for (dest, language) in to {
        let d = Delivery::new(message.clone(), dest.clone(), language, false, None, now);
        let result = senders
            .send(&dest, &[&d], None, &names, base_url, &d.id)
            .await;
        out.push(Outcome {
            destination: dest,
            result,
        });
    }
    out
}
