//! Scripted set-up from the command line: `kaigo-relay user add|passwd|unlock|reset-admin|list`
//! and `kaigo-relay office add|end|list`. Like the other commands they are carried out by the
//! running daemon over its control socket (it is the store's only writer, and it restarts its
//! pipeline when the offices change), or on the store directly when no daemon runs.
//!
//! Invariants: the command line acts as the system administrator (whoever may use the state
//! folder may do everything), every change is audited as `cli`; a password is printed only when
//! the appliance generated it, once; no command prints a federation password.

use std::collections::BTreeSet;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::accounts::Role;
use crate::accounts::manage::{self, Actor, ManageError, NewAccountSpec};
use crate::accounts::offices::{self, NewClient, NewOffice};
use crate::listing::Control;
use crate::timefmt::jst_minutes;

/// `kaigo-relay user …`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum UserCommand {
    /// Creates an account with a generated first password.
    Add {
        id: String,
        display_name: String,
        role: Role,
        office: Option<String>,
        grants: Vec<String>,
        corporation_name: Option<String>,
        corporation_offices: Vec<String>,
    },
    /// Sets a password (given, to be changed at next login) or generates one.
    Passwd {
        id: String,
        password: Option<String>,
    },
    /// Lifts a lockout.
    Unlock { id: String },
    /// A new password for the system administrator.
    ResetAdmin,
    /// Every account.
    List,
}

/// `kaigo-relay office …`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum OfficeCommand {
    /// Registers an office.
    Add {
        office_number: String,
        name: String,
        federation_user_id: String,
        federation_password: String,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        p12_file: Option<PathBuf>,
        p12_password: Option<String>,
        corporation: Option<String>,
    },
    /// Replaces the certificate or the federation password of a registered office, or reads
    /// its certificate again.
    Update {
        office_number: String,
        federation_password: Option<String>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        p12_file: Option<PathBuf>,
        p12_password: Option<String>,
    },
    /// Ends an office from a processing month.
    End {
        office_number: String,
        from_month: String,
        successor: Option<String>,
    },
    /// Every office.
    List,
}

/// One account in `user list --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserEntry {
    pub id: String,
    pub display_name: String,
    pub role: Role,
    pub corporation: Option<String>,
    pub office_number: Option<String>,
    pub grants: Vec<String>,
    pub locked: bool,
    pub disabled: bool,
    pub must_change_password: bool,
}

/// One office in `office list --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfficeEntry {
    pub office_number: String,
    pub name: String,
    pub federation_user_id: String,
    pub corporation: Option<String>,
    pub status: String,
    pub ended_from_month: Option<String>,
    pub successor: Option<String>,
    pub certificate_subject: Option<String>,
    pub certificate_expires: Option<String>,
    pub managed_by_config: bool,
}

/// What a user command answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserAnswer {
    /// The account acted on.
    pub id: Option<String>,
    /// A generated password, shown once.
    pub password: Option<String>,
    /// Where the administrator password was also written.
    pub file: Option<String>,
    /// For `list`.
    pub users: Vec<UserEntry>,
}

/// A refusal for the terminal: its text, and where its catalogue entry explains it.
fn refusal(e: impl std::fmt::Display, code: Option<admin_ui::help::Code>) -> anyhow::Error {
    match code {
        Some(c) => crate::explain::coded(c, e.to_string()),
        None => anyhow::anyhow!("{e}"),
    }
}

fn fail(e: ManageError) -> anyhow::Error {
    let code = match &e {
        ManageError::Invalid { code, .. } => Some(*code),
        ManageError::Forbidden => Some(admin_ui::help::code::ACCOUNTS_FORBIDDEN),
        ManageError::NotFound(_) => Some(admin_ui::help::code::ACCOUNTS_NOT_FOUND),
        ManageError::Random(_) => Some(admin_ui::help::code::SYSTEM_RANDOM_UNAVAILABLE),
        ManageError::Store(_) | ManageError::Hash(_) => None,
    };
    refusal(e, code)
}

