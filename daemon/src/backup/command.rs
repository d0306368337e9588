//! The backup commands: `kaigo-relay backup run|list|verify|key-export|key-confirm` and
//! `kaigo-relay restore`, and the request file through which `backup run` asks a running daemon
//! (which holds the store) to run a backup.
//!
//! Invariants: only the store's single writer records a run, so while the daemon runs, `backup
//! run` asks it rather than writing itself; `restore` refuses while the daemon has the store open
//! (it would replace a file in use); `list` and `verify` only read the sites.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use admin_ui::help::code;
use anyhow::Context as _;

use super::{Backups, RunRecord};
use crate::config::Settings;
use crate::store::{Store, StoreError};

const REQUEST: &str = "backup-run.request";
const ANSWER: &str = "backup-run.answer.json";

/// `kaigo-relay backup …`.
#[derive(Debug, clap::Subcommand)]
pub enum BackupArgs {
    /// 今すぐバックアップする（動作中のデーモンがあれば依頼する）/ Back up now (through the running daemon, if any).
    Run {
        /// JSON で出力する / Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// 保存先ごとのコピーの一覧 / The copies at every site.
    List {
        /// JSON で出力する / Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// コピーを取り出して確認する（戻さない）/ Download and verify copies (without restoring).
    Verify {
        /// この保存先だけ / Only this site.
        #[arg(long)]
        site: Option<String>,
        /// このコピー番号（省略時は最新）/ This copy (default: the newest).
        #[arg(long)]
        seq: Option<u64>,
        /// JSON で出力する / Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// 暗号化の鍵を書き出し、印刷用の形を表示する / Export the encryption key to a file and print it.
    KeyExport {
        /// 書き出す先（USB メモリーなど、装置の外）/ Where to write it (a USB stick: off the appliance).
        #[arg(long)]
        out: PathBuf,
    },
    /// 鍵を書き出して保管したことを記録する / Confirm that the exported key is kept safe.
    KeyConfirm {
        /// 書き出した鍵の鍵ID / The key ID printed by key-export.
        #[arg(long)]
        key_id: String,
    },
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// Runs a `backup` subcommand.
pub fn run(settings: &Settings, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args {
        BackupArgs::Run { json } => {
            std::fs::create_dir_all(&settings.state_dir)
                .with_context(|| format!("cannot create {}", settings.state_dir.display()))?;
            let record = match Store::open(&settings.store_path()) {
                Ok(store) => {
                    let backups = Backups::new(store, settings.backup.clone())?;
                    let r = rt.block_on(backups.run("command"))?;
                    if let Err(e) = backups.check_alerts(jiff::Timestamp::now()) {
                        tracing::warn!(error = %e, "バックアップの通知を確認できませんでした (backup alerts could not be checked)");
                    }
                    r
                }
                Err(StoreError::AlreadyOpen) => {
                    request_from_daemon(&settings.state_dir, Duration::from_secs(3600))?
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                print_json(&record)?;
            } else {
                print_run(&record);
            }
            Ok(if record.all_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        BackupArgs::List { json } => {
            let (sites, _) = super::open_sites(&settings.backup, false)?;
            let mut all = Vec::new();
            for site in &sites {
                let copies = rt.block_on(super::list(site));
                all.push((site, copies));
            }
            if json {
                let doc: Vec<serde_json::Value> = all
                    .iter()
                    .map(|(site, copies)| match copies {
                        Ok(c) => serde_json::json!({"site": site.name(), "location": site.describe(), "copies": c}),
                        Err(e) => serde_json::json!({"site": site.name(), "location": site.describe(), "error": e.to_string()}),
                    })
                    .collect();
                print_json(&doc)?;
            } else {
                if sites.is_empty() {
                    println!(
                        "バックアップの保存先が設定されていません (no backup sites configured)"
                    );
                }
                for (site, copies) in &all {
                    println!("保存先 (site) {} — {}", site.name(), site.describe());
                    match copies {
                        Err(e) => println!("  読めません (cannot list): {e}"),
                        Ok(c) if c.is_empty() => println!("  コピーはありません (no copies)"),
                        Ok(c) => {
                            for copy in c.iter().rev() {
                                match &copy.manifest {
                                    Some(m) => println!(
                                        "  #{:<6} {}  {:>10}  {:>9} 行 (rows)  {}",
                                        m.seq,
                                        crate::timefmt::jst_minutes(m.created_at),
                                        size_text(m.size),
                                        m.rows(),
                                        if m.encryption.is_some() {
                                            "暗号化 (encrypted)"
                                        } else {
                                            ""
                                        }
                                    ),
                                    None => println!(
                                        "  #{:<6} 未完了（目録なし・数えません）(incomplete: no manifest, not counted)",
                                        copy.seq
                                    ),
                                }
                            }
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupArgs::Verify { site, seq, json } => {
            let (sites, key) = super::open_sites(&settings.backup, false)?;
            let chosen: Vec<_> = sites
                .iter()
                .filter(|s| site.as_deref().is_none_or(|n| n == s.name()))
                .collect();
            if chosen.is_empty() {
                return Err(super::BackupError::NoSuchSite(site.unwrap_or_default()).into());
            }
            let work = settings.backup.work_dir.join("verify");
            let mut results = Vec::new();
            for s in chosen {
                let outcome = rt.block_on(async {
                    let copies = super::list(s).await?;
                    let n = super::chosen_copy(&copies, seq).ok_or_else(|| {
                        super::BackupError::NothingToRestore(
                            "確認できるコピーがありません (no complete copy)".into(),
                        )
                    })?;
                    let copy = super::fetch_verified(s, n, key.as_ref(), &work, &|_, _| {}).await?;
                    let _ = std::fs::remove_file(&copy.path);
                    Ok::<_, super::BackupError>(copy.manifest)
                });
                results.push((s.name().to_owned(), outcome));
            }
            let _ = std::fs::remove_dir_all(&work);
            let ok = results.iter().all(|(_, r)| r.is_ok());
            if json {
                let doc: Vec<serde_json::Value> = results
                    .iter()
                    .map(|(site, r)| match r {
                        Ok(m) => serde_json::json!({"site": site, "ok": true, "seq": m.seq, "rows": m.rows(), "size": m.size}),
                        Err(e) => serde_json::json!({"site": site, "ok": false, "error": e.to_string()}),
                    })
                    .collect();
                print_json(&doc)?;
            } else {
                for (site, r) in &results {
                    match r {
                        Ok(m) => println!(
                            "OK  {site} #{}: 取り出し・照合・整合性の確認ができました ({} 行, {}) (downloaded, matched, integrity checked)",
                            m.seq,
                            m.rows(),
                            size_text(m.size)
                        ),
                        Err(e) => {
                            println!("NG  {site}: {e}");
                            println!("    {}", crate::explain::hint(e.code()));
                        }
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        BackupArgs::KeyExport { out } => {
            let key = super::BackupKey::load(&settings.backup.key_file).with_context(|| {
                crate::explain::Coded {
                    code: code::BACKUP_KEY_NOT_CREATED,
                    text: "バックアップ鍵がまだありません。暗号化する保存先 (encrypt = true) を設定してデーモンを一度起動すると作られます (no backup key yet)".into(),
                }
            })?;
            key.save_new(&out).with_context(|| crate::explain::Coded {
                code: code::BACKUP_KEY_EXPORT_FAILED,
                text: format!(
                    "{} に書き出せません（同じ名前のファイルがあれば別の名前にしてください）(cannot write the export)",
                    out.display()
                ),
            })?;
            println!(
                "バックアップ鍵を {} に書き出しました。装置とは別の場所に保管し、下の印刷用の控えも紙に残してください。\n\
                 The backup key was written to {}. Keep it away from the appliance, and keep a printed copy of the form below.\n",
                out.display(),
                out.display()
            );
            println!("鍵ID (key ID): {}\n{}", key.id(), key.printable());
            println!(
                "保管したら次で確認を記録してください / When it is kept safe, confirm:\n  kaigo-relay backup key-confirm --config {} --key-id {}",
                settings.config_path.display(),
                key.id()
            );
            Ok(ExitCode::SUCCESS)
        }
        BackupArgs::KeyConfirm { key_id } => {
            let key = super::BackupKey::load(&settings.backup.key_file)?;
            if key_id.trim() != key.id() {
                return Err(crate::explain::coded(
                    code::BACKUP_KEY_ID_MISMATCH,
                    format!(
                        "鍵ID「{key_id}」はこの装置の鍵（{}）と違います (the key ID does not match)",
                        key.id()
                    ),
                ));
            }
            super::confirm_key(&settings.backup, &key.id())?;
            println!(
                "鍵 {} の書き出しと保管を記録しました (recorded that the key is exported and kept)",
                key.id()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_run(r: &RunRecord) {
    // The catalogue entry under a failure, as under every refusal of a command.
    let hint = |code: Option<&str>| {
        if let Some(code) = code.and_then(admin_ui::help::known) {
            println!("    {}", crate::explain::hint(code));
        }
    };
    if let Some(e) = &r.error {
        println!("バックアップできませんでした (backup failed): {e}");
        hint(r.error_code.as_deref());
        return;
    }
    println!(
        "バックアップ #{}: {} 行, {}（スナップショットと確認 {} ms）/ backup #{}: {} rows",
        r.seq,
        r.rows,
        size_text(r.snapshot_size),
        r.snapshot_ms,
        r.seq,
        r.rows
    );
    for s in &r.sites {
        match &s.error {
            None => println!(
                "  OK  {}: 書き込み・読み戻し確認済み ({}, {} ms) (written and read back)",
                s.site,
                size_text(s.size),
                s.upload_ms
            ),
            Some(e) => {
                println!("  NG  {}: {e}", s.site);
                hint(s.error_code.as_deref());
            }
        }
    }
}

/// `kaigo-relay restore`: refuses while the daemon runs, then restores with a progress bar.
pub fn restore(
    settings: &Settings,
    site: Option<String>,
    seq: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store_path = settings.store_path();
    if store_path.exists() {
        // A damaged file is what restores are for: it is kept aside below. Only a running
        // daemon stops a restore.
        if let Err(StoreError::AlreadyOpen) = Store::open_read_only(&store_path) {
            return Err(crate::explain::coded(
                code::BACKUP_DAEMON_RUNNING,
                "kaigo-relay が動作中です。先に停止してください（systemctl stop kaigo-relay）(the daemon is running; stop it first)",
            ));
        }
        if let Ok(store) = Store::open(&store_path) {
            drop(store);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, 残り {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let progress = |site: &str, done: u64, total: u64| {
        if bar.length() != Some(total) {
            bar.set_length(total);
            bar.set_message(format!("保存先 {site} から取り出し中 (downloading)"));
        }
        bar.set_position(done);
    };
    let result = rt.block_on(super::restore(
        &settings.backup,
        &store_path,
        site.as_deref(),
        seq,
        &progress,
    ));
    bar.finish_and_clear();
    let restored = result?;
    // Opening it as the daemon will (migrating an older schema) proves it is usable.
    let store = Store::open(&store_path).with_context(|| crate::explain::Coded {
        code: code::BACKUP_RESTORED_UNOPENABLE,
        text: "戻したストアを開けません (the restored store does not open)".into(),
    })?;
    drop(store);
    if json {
        print_json(&restored)?;
    } else {
        for (s, why) in &restored.skipped {
            println!("保存先 {s} は使えませんでした (skipped): {why}");
        }
        println!(
            "保存先 {} のコピー #{}（{}）から戻しました。/ Restored copy #{} from site {}.",
            restored.site,
            restored.seq,
            crate::timefmt::jst_minutes(restored.created_at),
            restored.seq,
            restored.site
        );
        if let Some(p) = &restored.kept_aside {
            println!(
                "それまでのストアは {} に残してあります (the previous store was kept)",
                p.display()
            );
        }
        println!("kaigo-relay を起動してください (start the daemon again)");
    }
    Ok(ExitCode::SUCCESS)
}

fn requests_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("requests")
}

/// The command's side when the daemon is running: leaves a request and waits for the run.
pub fn request_from_daemon(state_dir: &Path, wait: Duration) -> anyhow::Result<RunRecord> {
    let dir = requests_dir(state_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let answer = dir.join(ANSWER);
    let _ = std::fs::remove_file(&answer);
    std::fs::write(dir.join(REQUEST), b"run\n")
        .with_context(|| format!("cannot write the request in {}", dir.display()))?;
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        if let Ok(bytes) = std::fs::read(&answer) {
            let record: RunRecord =
                serde_json::from_slice(&bytes).context("unreadable answer from the daemon")?;
            let _ = std::fs::remove_file(&answer);
            return Ok(record);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_file(dir.join(REQUEST));
    Err(crate::explain::coded(
        code::BACKUP_DAEMON_TIMEOUT,
        format!(
            "kaigo-relay の常駐プロセスが {} 秒以内にバックアップを終えませんでした (the daemon did not finish the backup in time)",
            wait.as_secs()
        ),
    ))
}

/// The daemon's side: whether a request is waiting (it is taken away).
pub(super) fn take_request(state_dir: &Path) -> bool {
    std::fs::remove_file(requests_dir(state_dir).join(REQUEST)).is_ok()
}

/// The daemon's side: answers the waiting command.
pub(super) fn answer(state_dir: &Path, record: &RunRecord) {
    let dir = requests_dir(state_dir);
    let tmp = dir.join(".backup-run.answer.tmp");
    let ok = serde_json::to_vec(record)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|()| std::fs::rename(&tmp, dir.join(ANSWER)));
    if let Err(e) = ok {
        tracing::warn!(error = %e, "バックアップのコマンドに結果を返せませんでした (cannot answer the backup command)");
    }
}
