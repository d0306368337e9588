//! `kaigo-relay status`: where every submission stands, as a table for people or as JSON for
//! scripts and tests. While the daemon runs, the command asks it over a Unix socket in the state
//! folder (`control.sock`, owner only): the daemon holds the store as its exclusive writer, which
//! lets each commit cost one fsync instead of the two a file shared with readers needs. When no
//! daemon answers, the command reads the store itself, read-only.
//!
//! Invariant: read-only. Neither path ever writes to the store, so it can run at any time.

use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

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
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every submission, oldest first.
    pub submissions: Vec<Submission>,
    /// Current alerts.
    pub alerts: Vec<Alert>,
}

/// The daemon's control socket, in the state folder.
pub const SOCKET_NAME: &str = "control.sock";

/// Longest request line (a query carries a note of a few hundred characters at most).
const MAX_REQUEST_BYTES: u64 = 16 * 1024;

/// The daemon's answer on the control socket.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Status(Box<Snapshot>),
    Doc(serde_json::Value),
    Error(String),
    /// An error with a catalogue entry, so the command can say where it is explained.
    Refused {
        text: String,
        code: String,
    },
}

impl Answer {
    /// The answer for a failed query.
    fn failed(e: &anyhow::Error) -> Answer {
        match crate::explain::code_of(e) {
            Some(c) => Answer::Refused {
                text: format!("{e:#}"),
                code: c.as_str().into(),
            },
            None => Answer::Error(format!("{e:#}")),
        }
    }
}

/// The error a command shows for a refusal the daemon answered.
fn refused(text: String, code: &str) -> anyhow::Error {
    match admin_ui::help::known(code) {
        Some(c) => crate::explain::coded(c, text),
        None => anyhow::anyhow!(text),
    }
}