fn fail_office(e: offices::OfficeError) -> anyhow::Error {
    let code = e.code();
    refusal(e, code)
}

/// Carries out a user command.
pub fn user(ctl: &Control, cmd: &UserCommand) -> anyhow::Result<serde_json::Value> {
    let now = Timestamp::now();
    let store = &ctl.store;
    let answer = match cmd.clone() {
        UserCommand::Add {
            id,
            display_name,
            role,
            office,
            grants,
            corporation_name,
            corporation_offices,
        } => {
            let spec = NewAccountSpec {
                id,
                display_name,
                role: Some(role),
                office,
                grants: grants.into_iter().collect::<BTreeSet<_>>(),
                corporation: None,
                corporation_name,
                corporation_offices: corporation_offices.into_iter().collect(),
            };
            let (account, password) =
                manage::create(store, &Actor::Cli, spec, now).map_err(fail)?;
            UserAnswer {
                id: Some(account.id),
                password: Some(password),
                ..UserAnswer::default()
            }
        }
        UserCommand::Passwd { id, password } => match password {
            Some(pw) => {
                let a = manage::set_password(store, &Actor::Cli, &id, &pw, true, None, now)
                    .map_err(fail)?;
                UserAnswer {
                    id: Some(a.id),
                    ..UserAnswer::default()
                }
            }
            None => {
                let (a, pw) = manage::reset_password(store, &Actor::Cli, &id, now).map_err(fail)?;
                UserAnswer {
                    id: Some(a.id),
                    password: Some(pw),
                    ..UserAnswer::default()
                }
            }
        },
        UserCommand::Unlock { id } => {
            let a = manage::unlock(store, &Actor::Cli, &id).map_err(fail)?;
            UserAnswer {
                id: Some(a.id),
                ..UserAnswer::default()
            }
        }
        UserCommand::ResetAdmin => {
            let (id, pw, file) = manage::reset_admin(store, &ctl.state_dir, now).map_err(fail)?;
            UserAnswer {
                id: Some(id),
                password: Some(pw),
                file: Some(file.display().to_string()),
                ..UserAnswer::default()
            }
        }
        UserCommand::List => UserAnswer {
            users: store
                .accounts()?
                .into_iter()
                .map(|a| UserEntry {
                    locked: a.lockout.is_locked(now),
                    id: a.id,
                    display_name: a.display_name,
                    role: a.role,
                    corporation: a.corporation,
                    office_number: a.office_number,
                    grants: a.grants.into_iter().collect(),
                    disabled: a.disabled,
                    must_change_password: a.must_change_password,
                })
                .collect(),
            ..UserAnswer::default()
        },
    };
    Ok(serde_json::to_value(answer)?)
}

fn certificate_args() -> anyhow::Error {
    refusal(
        "電子証明書は --cert と --key（PEM）か、--p12 と --p12-password-file（PKCS#12）のどちらかで指定してください (give --cert and --key, or --p12 and --p12-password-file)",
        Some(admin_ui::help::code::OFFICES_CERTIFICATE_ARGS),
    )
}

/// The certificate an office command names: a PEM pair, a PKCS#12 bundle, or none.
fn new_client(
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    p12_file: Option<PathBuf>,
    p12_password: Option<String>,
) -> anyhow::Result<Option<NewClient>> {
    match (cert_file, key_file, p12_file, p12_password) {
        (Some(cert_file), Some(key_file), None, None) => Ok(Some(NewClient::Pem {
            cert_file,
            key_file,
        })),
        (None, None, Some(file), Some(password)) => Ok(Some(NewClient::Pkcs12 { file, password })),
        (None, None, None, None) => Ok(None),
        _ => Err(certificate_args()),
    }
}

