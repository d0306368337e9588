//! `kaigo-relay status`: where every submission stands, read from the store (read-only, safe
//! alongside the running daemon), as a table for people or as JSON for scripts and tests.
//!
//! Invariant: read-only. It never opens the store for writing, so it can run at any time.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::alerts::{self, Alert};
use crate::claim::Severity;
use crate::store::Store;
use crate::submission::Submission;
use crate::timefmt::{jst_minutes, jst_rfc3339};

/// One line of `status --json`.
#[derive(Debug, Serialize)]
pub struct StatusEntry {
    /// Submission id (also its idempotency key).
    pub id: String,
    /// File name as dropped.
    pub file_name: String,
    /// SHA-256 of the bytes (hex).
    pub sha256: String,
    /// 事業所番号.
    pub office_number: Option<String>,
    /// State (snake_case).
    pub state: &'static str,
    /// 受付番号.
    pub receipt_id: Option<String>,
    /// ○ △ ×.
    pub reception_mark: Option<String>,
    /// Number of sends.
    pub attempts: usize,
    /// 処理対象年月.
    pub processing_month: Option<String>,
    /// When intake took it (RFC 3339, JST).
    pub taken_at: String,
    /// When the receipt was stored (RFC 3339, JST).
    pub receipt_stored_at: Option<String>,
    /// Where the file went, relative to the drop folder.
    pub moved_to: Option<String>,
    /// For duplicates: the submission with the same bytes.
    pub duplicate_of: Option<String>,
    /// The 8.3 name it is sent under, when its own name is not one the federation accepts.
    pub send_name: Option<String>,
    /// Error codes found by the check.
    pub errors: Vec<String>,
    /// Warning codes found by the check (the file is sent).
    pub warnings: Vec<String>,
    /// Explanation, Japanese.
    pub note_ja: Option<String>,
    /// Explanation, English.
    pub note_en: Option<String>,
}

/// The whole `status --json` document.
#[derive(Debug, Serialize)]
pub struct StatusDocument {
    /// Every submission, oldest first.
    pub submissions: Vec<StatusEntry>,
    /// Conditions that need a person, oldest first.
    pub alerts: Vec<Alert>,
}

impl From<&Submission> for StatusEntry {
    fn from(s: &Submission) -> Self {
        StatusEntry {
            id: s.id.to_string(),
            file_name: s.file_name.clone(),
            sha256: s.sha256.clone(),
            office_number: s.office_number.as_ref().map(|o| o.to_string()),
            state: s.state.as_str(),
            receipt_id: s.receipt.as_ref().map(|r| r.receipt_id.clone()),
            reception_mark: s.reception.as_ref().and_then(|r| r.mark.clone()),
            attempts: s.send_attempts(),
            processing_month: s.processing_month.map(|m| m.to_string()),
            taken_at: jst_rfc3339(s.taken_at),
            receipt_stored_at: s.receipt.as_ref().map(|r| jst_rfc3339(r.stored_at)),
            moved_to: s.moved_to.clone(),
            duplicate_of: s.duplicate_of.as_ref().map(|d| d.to_string()),
            send_name: s.send_name.clone(),
            warnings: s
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .map(|f| f.code.clone())
                .collect(),
            errors: s
                .findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .map(|f| f.code.clone())
                .collect(),
            note_ja: s.note.as_ref().map(|n| n.ja.clone()),
            note_en: s.note.as_ref().map(|n| n.en.clone()),
        }
    }
}

/// What `status` shows.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every submission, oldest first.
    pub submissions: Vec<Submission>,
    /// Current alerts.
    pub alerts: Vec<Alert>,
}

/// Reads every submission and alert from the store at `path`; an absent store means none yet.
pub fn load(path: &Path) -> anyhow::Result<Snapshot> {
    if !path.exists() {
        return Ok(Snapshot::default());
    }
    let store = Store::open_for_reading(path)?;
    Ok(Snapshot {
        submissions: store.all()?,
        alerts: alerts::current(&store)?,
    })
}

/// Writes the JSON document.
pub fn write_json(snap: &Snapshot, out: &mut impl Write) -> anyhow::Result<()> {
    let doc = StatusDocument {
        submissions: snap.submissions.iter().map(StatusEntry::from).collect(),
        alerts: snap.alerts.clone(),
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)?;
    Ok(())
}

/// Writes a table for people: alerts first, then every submission.
pub fn write_table(snap: &Snapshot, out: &mut impl Write) -> anyhow::Result<()> {
    for a in &snap.alerts {
        writeln!(out, "【要対応】{}", a.message_ja)?;
        writeln!(out, "    ({})", a.message_en)?;
    }
    let subs = &snap.submissions;
    if subs.is_empty() {
        writeln!(
            out,
            "まだ取り込んだファイルはありません。 (No files taken yet.)"
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "取込日時 | ファイル名 | 事業所番号 | 状態 | 受付番号 | 送信回数"
    )?;
    writeln!(out, "(taken | file | office | state | receipt | sends)")?;
    for s in subs {
        writeln!(
            out,
            "{} | {} | {} | {} | {} | {}",
            jst_minutes(s.taken_at),
            s.file_name,
            s.office_number
                .as_ref()
                .map(|o| o.to_string())
                .unwrap_or_else(|| "-".into()),
            s.state.label_ja(),
            s.receipt
                .as_ref()
                .map(|r| r.receipt_id.as_str())
                .unwrap_or("-"),
            s.send_attempts()
        )?;
        if let Some(n) = &s.note {
            writeln!(out, "    → {}", n.ja)?;
        }
    }
    Ok(())
}