/// Reads every submission and alert: from the running daemon if one answers on its socket in
/// `state_dir`, otherwise from the store at `store_path` (an absent store means none yet).
pub fn load(state_dir: &Path, store_path: &Path) -> anyhow::Result<Snapshot> {
    let socket = state_dir.join(SOCKET_NAME);
    // A daemon that is starting holds (or is just creating) the store before its socket
    // answers: ask again for a few seconds before reporting what reading the store said.
    for _ in 0..50 {
        match ask_daemon(&socket) {
            Ok(snapshot) => return Ok(snapshot),
            Err(AskError::Failed(e)) => return Err(e),
            Err(AskError::NoDaemon) => match load_from_store(store_path) {
                Ok(snapshot) => return Ok(snapshot),
                Err(e) => {
                    debug!(
                        error = format!("{e:#}"),
                        "store not readable yet; asking again"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            },
        }
    }
    match ask_daemon(&socket) {
        Ok(snapshot) => Ok(snapshot),
        Err(AskError::Failed(e)) => Err(e),
        Err(AskError::NoDaemon) => load_from_store(store_path),
    }
}

/// Runs `q` on the running daemon over its socket; when none answers, runs `local` on the store
/// opened here: read-only for reading, as its writer when `writes` (retrying while a starting
/// daemon holds it). An absent store answers `Null` to a read (nothing mirrored yet).
pub fn ask_or_open(
    state_dir: &Path,
    store_path: &Path,
    q: &crate::listing::Query,
    writes: bool,
    local: impl Fn(&Store) -> anyhow::Result<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let socket = state_dir.join(SOCKET_NAME);
    let line = format!("query {}\n", serde_json::to_string(q)?);
    let mut last = None;
    for _ in 0..50 {
        match ask(&socket, &line) {
            Ok(Answer::Doc(v)) => return Ok(v),
            Ok(Answer::Error(e)) => anyhow::bail!("{e}"),
            Ok(Answer::Refused { text, code }) => return Err(refused(text, &code)),
            Ok(Answer::Status(_)) => anyhow::bail!("unexpected answer from the daemon"),
            Err(AskError::Failed(e)) => return Err(e),
            Err(AskError::NoDaemon) => {}
        }
        if !store_path.exists() {
            if writes {
                return Err(crate::explain::coded(
                    admin_ui::help::code::SYSTEM_NO_STORE_YET,
                    format!(
                        "データベースがまだありません (no store yet: {})",
                        store_path.display()
                    ),
                ));
            }
            return Ok(serde_json::Value::Null);
        }
        let opened = if writes {
            Store::open(store_path)
        } else {
            Store::open_for_reading(store_path)
        };
        match opened {
            Ok(store) => return local(&store),
            Err(e) => {
                debug!(error = %e, "store not available yet; asking again");
                last = Some(e);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("no answer"), anyhow::Error::from))
}

fn ask(socket: &Path, line: &str) -> Result<Answer, AskError> {
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(AskError::NoDaemon);
        }
        Err(e) => {
            return Err(AskError::Failed(anyhow::Error::new(e).context(
                crate::explain::Coded {
                    code: admin_ui::help::code::SYSTEM_STATUS_NO_ANSWER,
                    text: format!("{} に接続できません (cannot connect)", socket.display()),
                },
            )));
        }
    };
    let mut exchange = || -> anyhow::Result<Answer> {
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.write_all(line.as_bytes())?;
        let mut reply = Vec::new();
        std::io::BufReader::new(&stream).read_to_end(&mut reply)?;
        serde_json::from_slice::<Answer>(&reply).context("unreadable answer")
    };
    exchange()
        .context(crate::explain::Coded {
            code: admin_ui::help::code::SYSTEM_STATUS_NO_ANSWER,
            text: "kaigo-relay からの応答を読めません (cannot read the daemon's answer)".into(),
        })
        .map_err(AskError::Failed)
}

enum AskError {
    /// Nobody listens on the socket.
    NoDaemon,
    /// A daemon answered with an error, or the answer could not be read.
    Failed(anyhow::Error),
}

fn ask_daemon(socket: &Path) -> Result<Snapshot, AskError> {
    match ask(socket, "status\n")? {
        Answer::Status(snapshot) => Ok(*snapshot),
        Answer::Error(e) => Err(AskError::Failed(anyhow::anyhow!("{e}"))),
        Answer::Refused { text, code } => Err(AskError::Failed(refused(text, &code))),
        Answer::Doc(_) => Err(AskError::Failed(anyhow::anyhow!(
            "unexpected answer from the daemon"
        ))),
    }
}

fn load_from_store(path: &Path) -> anyhow::Result<Snapshot> {
    if !path.exists() {
        return Ok(Snapshot::default());
    }
    let store = Store::open_for_reading(path)?;
    snapshot(&store)
}

fn snapshot(store: &Store) -> anyhow::Result<Snapshot> {
    Ok(Snapshot {
        submissions: store.all()?,
        alerts: alerts::current(store)?,
    })
}

/// Answers `status` on the control socket until `shutdown`. A stale socket left by a crash is
/// replaced; the socket is readable and writable by the service's user only.
pub async fn serve(
    store: Store,
    state_dir: PathBuf,
    control: crate::listing::Control,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let path = state_dir.join(SOCKET_NAME);
    if let Ok(meta) = std::fs::symlink_metadata(&path)
        && meta.file_type().is_socket()
    {
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove the old socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(&path).with_context(|| {
        format!(
            "制御ソケット {} を作成できません (cannot create the control socket)",
            path.display()
        )
    })?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    info!(socket = %path.display(), "answering status requests");
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let store = store.clone();
                    connections.spawn(answer(stream, store, control.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "コマンドからの接続を受け付けられませんでした (control socket accept failed)");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn answer(
    mut stream: tokio::net::UnixStream,
    store: Store,
    control: crate::listing::Control,
) {
    let mut line = String::new();
    let request = {
        let mut reader = tokio::io::BufReader::new((&mut stream).take(MAX_REQUEST_BYTES));
        tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await
    };
    match request {
        Ok(Ok(_)) if line.trim() == "status" => {}
        Ok(Ok(_)) if line.starts_with("query ") => {
            let reply = match serde_json::from_str::<crate::listing::Query>(line[6..].trim()) {
                Ok(q) => {
                    match tokio::task::spawn_blocking(move || crate::listing::answer(&control, &q))
                        .await
                    {
                        Ok(Ok(v)) => Answer::Doc(v),
                        Ok(Err(e)) => Answer::failed(&e),
                        Err(e) => Answer::Error(format!("query failed: {e}")),
                    }
                }
                Err(e) => Answer::Error(format!("unreadable query: {e}")),
            };
            if let Ok(bytes) = serde_json::to_vec(&reply) {
                let _ = stream.write_all(&bytes).await;
            }
            let _ = stream.shutdown().await;
            return;
        }
        Ok(Ok(_)) => {
            let refusal = Answer::Error(format!("unknown request {:?}", line.trim()));
            if let Ok(bytes) = serde_json::to_vec(&refusal) {
                let _ = stream.write_all(&bytes).await;
            }
            let _ = stream.shutdown().await;
            return;
        }
        Ok(Err(e)) => {
            debug!(error = %e, "control socket read failed");
            return;
        }
        Err(_) => return,
    }
    // The answer is written as the store is read, one submission at a time, on a blocking
    // thread: however many claims the store holds, the daemon's memory does not grow with it.
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "コマンドとの接続を使えません (control socket)");
            return;
        }
    };
    let written = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_write_timeout(Some(Duration::from_secs(60)))?;
        let mut out = std::io::BufWriter::new(&stream);
        write_status_answer(&store, &mut out)?;
        out.flush()?;
        Ok(())
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = format!("{e:#}"), "status answer cut short"),
        Err(e) => warn!(error = %e, "状況を答える内部の処理が失敗しました (status task failed)"),
    }
}