/// Carries out an office command; a change restarts the running daemon's pipeline.
pub fn office(ctl: &Control, cmd: &OfficeCommand) -> anyhow::Result<serde_json::Value> {
    let now = Timestamp::now();
    let store = &ctl.store;
    let entry = |r: &offices::OfficeRecord| OfficeEntry {
        office_number: r.office_number.clone(),
        name: r.name.clone(),
        federation_user_id: r.federation_user_id.clone(),
        corporation: r.corporation.clone(),
        status: if r.ended_from_month.is_some() {
            "ended".into()
        } else {
            "active".into()
        },
        ended_from_month: r.ended_from_month.map(|m| m.to_string()),
        successor: r.successor.clone(),
        certificate_subject: r.certificate.as_ref().map(|c| c.subject.clone()),
        certificate_expires: r.certificate.as_ref().map(|c| jst_minutes(c.not_after)),
        managed_by_config: r.managed_by_config,
    };
    let changed = |ctl: &Control| {
        if let Some(n) = &ctl.offices_changed {
            n.notify_one();
        }
    };
    match cmd.clone() {
        OfficeCommand::Add {
            office_number,
            name,
            federation_user_id,
            federation_password,
            cert_file,
            key_file,
            p12_file,
            p12_password,
            corporation,
        } => {
            let client = new_client(cert_file, key_file, p12_file, p12_password)?
                .ok_or_else(certificate_args)?;
            let record = offices::register(
                store,
                &ctl.key,
                NewOffice {
                    office_number,
                    name,
                    federation_user_id,
                    federation_password,
                    client,
                    corporation,
                },
                "cli",
                now,
            )
            .map_err(fail_office)?;
            changed(ctl);
            Ok(serde_json::to_value(entry(&record))?)
        }
        OfficeCommand::Update {
            office_number,
            federation_password,
            cert_file,
            key_file,
            p12_file,
            p12_password,
        } => {
            let client = new_client(cert_file, key_file, p12_file, p12_password)?;
            let record = offices::update(
                store,
                &ctl.key,
                &office_number,
                offices::OfficeUpdate {
                    federation_password,
                    client,
                },
                "cli",
                now,
            )
            .map_err(fail_office)?;
            changed(ctl);
            Ok(serde_json::to_value(entry(&record))?)
        }
        OfficeCommand::End {
            office_number,
            from_month,
            successor,
        } => {
            let from: crate::claim::Month = from_month.parse().map_err(|_| {
                refusal(
                    "--from は YYYYMM（例 202612）で書いてください (write --from as YYYYMM)",
                    Some(admin_ui::help::code::OFFICES_MONTH_INVALID),
                )
            })?;
            let record = offices::end(store, &office_number, from, successor, "cli", now)
                .map_err(fail_office)?;
            changed(ctl);
            Ok(serde_json::to_value(entry(&record))?)
        }
        OfficeCommand::List => {
            let list: Vec<OfficeEntry> = store.office_records()?.iter().map(entry).collect();
            Ok(serde_json::json!({ "offices": list }))
        }
    }
}

