//! The `notices` and `returns` commands: the mirrored notices and the 返戻 to-do list as tables
//! for people or JSON for scripts, a notice's download (original CP932 or UTF-8), and closing a
//! return by hand. While the daemon runs they ask it over the control socket (it holds the store
//! as its exclusive writer); otherwise they open the store themselves.
//!
//! Invariant: reading never changes anything; the one write (closing a return) goes through the
//! store's writer, the daemon's when it runs, and needs a note.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::returns::{Assessment, ReturnItem};
use crate::store::{NoticeRecord, Store};
use crate::timefmt::jst_rfc3339;

/// One line of `notices --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoticeEntry {
    pub notice_id: String,
    pub office_number: String,
    pub kind_id: String,
    pub title: String,
    pub processing_month: String,
    pub media_type: String,
    pub sha256: String,
    pub size: u64,
    pub issued_at: String,
    pub received_at: String,
}

impl From<&NoticeRecord> for NoticeEntry {
    fn from(n: &NoticeRecord) -> Self {
        NoticeEntry {
            notice_id: n.notice_id.clone(),
            office_number: n.office_number.clone(),
            kind_id: n.kind_id.clone(),
            title: n.title.clone(),
            processing_month: n.processing_month.clone(),
            media_type: n.media_type.clone(),
            sha256: n.sha256.clone(),
            size: n.size,
            issued_at: n.issued_at.clone(),
            received_at: jst_rfc3339(n.received_at),
        }
    }
}

/// `notices --json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NoticesDocument {
    pub notices: Vec<NoticeEntry>,
}

/// One line of `returns --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReturnEntry {
    pub id: String,
    pub office_number: String,
    pub insurer_number: String,
    pub insurer_name: String,
    pub insured_number: String,
    pub name_kana: String,
    pub form: String,
    pub service_month: Option<String>,
    pub service_type: String,
    pub units: Option<i64>,
    pub reason_code: String,
    pub content: String,
    pub held: bool,
    pub status: String,
    pub status_ja: String,
    pub linked_submission: Option<String>,
    pub processing_month: String,
    pub notice_id: String,
    pub note: Option<String>,
}

impl From<&ReturnItem> for ReturnEntry {
    fn from(i: &ReturnItem) -> Self {
        ReturnEntry {
            id: i.id.clone(),
            office_number: i.office_number.clone(),
            insurer_number: i.row.insurer_number.clone(),
            insurer_name: i.row.insurer_name.clone(),
            insured_number: i.row.insured_number.clone(),
            name_kana: i.row.name_kana.clone(),
            form: i.row.form.clone(),
            service_month: i.row.service_month.map(|m| m.to_string()),
            service_type: i.row.service_type.clone(),
            units: i.row.units,
            reason_code: i.row.reason_code.clone(),
            content: i.row.content.clone(),
            held: i.row.held,
            status: i.status.as_str().to_owned(),
            status_ja: i.status.label_ja().to_owned(),
            linked_submission: i.linked_submission.as_ref().map(|s| s.to_string()),
            processing_month: i.processing_month.to_string(),
            notice_id: i.notice_id.clone(),
            note: i.note.clone(),
        }
    }
}

/// `returns --json`: the items, and the 7311 査定 rows shown with them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReturnsDocument {
    pub returns: Vec<ReturnEntry>,
    pub assessments: Vec<Assessment>,
}

/// A notice's bytes, for `notices --get`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoticeBody {
    pub notice: NoticeEntry,
    /// Base64 of the original bytes.
    pub bytes_base64: String,
}

/// A request the control socket answers besides `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Query {
    Notices,
    Returns,
    NoticeBody {
        notice_id: String,
    },
    CloseReturn {
        id: String,
        note: String,
    },
    /// `kaigo-relay user …`.
    User {
        user: crate::setup::UserCommand,
    },
    /// `kaigo-relay office …`.
    Office {
        office: crate::setup::OfficeCommand,
    },
    /// `kaigo-relay support-bundle`: the daemon's own figures and recent log.
    Support,
}

impl Query {
    /// Whether answering it writes to the store.
    pub fn writes(&self) -> bool {
        match self {
            Query::Notices | Query::Returns | Query::NoticeBody { .. } | Query::Support => false,
            Query::User {
                user: crate::setup::UserCommand::List,
            }
            | Query::Office {
                office: crate::setup::OfficeCommand::List,
            } => false,
            Query::CloseReturn { .. } | Query::User { .. } | Query::Office { .. } => true,
        }
    }
}

/// What answering a query works with: the store, the state folder (for the administrator's
/// password file), the key that seals office secrets, and whom to tell that offices changed
/// (the running daemon's pipeline; nobody when a command works on the store itself).
#[derive(Debug, Clone)]
pub struct Control {
    /// The store.
    pub store: Store,
    /// The state folder.
    pub state_dir: std::path::PathBuf,
    /// The sealing key.
    pub key: std::sync::Arc<crate::accounts::secrets::SecretKey>,
    /// Told when an office was added or ended.
    pub offices_changed: Option<std::sync::Arc<tokio::sync::Notify>>,
}

