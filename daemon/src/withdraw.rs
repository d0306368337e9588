//! Withdraw (取消): asks the gateway to withdraw a submission by its receipt number and records
//! the outcome on the submission. `kaigo-relay withdraw --config PATH RECEIPT_ID` does it itself
//! when the daemon is stopped; when the daemon is running (it holds the store), the command
//! leaves a request in `<state_dir>/requests/` that the daemon's withdraw desk carries out within
//! a second, and waits for the answer there.
//!
//! Invariants: only the store's single writer records a withdrawal, so the daemon and the
//! command never write the store at once; a withdrawal is recorded only after the gateway
//! confirmed it; withdrawing twice is harmless (the gateway answers the same); a refusal (past
//! the withdraw cut-off) is explained to the clerk and changes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use admin_ui::help::code;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::federation::{GatewayApi, GatewayError};
use crate::store::Store;
use crate::submission::{Attempt, Note, State, Submission};

/// Folder under the state directory where the command leaves requests for the daemon.
pub const REQUESTS_DIR: &str = "requests";
const REQUEST_PREFIX: &str = "withdraw-";

/// How a withdrawal ended, for the command to print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// Whether the submission is now withdrawn.
    pub withdrawn: bool,
    /// The receipt number asked about.
    pub receipt_id: String,
    /// The file, when the receipt was found.
    pub file_name: Option<String>,
    /// What happened, in Japanese.
    pub message_ja: String,
    /// The same in English.
    pub message_en: String,
    /// Its entry in the message catalogue (absent in requests answered by an older daemon).
    #[serde(default)]
    pub code: Option<String>,
}

fn refused(
    code: admin_ui::help::Code,
    receipt_id: &str,
    sub: Option<&Submission>,
    ja: String,
    en: String,
) -> Outcome {
    Outcome {
        code: Some(code.as_str().into()),
        withdrawn: false,
        receipt_id: receipt_id.to_owned(),
        file_name: sub.map(|s| s.file_name.clone()),
        message_ja: ja,
        message_en: en,
    }
}