/// `kaigo-relay user …` arguments.
#[derive(Debug, clap::Subcommand)]
pub enum UserArgs {
    /// アカウントを作る（初期パスワードを一度だけ表示）/ Create an account (its first password is shown once).
    Add {
        /// ログインID / Login ID.
        #[arg(long)]
        id: String,
        /// 種類 / Kind: system-admin, corporation, office, staff.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// 表示名 / Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// 事業所IDの事業所番号 / The office of an office account.
        #[arg(long)]
        office: Option<String>,
        /// 職員IDに見せる事業所番号（複数可）/ Offices a staff account may see (repeat).
        #[arg(long = "grant")]
        grants: Vec<String>,
        /// 法人名（法人IDのとき）/ The corporation's name (corporation accounts).
        #[arg(long)]
        corporation_name: Option<String>,
        /// 法人の事業所番号（複数可）/ The corporation's offices (repeat).
        #[arg(long = "corporation-office")]
        corporation_offices: Vec<String>,
        /// JSON で出力する / Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// パスワードを設定する（--password-stdin で指定、なければ生成）/ Set a password (from stdin, or generated).
    Passwd {
        /// ログインID / Login ID.
        #[arg(long)]
        id: String,
        /// 新しいパスワードを標準入力から読む / Read the new password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// ロックを解除する / Lift a lockout.
    Unlock {
        /// ログインID / Login ID.
        #[arg(long)]
        id: String,
    },
    /// システム管理者のパスワードを作り直す / A new password for the system administrator.
    ResetAdmin,
    /// アカウントの一覧 / List the accounts.
    List {
        /// JSON で出力する / Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// An office's client certificate on the command line: PEM files, or a PKCS#12 bundle with
/// its passphrase file (`office add`, `office update`).
#[derive(Debug, clap::Args)]
pub struct CertificateArgs {
    /// 電子証明書（PEM）/ Client certificate (PEM).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// 秘密鍵（PEM）/ Its private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// 電子証明書（PKCS#12）/ Client certificate bundle (PKCS#12).
    #[arg(long, requires = "p12_password_file", conflicts_with = "cert")]
    p12: Option<PathBuf>,
    /// PKCS#12 のパスフレーズを書いたファイル / File holding the bundle's passphrase.
    #[arg(long, requires = "p12")]
    p12_password_file: Option<PathBuf>,
}

/// The certificate part of an office command: absolute paths, the passphrase read.
struct CertificateFiles {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    p12_file: Option<PathBuf>,
    p12_password: Option<String>,
}

impl CertificateArgs {
    fn read(self, abs: impl Fn(PathBuf) -> PathBuf) -> anyhow::Result<CertificateFiles> {
        Ok(CertificateFiles {
            cert_file: self.cert.map(&abs),
            key_file: self.key.map(&abs),
            p12_file: self.p12.map(&abs),
            p12_password: self
                .p12_password_file
                .map(|f| read_secret_file(&f, "パスフレーズファイル / passphrase file"))
                .transpose()?,
        })
    }
}

/// `kaigo-relay office …` arguments.
#[derive(Debug, clap::Subcommand)]
pub enum OfficeArgs {
    /// 事業所を登録する / Register an office.
    Add {
        /// 事業所番号 / Office number (10 digits).
        #[arg(long)]
        number: String,
        /// 事業所名 / Name.
        #[arg(long)]
        name: String,
        /// 国保連の伝送用ユーザーID（KJ…）/ Federation user ID.
        #[arg(long)]
        user_id: String,
        /// その請求用パスワードを書いたファイル / File holding its password.
        #[arg(long)]
        password_file: PathBuf,
        #[command(flatten)]
        certificate: CertificateArgs,
        /// 法人ID / The corporation it belongs to.
        #[arg(long)]
        corporation: Option<String>,
    },
    /// 登録した事業所の証明書・国保連のパスワードを更新する（指定がなければ証明書を読み直す）/
    /// Replace a registered office's certificate or federation password (with neither: read
    /// its certificate again, after the files were replaced in place).
    Update {
        /// 事業所番号 / Office number.
        #[arg(long)]
        number: String,
        /// 新しい請求用パスワードを書いたファイル / File holding the new federation password.
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        certificate: CertificateArgs,
    },
    /// 事業所の送信を終える（履歴は残ります）/ End an office from a processing month (history kept).
    End {
        /// 事業所番号 / Office number.
        #[arg(long)]
        number: String,
        /// 送信しなくなる最初の処理対象年月 YYYYMM / First processing month it no longer sends.
        #[arg(long, value_name = "YYYYMM")]
        from: String,
        /// 新しい事業所番号（番号が変わったとき）/ The new office number, when the number changed.
        #[arg(long)]
        successor: Option<String>,
    },
    /// 事業所の一覧 / List the offices.
    List {
        /// JSON で出力する / Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s.replace('_', "-").as_str() {
        "system-admin" | "admin" => Ok(Role::SystemAdmin),
        "corporation" => Ok(Role::Corporation),
        "office" => Ok(Role::Office),
        "staff" => Ok(Role::Staff),
        _ => Err(format!(
            "system-admin, corporation, office, staff のどれかです (one of system-admin, corporation, office, staff)\n{}",
            crate::explain::hint(admin_ui::help::code::ACCOUNTS_ROLE_INVALID)
        )),
    }
}

fn read_secret_file(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let code = Some(admin_ui::help::code::OFFICES_SECRET_FILE);
    let text = std::fs::read_to_string(path).map_err(|e| {
        refusal(
            format!("{what} {} を読めません (cannot read): {e}", path.display()),
            code,
        )
    })?;
    let line = text.lines().next().unwrap_or_default().to_owned();
    if line.is_empty() {
        return Err(refusal(
            format!("{what} {} が空です (empty)", path.display()),
            code,
        ));
    }
    Ok(line)
}

fn ask(
    settings: &crate::config::Settings,
    q: crate::listing::Query,
) -> anyhow::Result<serde_json::Value> {
    crate::listing::query(&settings.state_dir, &settings.store_path(), &q)
}

/// Runs `kaigo-relay user …`.
pub fn run_user(settings: &crate::config::Settings, args: UserArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let (cmd, json) = match args {
        UserArgs::Add {
            id,
            role,
            name,
            office,
            grants,
            corporation_name,
            corporation_offices,
            json,
        } => (
            UserCommand::Add {
                id,
                display_name: name,
                role,
                office,
                grants,
                corporation_name,
                corporation_offices,
            },
            json,
        ),
        UserArgs::Passwd { id, password_stdin } => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                let pw = line.trim_end_matches(['\r', '\n']).to_owned();
                if pw.is_empty() {
                    return Err(refusal(
                        "標準入力にパスワードがありません (no password on standard input)",
                        Some(admin_ui::help::code::ACCOUNTS_PASSWORD_STDIN_EMPTY),
                    ));
                }
                Some(pw)
            } else {
                None
            };
            (UserCommand::Passwd { id, password }, false)
        }
        UserArgs::Unlock { id } => (UserCommand::Unlock { id }, false),
        UserArgs::ResetAdmin => (UserCommand::ResetAdmin, false),
        UserArgs::List { json } => (UserCommand::List, json),
    };
    let is_list = matches!(cmd, UserCommand::List);
    let v = ask(settings, crate::listing::Query::User { user: cmd.clone() })?;
    let answer: UserAnswer = if v.is_null() {
        UserAnswer::default()
    } else {
        serde_json::from_value(v)?
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &answer)?;
        writeln!(out)?;
        return Ok(());
    }
    if is_list {
        if answer.users.is_empty() {
            writeln!(out, "アカウントはまだありません (no accounts yet)")?;
        }
        for u in &answer.users {
            let mut flags = Vec::new();
            if u.locked {
                flags.push("ロック中 / locked");
            }
            if u.disabled {
                flags.push("無効 / disabled");
            }
            if u.must_change_password {
                flags.push("要パスワード変更 / must change password");
            }
            let scope = match (&u.office_number, u.grants.is_empty()) {
                (Some(o), _) => o.clone(),
                (None, false) => u.grants.join(","),
                (None, true) => u.corporation.clone().unwrap_or_default(),
            };
            writeln!(
                out,
                "{:<20} {:<8} {:<24} {} {}",
                u.id,
                u.role.label_ja(),
                u.display_name,
                scope,
                flags.join(" ")
            )?;
        }
        return Ok(());
    }
    let id = answer.id.clone().unwrap_or_default();
    match (&cmd, &answer.password) {
        (UserCommand::ResetAdmin, Some(pw)) => {
            writeln!(
                out,
                "システム管理者 {id} のパスワードを作り直しました (administrator password reset)"
            )?;
            writeln!(out, "新しいパスワード / new password: {pw}")?;
            if let Some(f) = &answer.file {
                writeln!(out, "（{f} にも保存しました / also saved in {f}）")?;
            }
            writeln!(
                out,
                "次のログインで変更してください / change it at the next login"
            )?;
        }
        (_, Some(pw)) => {
            writeln!(out, "アカウント {id} のパスワード / password of {id}: {pw}")?;
            writeln!(
                out,
                "この表示は一度だけです。最初のログインで変更してください / shown once; change it at the first login"
            )?;
        }
        (UserCommand::Unlock { .. }, None) => {
            writeln!(out, "アカウント {id} のロックを解除しました (unlocked)")?;
        }
        (_, None) => {
            writeln!(
                out,
                "アカウント {id} のパスワードを設定しました。次のログインで変更が必要です (password set; to be changed at the next login)"
            )?;
        }
    }
    Ok(())
}

/// Runs `kaigo-relay office …`.
pub fn run_office(settings: &crate::config::Settings, args: OfficeArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let abs = |p: PathBuf| -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
        }
    };
    let (cmd, json) = match args {
        OfficeArgs::Add {
            number,
            name,
            user_id,
            password_file,
            certificate,
            corporation,
        } => {
            let federation_password =
                read_secret_file(&password_file, "パスワードファイル / password file")?;
            let c = certificate.read(abs)?;
            (
                OfficeCommand::Add {
                    office_number: number,
                    name,
                    federation_user_id: user_id,
                    federation_password,
                    cert_file: c.cert_file,
                    key_file: c.key_file,
                    p12_file: c.p12_file,
                    p12_password: c.p12_password,
                    corporation,
                },
                false,
            )
        }
        OfficeArgs::Update {
            number,
            password_file,
            certificate,
        } => {
            let federation_password = password_file
                .map(|f| read_secret_file(&f, "パスワードファイル / password file"))
                .transpose()?;
            let c = certificate.read(abs)?;
            (
                OfficeCommand::Update {
                    office_number: number,
                    federation_password,
                    cert_file: c.cert_file,
                    key_file: c.key_file,
                    p12_file: c.p12_file,
                    p12_password: c.p12_password,
                },
                false,
            )
        }
        OfficeArgs::End {
            number,
            from,
            successor,
        } => (
            OfficeCommand::End {
                office_number: number,
                from_month: from,
                successor,
            },
            false,
        ),
        OfficeArgs::List { json } => (OfficeCommand::List, json),
    };
    let v = ask(
        settings,
        crate::listing::Query::Office {
            office: cmd.clone(),
        },
    )?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
        return Ok(());
    }
    match cmd {
        OfficeCommand::List => {
            let list: Vec<OfficeEntry> = if v.is_null() {
                Vec::new()
            } else {
                serde_json::from_value(v["offices"].clone())?
            };
            if list.is_empty() {
                writeln!(out, "事業所はまだ登録されていません (no offices yet)")?;
            }
            for o in list {
                let status = match (o.status.as_str(), &o.ended_from_month) {
                    ("ended", Some(m)) => format!("終了（{m} から） / ended from {m}"),
                    ("ended", None) => "終了 / ended".to_owned(),
                    _ => "稼働 / active".to_owned(),
                };
                let successor = o
                    .successor
                    .as_deref()
                    .map(|n| format!("  後継 / successor {n}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{} {:<24} {} {status}{successor}{}{}",
                    o.office_number,
                    o.name,
                    o.federation_user_id,
                    o.certificate_expires
                        .map(|d| format!("  証明書期限 / certificate until {d}"))
                        .unwrap_or_default(),
                    if o.managed_by_config {
                        "  (設定ファイル / config file)"
                    } else {
                        ""
                    }
                )?;
            }
        }
        OfficeCommand::Add { .. } => {
            let o: OfficeEntry = serde_json::from_value(v)?;
            writeln!(
                out,
                "事業所 {} {} を登録しました（証明書期限 {}） (registered)",
                o.office_number,
                o.name,
                o.certificate_expires.unwrap_or_default()
            )?;
        }
        OfficeCommand::Update { .. } => {
            let o: OfficeEntry = serde_json::from_value(v)?;
            writeln!(
                out,
                "事業所 {} {} を更新しました（証明書期限 {}） (updated; certificate until then)",
                o.office_number,
                o.name,
                o.certificate_expires.unwrap_or_default()
            )?;
        }
        OfficeCommand::End { .. } => {
            let o: OfficeEntry = serde_json::from_value(v)?;
            writeln!(
                out,
                "事業所 {} は {} から送信しません（履歴は残ります） (ended)",
                o.office_number,
                o.ended_from_month.unwrap_or_default()
            )?;
        }
    }
    Ok(())
}