/// Answers a query.
pub fn answer(ctl: &Control, q: &Query) -> anyhow::Result<serde_json::Value> {
    let store = &ctl.store;
    Ok(match q {
        Query::User { user } => crate::setup::user(ctl, user)?,
        Query::Office { office } => crate::setup::office(ctl, office)?,
        // Asked of the daemon itself; answered by whatever process holds the store.
        Query::Support => crate::support::daemon_figures(),
        Query::Notices => {
            let mut doc = NoticesDocument::default();
            store.each_notice(|n| {
                doc.notices.push(NoticeEntry::from(&n));
                Ok::<(), crate::store::StoreError>(())
            })?;
            serde_json::to_value(doc)?
        }
        Query::Returns => serde_json::to_value(ReturnsDocument {
            returns: store.returns()?.iter().map(ReturnEntry::from).collect(),
            assessments: store.assessments()?,
        })?,
        Query::NoticeBody { notice_id } => {
            let Some(n) = store.notice(notice_id)? else {
                anyhow::bail!("通知 {notice_id} はありません (no such notice)");
            };
            let Some(bytes) = store.notice_body(&n.sha256)? else {
                anyhow::bail!("通知 {notice_id} の本文がありません (notice body missing)");
            };
            serde_json::to_value(NoticeBody {
                notice: NoticeEntry::from(&n),
                bytes_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            })?
        }
        Query::CloseReturn { id, note } => {
            let item = crate::returns::close(store, id, note, jiff::Timestamp::now())?;
            serde_json::to_value(ReturnEntry::from(&item))?
        }
    })
}

/// Runs a query against the running daemon, or the store when none runs (writing only when the
/// query writes).
pub fn query(state_dir: &Path, store_path: &Path, q: &Query) -> anyhow::Result<serde_json::Value> {
    let writes = q.writes();
    crate::status::ask_or_open(state_dir, store_path, q, writes, |store| {
        if matches!(q, Query::Support) {
            // Only a running daemon has figures and a recent log of its own.
            return Ok(serde_json::json!({ "running": false }));
        }
        let ctl = Control {
            store: store.clone(),
            state_dir: state_dir.to_owned(),
            key: std::sync::Arc::new(crate::accounts::secrets::SecretKey::load_or_create(
                state_dir,
            )?),
            offices_changed: None,
        };
        answer(&ctl, q)
    })
}

/// `notices` as a table.
pub fn write_notices_table(doc: &NoticesDocument, out: &mut impl Write) -> anyhow::Result<()> {
    if doc.notices.is_empty() {
        writeln!(out, "通知はまだありません (no notices yet)")?;
        return Ok(());
    }
    writeln!(
        out,
        "通知ID\t事業所番号\t審査月\t種類\t表題\t形式\t受信日時\n(notice\toffice\tmonth\tkind\ttitle\ttype\treceived)"
    )?;
    for n in &doc.notices {
        // As people read times elsewhere (JST, to the minute); `--json` keeps RFC 3339.
        let received = n
            .received_at
            .parse::<jiff::Timestamp>()
            .map_or_else(|_| n.received_at.clone(), crate::timefmt::jst_minutes);
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            n.notice_id,
            n.office_number,
            n.processing_month,
            n.kind_id,
            n.title,
            n.media_type,
            received
        )?;
    }
    Ok(())
}

/// `returns` as a table.
pub fn write_returns_table(doc: &ReturnsDocument, out: &mut impl Write) -> anyhow::Result<()> {
    if doc.returns.is_empty() {
        writeln!(out, "返戻はありません (no returns)")?;
    } else {
        writeln!(
            out,
            "ID\t状態\t事業所番号\t被保険者番号\tサービス提供年月\t種別\t事由\t内容\t再請求"
        )?;
        for r in &doc.returns {
            writeln!(
                out,
                "{}\t{}{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                r.id,
                r.status_ja,
                if r.held { "（保留）" } else { "" },
                r.office_number,
                r.insured_number,
                r.service_month.as_deref().unwrap_or("-"),
                r.form,
                r.reason_code,
                r.content,
                r.linked_submission.as_deref().unwrap_or("-")
            )?;
        }
    }
    if !doc.assessments.is_empty() {
        writeln!(out, "\n査定（審査増減単位数）")?;
        writeln!(
            out,
            "事業所番号\t被保険者番号\tサービス提供年月\t増減単位数\t事由\t内容"
        )?;
        for a in &doc.assessments {
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}\t{}",
                a.office_number,
                a.row.insured_number,
                a.row
                    .service_month
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                a.row
                    .units_change
                    .map(|u| u.to_string())
                    .unwrap_or_default(),
                a.row.reason_code,
                a.row.content
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_notices_table_shows_the_arrival_in_jst_as_people_read_it() {
        let doc = NoticesDocument {
            notices: vec![NoticeEntry {
                notice_id: "N00000001".into(),
                office_number: "1379999996".into(),
                kind_id: "7411".into(),
                title: "請求明細書・給付管理票返戻（保留）一覧表".into(),
                processing_month: "202612".into(),
                media_type: "text/csv".into(),
                sha256: String::new(),
                size: 1,
                issued_at: String::new(),
                received_at: "2026-12-07T20:39:15.341137694+09:00".into(),
            }],
        };
        let mut out = Vec::new();
        write_notices_table(&doc, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("(notice\toffice"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("N00000001\t") && l.ends_with("\t2026年12月7日 20:39")),
            "{text}"
        );
    }
}
