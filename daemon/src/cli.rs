//! The command line: `run`, `demo`, `status`, `check-config`, `validate`, `withdraw`,
//! `notices`, `returns`, and their exit codes.
//!
//! Invariant: a configuration problem exits with status 64 and a message that names the
//! setting (so systemd does not restart-loop on it); any other failure exits with 1 and the
//! whole error chain on stderr.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, Settings};

/// Exit status for a bad configuration.
pub const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "kaigo-relay",
    version,
    about = "介護給付費の請求ファイルを国保連合会へ中継する装置 / Relays 介護 claim files to the federation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// デーモンとして動かす（SIGTERM / SIGINT で安全に停止）/ Run the daemon until SIGTERM or SIGINT.
    Run {
        /// 設定ファイル / Config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// 模擬の国保連ゲートウェイと一緒に動かして試す / Try it out against an embedded federation simulator.
    Demo {
        /// デモ用のフォルダー / Folder for the demo's files.
        #[arg(long, default_value = "kaigo-relay-demo")]
        dir: PathBuf,
        /// 準備だけして終了する / Write everything and exit (run the two processes yourself).
        #[arg(long)]
        setup_only: bool,
    },
    /// 送信状況を表示する / Show where every submission stands.
    Status {
        /// 設定ファイル / Config file.
        #[arg(long)]
        config: PathBuf,
        /// JSON で出力する / Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// 請求ファイルを送信前と同じ基準で点検する（送らない）/ Check claim files offline, as intake would.
    ///
    /// 終了コード: すべて送信できるとき 0、送信できないファイルがあるとき 1 /
    /// exit 0 when every file is sendable, 1 otherwise.
    Validate {
        /// 処理対象年月 YYYYMM（省略時は日本の今月）/ Processing month (default: this month in Japan).
        #[arg(long, value_name = "YYYYMM")]
        month: Option<String>,
        /// JSON で出力する / Print JSON.
        #[arg(long)]
        json: bool,
        /// 設定ファイル（あれば事業所の登録も確認）/ Config file (also checks office registration).
        #[arg(long)]
        config: Option<PathBuf>,
        /// 点検するファイル / Files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// 国保連へ送った請求を取り消す（取消）/ Withdraw (取消) a submission at the federation.
    ///
    /// 終了コード: 取り消せたとき 0、できなかったとき 1 / exit 0 when withdrawn, 1 otherwise.
    Withdraw {
        /// 設定ファイル / Config file.
        #[arg(long)]
        config: PathBuf,
        /// JSON で出力する / Print JSON.
        #[arg(long)]
        json: bool,
        /// 受付番号 / The receipt number (受付番号) of the submission.
        #[arg(value_name = "RECEIPT_ID")]
        receipt_id: String,
    },
    /// 国保連からの通知の一覧・取り出し / List mirrored notices, or save one.
    Notices {
        /// 設定ファイル / Config file.
        #[arg(long)]
        config: PathBuf,
        /// JSON で出力する / Print JSON.
        #[arg(long)]
        json: bool,
        /// この通知IDの本文を取り出す（原本 CP932）/ Save this notice's bytes (the original, CP932).
        #[arg(long, value_name = "NOTICE_ID")]
        get: Option<String>,
        /// 取り出すときに UTF-8 に変換する（CSV・テキスト）/ Convert to UTF-8 when saving (CSV, text).
        #[arg(long, requires = "get")]
        utf8: bool,
        /// 保存先（省略時は標準出力）/ Where to save it (default: standard output).
        #[arg(long, requires = "get", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// 返戻の一覧（対応状況つき）、手動での完了 / The 返戻 to-do list; close one by hand.
    Returns {
        /// 設定ファイル / Config file.
        #[arg(long)]
        config: PathBuf,
        /// JSON で出力する / Print JSON.
        #[arg(long)]
        json: bool,
        /// この返戻を完了にする（--note 必須）/ Close this return item by hand (needs --note).
        #[arg(long, value_name = "RETURN_ID", requires = "note")]
        close: Option<String>,
        /// 完了にする理由 / Why it is closed.
        #[arg(long, requires = "close")]
        note: Option<String>,
    },
    /// サポート用資料を 1 つのファイルにまとめる（秘密は含まない）/ Collect version, config (secrets
    /// redacted), health and recent logs into one file for support.
    SupportBundle {
        /// 設定ファイル / Config file.
        #[arg(long)]
        config: PathBuf,
        /// 書き出すファイル（既定: カレントフォルダーの kaigo-relay-support-日時.tar.gz）/
        /// Output file (default: kaigo-relay-support-<time>.tar.gz here).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// 通知（メール・Webhook）/ Alerts by mail and webhook.
    Alert {
        #[command(subcommand)]
        command: AlertArgs,
    },
    /// メッセージのコードの意味と対処を表示する（コードなしで一覧）/
    /// Explain a message code: what it means and what to do (no code: list every code).
    ///
    /// 終了コード: 説明があるとき 0、ないとき 1 / exit 0 when the code has an entry, 1 otherwise.
    Explain {
        /// コード（例 claim.file_empty）/ The code, e.g. offices.exists.
        code: Option<String>,
    },
    /// 設定ファイルと証明書を確認する / Validate the config file and the certificates it names.
    CheckConfig {
        /// 設定ファイル / Config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// 管理画面のアカウント（ID）の作成・パスワード・ロック解除 / Accounts of the admin UI.
    User {
        /// 設定ファイル / Config file.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: crate::setup::UserArgs,
    },
    /// 送信する事業所の登録・終了・一覧 / Offices this appliance sends for.
    Office {
        /// 設定ファイル / Config file.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: crate::setup::OfficeArgs,
    },
    /// バックアップ（実行・一覧・確認・鍵の書き出し）/ Backups: run, list, verify, export the key.
    ///
    /// 終了コード: 成功 0、失敗した保存先があれば 1 / exit 0 on success, 1 when a site failed.
    Backup {
        /// 設定ファイル / Config file.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: crate::backup::command::BackupArgs,
    },
    /// バックアップからストアを戻す（デーモン停止中に）/ Restore the store from a backup (daemon stopped).
    ///
    /// 指定した保存先（省略時は設定の順）の最新の確認済みコピーを取り出し、照合してから置き換えます。
    /// 確認できないときは次の保存先を使います。それまでのストアは残します。/
    /// Takes the newest copy that verifies, trying the given site first and falling back to the
    /// others; the store in place is kept aside.
    Restore {
        /// 設定ファイル / Config file.
        #[arg(long)]
        config: PathBuf,
        /// 最初に使う保存先 / The site to try first.
        #[arg(long)]
        site: Option<String>,
        /// このコピー番号（省略時は最新）/ This copy (default: the newest).
        #[arg(long)]
        seq: Option<u64>,
        /// JSON で出力する / Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AlertArgs {
    /// テスト通知を設定済みのすべての宛先に今すぐ送り、宛先ごとの結果を表示する /
    /// Send a test alert now to every configured destination and show each outcome.
    ///
    /// 終了コード: すべて届いた 0、届かない宛先があれば 1 / exit 0 when every destination
    /// accepted it, 1 otherwise.
    Test {
        /// 設定ファイル / Config file.
        #[arg(long)]
        config: PathBuf,
        /// このアドレスにも送る / Also send to this address.
        #[arg(long, value_name = "ADDRESS")]
        to: Vec<String>,
    },
}

enum Failure {
    Config(ConfigError),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        match e.downcast::<ConfigError>() {
            Ok(c) => Failure::Config(c),
            Err(e) => Failure::Other(e),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e)
    }
}

/// Whether stderr is the journal: systemd sets `JOURNAL_STREAM` to the `device:inode` of the
/// stream it connected (a child that inherited the variable but writes elsewhere must not
/// switch).
fn stderr_is_journal() -> bool {
    let Ok(wanted) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    wanted == format!("{}:{}", st.st_dev, st.st_ino)
}

fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal as _;
    use tracing_subscriber::prelude::*;
    // Under systemd each event goes to the journal with its fields as journal fields
    // (`journalctl -u kaigo-relay OFFICE=…`, the claim span's `SUBMISSION=…`); elsewhere
    // it is a line on stderr, coloured only for a terminal.
    let journal = if stderr_is_journal() {
        tracing_journald::layer()
            .map(|l| {
                l.with_field_prefix(None)
                    .with_syslog_identifier("kaigo-relay".to_owned())
            })
            .ok()
    } else {
        None
    };
    let stderr = journal.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journal)
        .with(stderr)
        .with(crate::recent_log::RecentLog)
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Parses the arguments, runs the command, and maps the outcome to an exit status.
pub fn main() -> ExitCode {
    crate::install_crypto_provider();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(config),
        Command::Demo { dir, setup_only } => demo(dir, setup_only),
        Command::Status { config, json } => status(config, json),
        Command::CheckConfig { config } => check_config(config),
        Command::Explain { code } => {
            let mut out = std::io::stdout().lock();
            return match crate::explain::run(code.as_deref(), &mut out) {
                Ok(crate::explain::Found::Yes) => ExitCode::SUCCESS,
                Ok(crate::explain::Found::No) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("エラー (error): {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Alert {
            command: AlertArgs::Test { config, to },
        } => return alert_test(config, to),
        Command::SupportBundle { config, output } => support_bundle(config, output),
        Command::Notices {
            config,
            json,
            get,
            utf8,
            output,
        } => notices(config, json, get, utf8, output),
        Command::Returns {
            config,
            json,
            close,
            note,
        } => returns(config, json, close, note),
        Command::Withdraw {
            config,
            json,
            receipt_id,
        } => return withdraw(config, json, &receipt_id),
        Command::Validate {
            month,
            json,
            config,
            files,
        } => return validate(month, json, config, &files),
        Command::User { config, command } => {
            setup_command(config, |s| crate::setup::run_user(s, command))
        }
        Command::Office { config, command } => {
            setup_command(config, |s| crate::setup::run_office(s, command))
        }
        Command::Backup { config, command } => {
            let Some(config) = config else {
                eprintln!(
                    "設定エラー (configuration error): 設定ファイルを --config で指定してください (give the config file with --config)"
                );
                return ExitCode::from(EXIT_CONFIG);
            };
            return settings_command(&config, |s| crate::backup::command::run(s, command));
        }
        Command::Restore {
            config,
            site,
            seq,
            json,
        } => {
            return settings_command(&config, |s| {
                crate::backup::command::restore(s, site, seq, json)
            });
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("設定エラー (configuration error): {e}");
            eprintln!(
                "{}",
                crate::explain::hint(admin_ui::help::code::SYSTEM_CONFIG_INVALID)
            );
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Other(e)) => {
            crate::explain::print_failure(&e);
            ExitCode::FAILURE
        }
    }
}

/// Loads the config (bad config: exit 64), then runs a command that chooses its exit code.
fn settings_command(
    config: &std::path::Path,
    f: impl FnOnce(&Settings) -> anyhow::Result<ExitCode>,
) -> ExitCode {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("設定エラー (configuration error): {e}");
            eprintln!(
                "{}",
                crate::explain::hint(admin_ui::help::code::SYSTEM_CONFIG_INVALID)
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging("warn");
    match f(&settings) {
        Ok(code) => code,
        Err(e) => {
            crate::explain::print_failure(&e);
            ExitCode::FAILURE
        }
    }
}

fn run(config: PathBuf) -> Result<(), Failure> {
    let mut settings = Settings::load(&config)?;
    init_logging("info");
    let rt = runtime()?;
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        let mut commands = crate::signals::listen(shutdown.clone())?;
        // The configuration that ran before a reload: if the new one does not start (a
        // certificate that does not load, a port in use), the appliance goes back to it.
        let mut previous: Option<Settings> = None;
        loop {
            // A restore chosen in the admin UI stops this run (its token only); the next start
            // puts the verified copy in place. A reload (SIGHUP) stops it the same way.
            let token = shutdown.child_token();
            let app = match crate::app::App::start(settings.clone(), token.clone()) {
                Ok(app) => app,
                Err(e) => match previous.take() {
                    Some(old) => {
                        tracing::error!(
                            code = %admin_ui::help::code::SYSTEM_CONFIG_RELOAD_FAILED,
                            error = format!("{e:#}"),
                            "再読み込みした設定では起動できません。以前の設定で動き続けます (the reloaded configuration does not start; running on the previous one)"
                        );
                        settings = old;
                        continue;
                    }
                    None => return Err(e),
                },
            };
            previous = None;
            crate::service::ready("受付中 (running)");
            let backup_now = app.backup_now();
            let mut wait = std::pin::pin!(app.wait());
            let reloaded = loop {
                tokio::select! {
                    result = &mut wait => {
                        result?;
                        break None;
                    }
                    Some(command) = commands.recv() => match command {
                        crate::signals::Command::BackupNow => {
                            tracing::info!("バックアップを今すぐ始めます (a backup starts now: SIGUSR1)");
                            backup_now.notify_one();
                        }
                        crate::signals::Command::Reload => match Settings::load(&config) {
                            Ok(new) => {
                                tracing::info!("設定を読み込み直します。処理中の送信を終えてから切り替えます (reloading the configuration: SIGHUP; in-flight work is finished first)");
                                crate::service::reloading();
                                token.cancel();
                                (&mut wait).await?;
                                break Some(new);
                            }
                            Err(e) => tracing::error!(
                                code = %admin_ui::help::code::SYSTEM_CONFIG_RELOAD_REFUSED,
                                error = %e,
                                "設定ファイルに誤りがあるため再読み込みしません。今の設定で動き続けます (the configuration file has an error; not reloaded, the running configuration stays)"
                            ),
                        },
                    },
                }
            };
            match reloaded {
                Some(new) => previous = Some(std::mem::replace(&mut settings, new)),
                None if shutdown.is_cancelled()
                    || !crate::backup::restore_pending(&settings.backup) =>
                {
                    return anyhow::Ok(());
                }
                None => tracing::warn!("復元したデータベースに入れ替えるため、再起動します (restarting to put the restored store in place)"),
            }
        }
    })?;
    Ok(())
}

fn demo(dir: PathBuf, setup_only: bool) -> Result<(), Failure> {
    // The demo explains every file on stdout; the log shows only what needs a person
    // (RUST_LOG=info shows everything).
    init_logging("error");
    let rt = runtime()?;
    rt.block_on(crate::demo::run(crate::demo::DemoOptions {
        dir,
        setup_only,
    }))?;
    Ok(())
}

fn status(config: PathBuf, json: bool) -> Result<(), Failure> {
    let settings = Settings::load(&config)?;
    let subs = crate::status::load(&settings.state_dir, &settings.store_path())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        crate::status::write_json(&subs, &mut out)?;
    } else {
        crate::status::write_table(&subs, &mut out)?;
    }
    out.flush().map_err(anyhow::Error::from)?;
    Ok(())
}

fn validate(
    month: Option<String>,
    json: bool,
    config: Option<PathBuf>,
    files: &[PathBuf],
) -> ExitCode {
    let processing_month = match month {
        Some(m) => match m.parse::<crate::claim::Month>() {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("--month: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => crate::validate::current_month_in_japan(),
    };
    let offices = match config {
        Some(path) => match Settings::load(&path) {
            Ok(s) => Some(s.office_standings()),
            Err(e) => {
                eprintln!("設定エラー (configuration error): {e}");
                eprintln!(
                    "{}",
                    crate::explain::hint(admin_ui::help::code::SYSTEM_CONFIG_INVALID)
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        None => None,
    };
    let ctx = crate::claim::CheckContext {
        processing_month,
        offices,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match crate::validate::run(files, &ctx, json, &mut out).and_then(|ok| {
        out.flush()?;
        Ok(ok)
    }) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("エラー (error): {e}");
            ExitCode::FAILURE
        }
    }
}

fn withdraw(config: PathBuf, json: bool, receipt_id: &str) -> ExitCode {
    let settings = match Settings::load(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("設定エラー (configuration error): {e}");
            eprintln!(
                "{}",
                crate::explain::hint(admin_ui::help::code::SYSTEM_CONFIG_INVALID)
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !crate::withdraw::valid_receipt_id(receipt_id) {
        eprintln!("受付番号「{receipt_id}」の形が正しくありません (not a receipt number)");
        return ExitCode::from(EXIT_CONFIG);
    }
    init_logging("warn");
    let outcome = (|| -> anyhow::Result<crate::withdraw::Outcome> {
        std::fs::create_dir_all(&settings.state_dir)?;
        match crate::store::Store::open(&settings.store_path()) {
            Ok(store) => {
                // The daemon is not running: do it here, as the store's writer.
                let gateway = crate::federation::GatewayClient::new(&settings)?;
                runtime()?.block_on(crate::withdraw::perform(&store, &gateway, receipt_id))
            }
            Err(crate::store::StoreError::AlreadyOpen) => crate::withdraw::request_from_daemon(
                &settings.state_dir,
                receipt_id,
                std::time::Duration::from_secs(90),
            ),
            Err(e) => Err(e.into()),
        }
    })();
    match outcome {
        Ok(o) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&o).unwrap_or_default());
            } else {
                println!("{}\n({})", o.message_ja, o.message_en);
                if let Some(c) = o
                    .code
                    .as_deref()
                    .and_then(admin_ui::help::known)
                    .filter(|_| !o.withdrawn)
                {
                    println!("{}", crate::explain::hint(c));
                }
            }
            if o.withdrawn {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            crate::explain::print_failure(&e);
            ExitCode::FAILURE
        }
    }
}

fn notices(
    config: PathBuf,
    json: bool,
    get: Option<String>,
    utf8: bool,
    output: Option<PathBuf>,
) -> Result<(), Failure> {
    use crate::listing::{NoticeBody, NoticesDocument, Query};
    use base64::Engine as _;
    let settings = Settings::load(&config)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(notice_id) = get {
        let v = crate::listing::query(
            &settings.state_dir,
            &settings.store_path(),
            &Query::NoticeBody {
                notice_id: notice_id.clone(),
            },
        )?;
        if v.is_null() {
            return Err(Failure::Other(anyhow::anyhow!(
                "通知 {notice_id} はありません (no such notice)"
            )));
        }
        let body: NoticeBody = serde_json::from_value(v).map_err(anyhow::Error::from)?;
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(body.bytes_base64)
            .map_err(anyhow::Error::from)?;
        if utf8 {
            if !body.notice.media_type.starts_with("text/") {
                return Err(Failure::Other(anyhow::anyhow!(
                    "通知 {notice_id} は {} なので UTF-8 に変換できません (only text notices convert to UTF-8)",
                    body.notice.media_type
                )));
            }
            bytes = crate::notice::to_utf8(&bytes)
                .map_err(anyhow::Error::from)?
                .into_bytes();
        }
        match output {
            Some(path) => std::fs::write(&path, &bytes).map_err(|e| {
                anyhow::anyhow!("{} に書けません (cannot write): {e}", path.display())
            })?,
            None => out.write_all(&bytes).map_err(anyhow::Error::from)?,
        }
        out.flush().map_err(anyhow::Error::from)?;
        return Ok(());
    }
    let v = crate::listing::query(&settings.state_dir, &settings.store_path(), &Query::Notices)?;
    let doc: NoticesDocument = if v.is_null() {
        NoticesDocument::default()
    } else {
        serde_json::from_value(v).map_err(anyhow::Error::from)?
    };
    if json {
        serde_json::to_writer_pretty(&mut out, &doc).map_err(anyhow::Error::from)?;
        writeln!(out).map_err(anyhow::Error::from)?;
    } else {
        crate::listing::write_notices_table(&doc, &mut out)?;
    }
    out.flush().map_err(anyhow::Error::from)?;
    Ok(())
}

fn returns(
    config: PathBuf,
    json: bool,
    close: Option<String>,
    note: Option<String>,
) -> Result<(), Failure> {
    use crate::listing::{Query, ReturnEntry, ReturnsDocument};
    let settings = Settings::load(&config)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(id) = close {
        let v = crate::listing::query(
            &settings.state_dir,
            &settings.store_path(),
            &Query::CloseReturn {
                id,
                note: note.unwrap_or_default(),
            },
        )?;
        let entry: ReturnEntry = serde_json::from_value(v).map_err(anyhow::Error::from)?;
        if json {
            serde_json::to_writer_pretty(&mut out, &entry).map_err(anyhow::Error::from)?;
            writeln!(out).map_err(anyhow::Error::from)?;
        } else {
            writeln!(out, "返戻 {} を完了にしました (closed)", entry.id)
                .map_err(anyhow::Error::from)?;
        }
        return Ok(());
    }
    let v = crate::listing::query(&settings.state_dir, &settings.store_path(), &Query::Returns)?;
    let doc: ReturnsDocument = if v.is_null() {
        ReturnsDocument::default()
    } else {
        serde_json::from_value(v).map_err(anyhow::Error::from)?
    };
    if json {
        serde_json::to_writer_pretty(&mut out, &doc).map_err(anyhow::Error::from)?;
        writeln!(out).map_err(anyhow::Error::from)?;
    } else {
        crate::listing::write_returns_table(&doc, &mut out)?;
    }
    out.flush().map_err(anyhow::Error::from)?;
    Ok(())
}

fn setup_command(
    config: Option<PathBuf>,
    f: impl FnOnce(&Settings) -> anyhow::Result<()>,
) -> Result<(), Failure> {
    let Some(config) = config else {
        return Err(Failure::Config(ConfigError::Invalid {
            key: "--config".into(),
            message:
                "設定ファイルを --config で指定してください (give the config file with --config)"
                    .into(),
        }));
    };
    let settings = Settings::load(&config)?;
    f(&settings)?;
    Ok(())
}

fn alert_test(config: PathBuf, to: Vec<String>) -> ExitCode {
    let settings = match Settings::load(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("設定エラー (configuration error): {e}");
            eprintln!(
                "{}",
                crate::explain::hint(admin_ui::help::code::SYSTEM_CONFIG_INVALID)
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for a in &to {
        if a.parse::<lettre::Address>().is_err() {
            eprintln!("{a} はメールアドレスではありません (not a mail address)");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    // The administrators' addresses, read alongside a running daemon when there is a store.
    let accounts = crate::store::Store::open_for_reading(&settings.store_path())
        .and_then(|s| s.accounts())
        .unwrap_or_default();
    let extra: Vec<(String, String)> = to.into_iter().map(|a| (String::new(), a)).collect();
    let dests = crate::alerts::trial::destinations(&settings.alerts, &accounts, &extra);
    if dests.is_empty() {
        eprintln!(
            "送り先がありません。設定ファイルの [[alerts.recipient]] か [[alerts.webhook]]、または --to で宛先を指定してください (no destination: configure [[alerts.recipient]] or [[alerts.webhook]], or give --to)"
        );
        return ExitCode::from(1);
    }
    let base_url = settings
        .alerts
        .admin_url
        .clone()
        .unwrap_or_else(|| format!("https://{}", settings.admin.listen));
    let outcomes = match runtime().and_then(|rt| {
        rt.block_on(async {
            let senders = crate::alerts::dispatch::Senders::new(&settings.alerts)?;
            anyhow::Ok(
                crate::alerts::trial::send(&senders, dests, "kaigo-relay alert test", &base_url)
                    .await,
            )
        })
    }) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("通知の準備ができません (cannot prepare alert delivery): {e:#}");
            return ExitCode::from(1);
        }
    };
    let mut failed = 0;
    for o in &outcomes {
        match &o.result {
            Ok(()) => println!("✓ {}  送信しました (accepted)", o.destination.label()),
            Err(e) => {
                failed += 1;
                println!("✗ {}  {}", o.destination.label(), e.text);
            }
        }
    }
    if failed == 0 {
        println!(
            "テスト通知を {} 件の宛先に送りました (test alert accepted by every destination)",
            outcomes.len()
        );
        ExitCode::SUCCESS
    } else {
        println!("{failed} 件の宛先に届きませんでした (not accepted by {failed} destination(s))");
        ExitCode::from(1)
    }
}

fn support_bundle(config: PathBuf, output: Option<PathBuf>) -> Result<(), Failure> {
    let output = output.unwrap_or_else(|| crate::support::default_output(jiff::Timestamp::now()));
    let names = crate::support::make(&config, &output)?;
    println!(
        "サポート用資料を作成しました (support bundle written): {}\n  {}",
        output.display(),
        names.join(", ")
    );
    Ok(())
}

fn check_config(config: PathBuf) -> Result<(), Failure> {
    let settings = Settings::load(&config)?;
    if settings.offices.is_empty() {
        // A fresh install: offices are registered later (admin UI, `kaigo-relay office add`),
        // and the gateway's CA is needed only then.
        if let Err(e) = crate::transport::load_roots(&settings.gateway.ca_file) {
            println!(
                "注意: ゲートウェイの CA 証明書 {} がまだ読めません。事業所を登録する前に置いてください (note: the gateway CA cannot be read yet; put it in place before registering an office): {e:#}",
                settings.gateway.ca_file.display()
            );
        }
    } else {
        // Building the client reads the CA, every certificate and key, and checks each pair.
        crate::federation::GatewayClient::new(&settings).map_err(|e| ConfigError::Invalid {
            key: "gateway / offices".into(),
            message: format!("{e:#}"),
        })?;
    }
    // The alert senders read their CA files and the system's roots.
    crate::alerts::dispatch::Senders::new(&settings.alerts).map_err(|e| ConfigError::Invalid {
        key: "alerts".into(),
        message: format!("{e:#}"),
    })?;
    println!(
        "設定は正しく読めました: 事業所 {} 件、投入フォルダー {} (config OK)",
        settings.offices.len(),
        settings.intake.drop_dir.display()
    );
    let a = &settings.alerts;
    match &a.mail {
        Some(m) => println!(
            "通知: メール {}:{}、宛先 {} 件、Webhook {} 件。`kaigo-relay alert test` で届くか確認できます (alerts: mail via {}:{}, {} recipient(s), {} webhook(s))",
            m.server,
            m.port,
            a.recipients.len(),
            a.webhooks.len(),
            m.server,
            m.port,
            a.recipients.len(),
            a.webhooks.len()
        ),
        None => println!(
            "通知: メールサーバーが未設定のため、通知は管理画面にだけ表示されます（Webhook {} 件） (alerts: no mail server; {} webhook(s))",
            a.webhooks.len(),
            a.webhooks.len()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod cli_tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
