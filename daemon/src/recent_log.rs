//! The daemon's recent log lines, kept in memory for the admin UI's system page: a `tracing`
//! layer beside the one that writes to stderr (the journal), holding the last [`KEEP`] events
//! at INFO and above with their fields, so that the administrator sees what the daemon said
//! without a shell on the appliance.
//!
//! Invariant: memory is bounded (the oldest line goes when a new one comes), and the layer
//! never blocks or fails the code that logs: a poisoned lock is taken over, and a line is at
//! most [`MAX_LINE`] characters.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;

use jiff::Timestamp;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Lines kept.
pub const KEEP: usize = 300;
/// Characters kept of one line.
pub const MAX_LINE: usize = 2000;

/// One logged event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When it was logged.
    pub at: Timestamp,
    /// `ERROR`, `WARN`, `INFO`.
    pub level: Level,
    /// The module that logged it.
    pub target: String,
    /// The message, then its fields as `name=value`.
    pub text: String,
    /// The `code` field, when the line names a message-catalogue entry.
    pub code: Option<String>,
}

static LINES: Mutex<VecDeque<Line>> = Mutex::new(VecDeque::new());

/// The layer to install beside the stderr writer.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecentLog;

struct Text {
    message: String,
    fields: String,
    code: Option<String>,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else if field.name() == "code" {
            self.code = Some(value.to_owned());
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else if field.name() == "code" {
            // `code = %c` arrives here as its Display.
            self.code = Some(format!("{value:?}"));
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for RecentLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::INFO {
            return;
        }
        let mut text = Text {
            message: String::new(),
            fields: String::new(),
            code: None,
        };
        event.record(&mut text);
        let mut line = text.message;
        line.push_str(&text.fields);
        if line.chars().count() > MAX_LINE {
            line = line.chars().take(MAX_LINE).collect::<String>() + "…";
        }
        push(Line {
            at: Timestamp::now(),
            level: *meta.level(),
            target: meta.target().to_owned(),
            text: line,
            code: text.code,
        });
    }
}

fn push(line: Line) {
    let mut lines = LINES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if lines.len() >= KEEP {
        lines.pop_front();
    }
    lines.push_back(line);
}

/// The lines kept, newest first.
pub fn lines() -> Vec<Line> {
    let lines = LINES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    lines.iter().rev().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn keeps_the_newest_lines_with_their_fields_and_skips_debug() {
        let subscriber = tracing_subscriber::registry().with(RecentLog);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!("not kept");
            for i in 0..(KEEP + 5) {
                tracing::info!(n = i, office = "1379999996", "line {i}");
            }
            tracing::warn!(error = "disk full", "cannot write");
            tracing::warn!(code = %admin_ui::help::code::SYSTEM_DISK_LOW, "low");
            tracing::warn!(code = "mirror.disabled", "off");
        });
        let lines = lines();
        assert_eq!(lines.len(), KEEP);
        // The code is kept apart from the text, whether logged as Display or as a string.
        assert_eq!(lines[0].text, "off");
        assert_eq!(lines[0].code.as_deref(), Some("mirror.disabled"));
        assert_eq!(lines[1].text, "low");
        assert_eq!(lines[1].code.as_deref(), Some("system.disk_low"));
        let lines = &lines[2..];
        assert_eq!(lines[0].level, Level::WARN);
        assert_eq!(lines[0].text, "cannot write error=disk full");
        assert_eq!(lines[0].code, None);
        assert!(lines[1].text.starts_with(&format!("line {}", KEEP + 4)));
        assert!(lines[1].text.contains("n=304"), "{}", lines[1].text);
        assert!(lines[1].text.contains("office=1379999996"));
        assert!(lines.iter().all(|l| !l.text.contains("not kept")));
        assert!(lines[0].target.ends_with("recent_log::tests"));
    }
}