/// Finds the submission with this receipt, asks the gateway to withdraw it, and records the
/// result. Errors are only store failures; every answer of the gateway is an `Outcome`.
pub async fn perform<G: GatewayApi>(
    store: &Store,
    gateway: &G,
    receipt_id: &str,
) -> anyhow::Result<Outcome> {
    let wanted = receipt_id.to_owned();
    let found = store
        .call(move |s| {
            Ok(s.all()?
                .into_iter()
                .find(|sub| sub.receipt.as_ref().is_some_and(|r| r.receipt_id == wanted)))
        })
        .await?;
    let Some(sub) = found else {
        return Ok(refused(
            code::WITHDRAW_RECEIPT_UNKNOWN,
            receipt_id,
            None,
            format!(
                "受付番号 {receipt_id} の送信はこの装置の記録にありません。番号を確かめてください。"
            ),
            format!("No submission with receipt {receipt_id} on this appliance. Check the number."),
        ));
    };
    match sub.state {
        State::Withdrawn => {
            return Ok(Outcome {
                code: Some(code::WITHDRAW_WITHDRAWN.as_str().into()),
                withdrawn: true,
                receipt_id: receipt_id.to_owned(),
                file_name: Some(sub.file_name.clone()),
                message_ja: format!(
                    "「{}」（受付番号 {receipt_id}）はすでに取消済みです。",
                    sub.file_name
                ),
                message_en: format!(
                    "\"{}\" (receipt {receipt_id}) is already withdrawn.",
                    sub.file_name
                ),
            });
        }
        State::Arrived | State::Accepted | State::AcceptedWithReturns => {}
        other => {
            return Ok(refused(
                code::WITHDRAW_NOT_ALLOWED,
                receipt_id,
                Some(&sub),
                format!(
                    "「{}」は「{}」の状態のため取り消せません。",
                    sub.file_name,
                    other.label_ja()
                ),
                format!("\"{}\" is {other}; it cannot be withdrawn.", sub.file_name),
            ));
        }
    }
    let Some(office) = sub.office_number.clone() else {
        return Ok(refused(
            code::WITHDRAW_NOT_ALLOWED,
            receipt_id,
            Some(&sub),
            "事業所番号が記録にないため取り消せません。".into(),
            "The submission has no office number; it cannot be withdrawn.".into(),
        ));
    };
    let started = Timestamp::now();
    let clock = std::time::Instant::now();
    let result = gateway.withdraw(&office, receipt_id).await;
    let attempt = |outcome: String, answered: bool| Attempt {
        action: "withdraw".into(),
        started_at: started,
        duration_ms: clock.elapsed().as_millis() as u64,
        outcome,
        answered,
    };
    match result {
        Ok(()) => {
            let a = attempt("withdrawn".into(), true);
            let id = sub.id.clone();
            let rid = receipt_id.to_owned();
            let stored = store
                .call(move |s| {
                    s.update(&id, move |sub| {
                        let now = Timestamp::now();
                        sub.attempts.push(a);
                        sub.next_action_at = None;
                        sub.note = Some(Note {
                            code: Some(code::WITHDRAW_WITHDRAWN.as_str().into()),
                            ja: format!("国保連で取消済みです（受付番号 {rid}）。直したファイルを投入フォルダーに保存すると、あらためて送信します。"),
                            en: format!("Withdrawn at the federation (receipt {rid}). Save the corrected file to the drop folder to send it again."),
                        });
                        sub.transition(State::Withdrawn, "取消 / withdrawn", now);
                    })
                })
                .await?;
            info!(submission = %stored.id, receipt = receipt_id, "withdrawn at the federation");
            let audit = crate::store::NewAudit {
                actor: Some("cli".into()),
                action: "withdrawn".into(),
                target: Some(stored.id.to_string()),
                detail: format!(
                    "{} 受付番号 {receipt_id} を取消 / withdrawn",
                    stored.file_name
                ),
                ..Default::default()
            };
            if let Err(e) = store.call(move |s| s.audit(audit)).await {
                warn!(
                    error = format!("{e:#}"),
                    "監査ログに書き込めませんでした (cannot write the audit log)"
                );
            }
            Ok(Outcome {
                code: Some(code::WITHDRAW_WITHDRAWN.as_str().into()),
                withdrawn: true,
                receipt_id: receipt_id.to_owned(),
                file_name: Some(stored.file_name.clone()),
                message_ja: format!(
                    "「{}」（受付番号 {receipt_id}）を取り消しました。",
                    stored.file_name
                ),
                message_en: format!("Withdrew \"{}\" (receipt {receipt_id}).", stored.file_name),
            })
        }
        Err(e) => {
            let (which, ja, en) = match &e {
                GatewayError::Refused { code: wire, .. } if wire == "withdraw_closed" => (
                    code::WITHDRAW_CLOSED,
                    "取消の受付期限を過ぎているため、国保連が取消を受け付けませんでした。国保連合会に連絡してください。".to_owned(),
                    "The withdraw cut-off has passed; the federation refused. Contact the federation.".to_owned(),
                ),
                GatewayError::NotFound => (
                    code::GATEWAY_NOT_FOUND,
                    "国保連にこの受付番号の記録がありません。".to_owned(),
                    "The federation has no record of this receipt.".to_owned(),
                ),
                GatewayError::NotSent { .. } | GatewayError::Unknown { .. } => (
                    code::WITHDRAW_GATEWAY_UNREACHABLE,
                    "国保連のゲートウェイにつながらず、取り消せませんでした。しばらくしてからもう一度実行してください。".to_owned(),
                    "Could not reach the gateway; nothing was withdrawn. Try again later.".to_owned(),
                ),
                GatewayError::Refused { code: wire, .. } => (
                    admin_ui::help::gateway(wire),
                    "国保連が取消を受け付けませんでした。".to_owned(),
                    "The federation refused the withdrawal.".to_owned(),
                ),
                _ => (
                    code::GATEWAY_OTHER,
                    "国保連が取消を受け付けませんでした。".to_owned(),
                    "The federation refused the withdrawal.".to_owned(),
                ),
            };
            warn!(receipt = receipt_id, error = %e, "取消はできませんでした (withdrawal not done)");
            let audit = crate::store::NewAudit {
                actor: Some("cli".into()),
                action: "withdraw_refused".into(),
                target: Some(sub.id.to_string()),
                detail: format!("受付番号 {receipt_id}: {e}"),
                ..Default::default()
            };
            if let Err(e) = store.call(move |s| s.audit(audit)).await {
                warn!(
                    error = format!("{e:#}"),
                    "監査ログに書き込めませんでした (cannot write the audit log)"
                );
            }
            let a = attempt(
                e.to_string(),
                !matches!(
                    e,
                    GatewayError::NotSent { .. } | GatewayError::Unknown { .. }
                ),
            );
            let id = sub.id.clone();
            store
                .call(move |s| s.update(&id, move |sub| sub.attempts.push(a)))
                .await?;
            Ok(refused(
                which,
                receipt_id,
                Some(&sub),
                format!("{ja}（{e}）"),
                format!("{en} ({e})"),
            ))
        }
    }
}

