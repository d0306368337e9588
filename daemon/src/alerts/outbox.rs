//! The durable outbox of alert messages: what is to be told ([`Message`], written in the same
//! store transaction as the condition or event it tells of) and to whom ([`Delivery`], one per
//! destination, written when the message is routed). The dispatcher sends deliveries and marks
//! them; nothing here talks to the network.
//!
//! Invariant: a message is written atomically with its cause and removed only in the
//! transaction that writes its deliveries, so a crash, a restart or a mail server that is down
//! loses no alert; a delivery is marked sent only after the server accepted it.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::Language;

/// What a message tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A condition began.
    Raised,
    /// A condition ended.
    Resolved,
    /// Something happened once.
    Event,
    /// A test sent by a person.
    Test,
}

impl Phase {
    /// Name in the webhook body.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Raised => "raised",
            Phase::Resolved => "resolved",
            Phase::Event => "event",
            Phase::Test => "test",
        }
    }
}

/// One thing to tell people, before it is routed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Its id (UUIDv7: sorts by time).
    pub id: String,
    /// The condition's or event's de-duplication key.
    pub key: String,
    /// Began, ended, happened, test.
    pub phase: Phase,
    /// The alert kind (see [`super::kinds`]).
    pub kind: String,
    /// `warning` or `error` (`info` for a resolution).
    pub severity: String,
    /// The offices concerned (none: the appliance itself).
    pub offices: Vec<String>,
    /// What happened and what to do, Japanese. Never names an insured person.
    pub text_ja: String,
    /// The same in English.
    pub text_en: String,
    /// The admin UI path to see it (`/submissions/…`); the kind's page when `None`.
    #[serde(default)]
    pub link: Option<String>,
    /// When it happened.
    pub at: Timestamp,
}

impl Message {
    /// A new message with a fresh id.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: impl Into<String>,
        phase: Phase,
        kind: &str,
        severity: &str,
        offices: Vec<String>,
        text_ja: String,
        text_en: String,
        link: Option<String>,
        at: Timestamp,
    ) -> Message {
        Message {
            id: uuid::Uuid::now_v7().to_string(),
            key: key.into(),
            phase,
            kind: kind.to_owned(),
            severity: severity.to_owned(),
            offices,
            text_ja,
            text_en,
            link,
            at,
        }
    }
}

/// Where a delivery goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Destination {
    /// An e-mail address.
    Mail {
        /// The address.
        address: String,
        /// The person or mailbox (an account's name or a configured recipient's).
        name: String,
    },
    /// A configured webhook, by name.
    Webhook {
        /// Its name.
        name: String,
    },
}

impl Destination {
    /// A short label for the UI and logs (`mail:a@b`, `webhook:chat`).
    pub fn label(&self) -> String {
        match self {
            Destination::Mail { address, .. } => format!("mail:{address}"),
            Destination::Webhook { name } => format!("webhook:{name}"),
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not sent yet (waiting for its time, the digest, the rate limit or a retry).
    Pending,
    /// Accepted by the mail server or the webhook.
    Sent,
    /// Still failing after `alerts.give_up_after_hours`; logged as an error.
    GaveUp,
}

impl DeliveryState {
    /// Name for the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::GaveUp => "gave_up",
        }
    }
}

/// One message to one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its id (UUIDv7), also the webhook's `X-Kaigo-Relay-Delivery` for receivers to
    /// de-duplicate.
    pub id: String,
    /// What it tells.
    pub message: Message,
    /// Where it goes.
    pub destination: Destination,
    /// Its language.
    pub language: Language,
    /// Held for the daily digest.
    pub digest: bool,
    /// The offices of the message this recipient may see, when it may not see them all: the
    /// message then names only these and uses the kind's general text.
    #[serde(default)]
    pub restricted_to: Option<Vec<String>>,
    /// Where it stands.
    pub state: DeliveryState,
    /// When it was routed (a delivery still failing `alerts.give_up_after_hours` later is
    /// given up).
    pub created_at: Timestamp,
    /// Failed tries so far.
    pub attempts: u32,
    /// Not before this time is the next try due.
    pub next_attempt_at: Timestamp,
    /// The last failure, for the UI.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The catalogue entry of that failure.
    #[serde(default)]
    pub last_error_code: Option<String>,
    /// When it was accepted.
    #[serde(default)]
    pub sent_at: Option<Timestamp>,
    /// The id of the combined message (digest or rate-limit summary) it went out in, if any.
    #[serde(default)]
    pub sent_in: Option<String>,
}

impl Delivery {
    /// A new pending delivery of `message` to `destination`.
    pub fn new(
        message: Message,
        destination: Destination,
        language: Language,
        digest: bool,
        restricted_to: Option<Vec<String>>,
        now: Timestamp,
    ) -> Delivery {
        Delivery {
            id: uuid::Uuid::now_v7().to_string(),
            message,
            destination,
            language,
            digest,
            restricted_to,
            state: DeliveryState::Pending,
            created_at: now,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            last_error_code: None,
            sent_at: None,
            sent_in: None,
        }
    }

    /// The offices this delivery names.
    pub fn offices(&self) -> &[String] {
        self.restricted_to
            .as_deref()
            .unwrap_or(&self.message.offices)
    }
}