/// Writes `Answer::Status` as JSON, streaming the submissions from the store.
fn write_status_answer(store: &Store, out: &mut impl Write) -> anyhow::Result<()> {
    out.write_all(br#"{"Status":{"submissions":["#)?;
    let mut first = true;
    store.each(|sub| -> anyhow::Result<()> {
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        serde_json::to_writer(&mut *out, &sub)?;
        Ok(())
    })?;
    out.write_all(br#"],"alerts":"#)?;
    serde_json::to_writer(&mut *out, &alerts::current(store)?)?;
    out.write_all(b"}}")?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::submission::State;
    use jiff::Timestamp;

    #[test]
    fn the_streamed_answer_reads_back_as_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let mut out = Vec::new();
        write_status_answer(&store, &mut out).unwrap();
        let Answer::Status(empty) = serde_json::from_slice(&out).unwrap() else {
            panic!("a status answer: {}", String::from_utf8_lossy(&out));
        };
        assert!(empty.submissions.is_empty() && empty.alerts.is_empty());

        for (name, sha) in [("A.CSV", "aa"), ("B.CSV", "bb"), ("C.CSV", "cc")] {
            let mut sub = Submission::new(name.into(), sha.into(), 1, Timestamp::now());
            sub.transition(State::Queued, "queued", Timestamp::now());
            store.record_new(sub, b"x".to_vec()).unwrap();
        }
        let mut out = Vec::new();
        write_status_answer(&store, &mut out).unwrap();
        let Answer::Status(snap) = serde_json::from_slice(&out).unwrap() else {
            panic!("a status answer");
        };
        let names: Vec<&str> = snap
            .submissions
            .iter()
            .map(|s| s.file_name.as_str())
            .collect();
        assert_eq!(
            names,
            ["A.CSV", "B.CSV", "C.CSV"],
            "every one, oldest first"
        );
        assert_eq!(snap.submissions, store.all().unwrap());
    }
}