fn request_path(dir: &Path, receipt_id: &str) -> PathBuf {
    dir.join(format!("{REQUEST_PREFIX}{receipt_id}.request"))
}

fn answer_path(dir: &Path, receipt_id: &str) -> PathBuf {
    dir.join(format!("{REQUEST_PREFIX}{receipt_id}.answer.json"))
}

/// Whether a receipt number is safe to use in a file name (the gateway's are `R` + digits).
pub fn valid_receipt_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The command's side when the daemon is running: leaves the request and waits for the answer.
pub fn request_from_daemon(
    state_dir: &Path,
    receipt_id: &str,
    wait: Duration,
) -> anyhow::Result<Outcome> {
    use anyhow::Context as _;
    let dir = state_dir.join(REQUESTS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let answer = answer_path(&dir, receipt_id);
    let _ = std::fs::remove_file(&answer);
    let request = request_path(&dir, receipt_id);
    let tmp = dir.join(format!(".{REQUEST_PREFIX}{receipt_id}.tmp"));
    std::fs::write(&tmp, receipt_id).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &request)
        .with_context(|| format!("cannot write {}", request.display()))?;
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        if let Ok(bytes) = std::fs::read(&answer) {
            let outcome: Outcome =
                serde_json::from_slice(&bytes).context("unreadable answer from the daemon")?;
            let _ = std::fs::remove_file(&answer);
            return Ok(outcome);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&request);
    anyhow::bail!(
        "kaigo-relay の常駐プロセスが {} 秒以内に応答しませんでした。動いているか確認してください (the daemon did not answer within {} s)",
        wait.as_secs(),
        wait.as_secs()
    )
}

/// The daemon's side: looks for requests every second and carries them out one at a time.
#[derive(Debug)]
pub struct WithdrawDesk<G: GatewayApi> {
    /// The store.
    pub store: Store,
    /// The gateway client.
    pub gateway: Arc<G>,
    /// `<state_dir>/requests`.
    pub dir: PathBuf,
}

impl<G: GatewayApi> WithdrawDesk<G> {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            for receipt_id in self.pending() {
                let outcome = match perform(&self.store, self.gateway.as_ref(), &receipt_id).await {
                    Ok(o) => o,
                    Err(e) => {
                        error!(receipt = %receipt_id, error = format!("{e:#}"), "取消をデータベースに記録できませんでした (cannot record a withdrawal)");
                        refused(
                            code::SYSTEM_STORE_FAILED,
                            &receipt_id,
                            None,
                            "装置の記録に書き込めませんでした。管理者に連絡してください。".into(),
                            format!("The store could not be written: {e:#}"),
                        )
                    }
                };
                let bytes = serde_json::to_vec(&outcome)?;
                let answer = answer_path(&self.dir, &receipt_id);
                if let Err(e) = std::fs::write(&answer, bytes) {
                    error!(path = %answer.display(), error = %e, "取消の結果を書き出せませんでした (cannot write the withdraw answer)");
                }
                let _ = std::fs::remove_file(request_path(&self.dir, &receipt_id));
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    fn pending(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name
                    .strip_prefix(REQUEST_PREFIX)?
                    .strip_suffix(".request")?
                    .to_owned();
                valid_receipt_id(&id).then_some(id)
            })
            .collect()
    }
}
