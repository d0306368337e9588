//! `kaigo-relay demo`: the whole path on one machine with no set-up. It writes a demo folder
//! (simulator and daemon configs, certificates, passwords, a drop folder with sample claim
//! files, `demo.json`), sets the simulator's clock inside an open reception window, then runs
//! the simulator and the daemon in one process and prints what happens to each file.
//!
//! Invariant: the demo uses the same code paths as production — real mutual TLS on loopback,
//! real files, the real store — with only the gateway replaced by `federation-sim`. Running it
//! again reuses the folder (same certificates and passwords) and drops new, distinct samples.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use federation_sim::{OfficeConfig, SimConfig, Simulator};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::claim::{Month, OfficeNumber, sample};
use crate::config::Settings;
use crate::intake::{ERROR_DIR, Intake, REASON_SUFFIX};
use crate::store::Store;
use crate::submission::{State, Submission};
use crate::timefmt::{jst, jst_clock};

/// Options of `kaigo-relay demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The demo folder.
    pub dir: PathBuf,
    /// Write everything and exit.
    pub setup_only: bool,
}

/// `DIR/demo.json`: where everything is, for people and for tests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoInfo {
    /// The drop folder.
    pub drop_dir: PathBuf,
    /// The daemon's config file.
    pub daemon_config: PathBuf,
    /// The simulator's config file.
    pub sim_config: PathBuf,
    /// The simulator's control API.
    pub sim_control_url: String,
    /// The processing month the simulator's clock is in (YYYYMM).
    pub processing_month: String,
    /// The demo offices.
    pub offices: Vec<DemoOffice>,
    /// The admin UI (HTTPS, the demo's own local CA: `state/admin-tls/ca.pem`).
    pub admin_url: String,
    /// The admin UI's CA certificate.
    pub admin_ca: PathBuf,
    /// One account per role to try the admin UI with.
    pub accounts: Vec<DemoAccount>,
}

/// An account made for trying the admin UI. Only the demo makes accounts with passwords that
/// are printed and kept in a file; a real install never has a known password.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoAccount {
    /// Login ID.
    pub id: String,
    /// Its password (generated for this run).
    pub password: String,
    /// `system_admin`, `corporation`, `office`.
    pub role: String,
    /// For office accounts.
    pub office_number: Option<String>,
}

/// The demo corporation, which runs both demo offices.
const DEMO_CORPORATION: (&str, &str) = ("demo-houjin", "デモ社会福祉法人");

/// One demo office.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoOffice {
    /// 事業所番号.
    pub office_number: String,
    /// Name.
    pub name: String,
}

/// The two demo offices: a home-care office and the care-management office that plans for it.
/// Numbers are synthetic with valid check digits; user IDs start with KJ.
const OFFICES: [(&str, &str, &str); 2] = [
    ("1379999996", "デモ訪問介護ステーション", "KJ00000001"),
    ("1379999988", "デモ居宅介護支援事業所", "KJ00000002"),
];

struct Setup {
    sim: Simulator,
    info: DemoInfo,
    gateway_url: String,
    samples: Vec<String>,
}

/// Runs the demo.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let setup = tokio::task::spawn_blocking(move || setup(&opts.dir)).await??;
    let mut out = std::io::stdout();
    print_header(&mut out, &setup)?;
    if opts.setup_only {
        writeln!(
            out,
            "\n準備ができました。2 つのプロセスで動かすには (to run as two processes):\n  federation-sim serve --config {}\n  kaigo-relay run --config {}\n状況の確認 (status): kaigo-relay status --config {}",
            setup.info.sim_config.display(),
            setup.info.daemon_config.display(),
            setup.info.daemon_config.display()
        )?;
        return Ok(());
    }

    let shutdown = CancellationToken::new();
    crate::signals::shutdown_on_signals(shutdown.clone())?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let sim_task = tokio::spawn(setup.sim.serve(shutdown.child_token(), Some(ready_tx)));
    ready_rx
        .await
        .context("模擬ゲートウェイを起動できませんでした (the simulator did not start)")?;
    let settings = Settings::load(&setup.info.daemon_config)?;
    let app = crate::app::App::start(settings, shutdown.clone())?;
    let store = app.store.clone();
    let app_task = tokio::spawn(app.wait());

    writeln!(
        out,
        "\nサンプルの請求ファイルを {} 件置きました。処理の様子を表示します… (sample files dropped; following them)\n",
        setup.samples.len()
    )?;
    follow(&store, &setup.info, &setup.samples, &shutdown).await?;

    app_task.await??;
    sim_task.await??;
    writeln!(out, "デモを終了しました。 (demo stopped)")?;
    Ok(())
}

/// Prints every state change until shutdown; says once when all samples are through.
async fn follow(
    store: &Store,
    info: &DemoInfo,
    samples: &[String],
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut printed: HashMap<String, usize> = HashMap::new();
    let mut announced = false;
    let started = std::time::Instant::now();
    let mut out = std::io::stdout();
    loop {
        let subs = store.call(|s| s.all()).await?;
        for sub in &subs {
            let seen = printed.entry(sub.id.to_string()).or_insert(0);
            for t in sub.history.iter().skip(*seen) {
                writeln!(out, "{}", progress_line(sub, t.state, t.at, &info.drop_dir))?;
            }
            *seen = sub.history.len();
        }
        if !announced {
            let done: Vec<&Submission> = subs
                .iter()
                .filter(|s| samples.contains(&s.file_name) && s.state.is_final())
                .collect();
            if done.len() == samples.len() {
                announced = true;
                let sent = done.iter().filter(|s| s.receipt.is_some()).count();
                writeln!(
                    out,
                    "\nすべてのサンプルファイルの処理が終わりました（{:.1} 秒、送信 {sent} 件、エラー {} 件）。 (All sample files processed.)",
                    started.elapsed().as_secs_f64(),
                    done.len() - sent
                )?;
                writeln!(
                    out,
                    "投入フォルダー {} に請求ファイルを置くと、同じように点検して送信します。終了は Ctrl+C です。\n(Drop claim files into the drop folder to send them; Ctrl+C to stop.)\n状況の確認 (status): kaigo-relay status --config {}\n",
                    info.drop_dir.display(),
                    info.daemon_config.display()
                )?;
            }
        }
        out.flush()?;
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

fn progress_line(sub: &Submission, state: State, at: Timestamp, drop_dir: &Path) -> String {
    let head = format!("[{}] {:<14}", jst_clock(at), sub.file_name);
    match state {
        State::Queued => format!("{head} 点検 OK、送信待ち (checked, queued)"),
        State::Sending => format!("{head} 送信中… (sending)"),
        State::Arrived => format!(
            "{head} 到達しました。受付番号 {} (arrived, receipt stored)",
            sub.receipt
                .as_ref()
                .map(|r| r.receipt_id.as_str())
                .unwrap_or("-")
        ),
        State::Accepted | State::AcceptedWithReturns | State::Rejected | State::Withdrawn => {
            format!("{head} 受付結果: {} ({})", state.label_ja(), state.as_str())
        }
        State::Refused | State::Duplicate => {
            let first = sub
                .findings
                .iter()
                .find(|f| f.severity == crate::claim::Severity::Error)
                .map(|f| f.message_ja.clone())
                .unwrap_or_default();
            let reason = sub
                .moved_to
                .as_ref()
                .map(|m| drop_dir.join(format!("{m}{REASON_SUFFIX}")))
                .unwrap_or_else(|| drop_dir.join(ERROR_DIR));
            format!(
                "{head} {}: {first}\n{:>18}→ 理由: {} ({})",
                state.label_ja(),
                "",
                reason.display(),
                state.as_str()
            )
        }
        State::Held | State::FailedNeedsAttention => format!(
            "{head} {}: {} ({})",
            state.label_ja(),
            sub.note.as_ref().map(|n| n.ja.as_str()).unwrap_or(""),
            state.as_str()
        ),
    }
}

fn print_header(out: &mut impl std::io::Write, s: &Setup) -> anyhow::Result<()> {
    let month: Month = s.info.processing_month.parse()?;
    writeln!(out, "kaigo-relay デモ (demo)")?;
    writeln!(
        out,
        "  投入フォルダー (drop folder):      {}",
        s.info.drop_dir.display()
    )?;
    writeln!(
        out,
        "  設定 (daemon config):              {}",
        s.info.daemon_config.display()
    )?;
    writeln!(
        out,
        "  模擬ゲートウェイ (simulated gateway): {} — 時計を {} の受付期間内に設定 (clock set inside the window)",
        s.gateway_url,
        month.to_japanese()
    )?;
    for o in &s.info.offices {
        writeln!(out, "  事業所 (office): {} {}", o.office_number, o.name)?;
    }
    writeln!(
        out,
        "  管理画面 (admin UI):               {}  （証明書の発行元 / CA: {}）",
        s.info.admin_url,
        s.info.admin_ca.display()
    )?;
    writeln!(
        out,
        "  バックアップ (backups): {dir}/backup-local と {dir}/backup-offsite（暗号化）— 別の端末で試せます (try in another terminal):\n    kaigo-relay backup run --config {cfg}\n    kaigo-relay backup verify --config {cfg}\n    kaigo-relay restore --config {cfg}   （デモを止めてから / after stopping the demo）",
        dir = s
            .info
            .daemon_config
            .parent()
            .unwrap_or(Path::new("."))
            .display(),
        cfg = s.info.daemon_config.display()
    )?;
    writeln!(
        out,
        "  お試し用アカウント (demo accounts; only the demo prints passwords):"
    )?;
    for a in &s.info.accounts {
        writeln!(
            out,
            "    {:<22} {:<18} {}{}",
            a.id,
            a.password,
            a.role,
            a.office_number
                .as_ref()
                .map(|o| format!(" {o}"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// A port on 127.0.0.1 that is free now.
fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("no free port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

fn port_free(port: u16) -> bool {
    port != 0 && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn random_password() -> String {
    (0..20).map(|_| fastrand::alphanumeric()).collect()
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents)?;
    Ok(())
}

/// Writes a file under a temporary name and renames it in, as well-behaved billing software does.
fn drop_file(drop_dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = drop_dir.join(format!(".{name}.part"));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, drop_dir.join(name))?;
    Ok(())
}

/// Makes (or, on a later run, resets) one account per role: the system administrator, the
/// demo corporation with both offices, and an office account per office, each with a fresh
/// generated password that need not be changed (the demo's accounts are for trying things).
fn demo_accounts(daemon_config: &Path) -> anyhow::Result<Vec<DemoAccount>> {
    use crate::accounts::manage::{self, Actor, NewAccountSpec};
    use crate::accounts::{Role, password};
    let settings = Settings::load(daemon_config)?;
    std::fs::create_dir_all(&settings.state_dir)?;
    let store = Store::open(&settings.store_path())?;
    let now = Timestamp::now();
    crate::accounts::offices::sync_config_offices(&store, &settings.offices, now)?;
    let mut wanted = vec![
        (
            manage::ADMIN_ID.to_owned(),
            NewAccountSpec {
                id: manage::ADMIN_ID.into(),
                display_name: "システム管理者".into(),
                role: Some(Role::SystemAdmin),
                ..Default::default()
            },
        ),
        (
            DEMO_CORPORATION.0.to_owned(),
            NewAccountSpec {
                id: DEMO_CORPORATION.0.into(),
                display_name: DEMO_CORPORATION.1.into(),
                role: Some(Role::Corporation),
                corporation_name: Some(DEMO_CORPORATION.1.into()),
                corporation_offices: OFFICES.iter().map(|(n, _, _)| (*n).to_owned()).collect(),
                ..Default::default()
            },
        ),
    ];
    for (n, name, _) in OFFICES {
        wanted.push((
            format!("office-{n}"),
            NewAccountSpec {
                id: format!("office-{n}"),
                display_name: name.into(),
                role: Some(Role::Office),
                office: Some(n.into()),
                ..Default::default()
            },
        ));
    }
    let mut out = Vec::new();
    for (id, spec) in wanted {
        let role = spec.role;
        let office = spec.office.clone();
        let password = match store.account(&id)? {
            Some(_) => manage::reset_password(&store, &Actor::Cli, &id, now)?.1,
            None => manage::create(&store, &Actor::Cli, spec, now)?.1,
        };
        let mut account = store
            .account(&id)?
            .context("the demo account was just written")?;
        account.must_change_password = false;
        store.put_account(account, crate::store::Put::Replace, None)?;
        debug_assert!(password::check_policy(&id, &password).is_ok());
        out.push(DemoAccount {
            id,
            password,
            role: match role {
                Some(Role::SystemAdmin) => "system_admin",
                Some(Role::Corporation) => "corporation",
                Some(Role::Office) => "office",
                _ => "staff",
            }
            .into(),
            office_number: office,
        });
    }
    Ok(out)
}

/// The 3rd of the current month (JST), 10:00: inside the window on any day of the month.
fn demo_clock() -> anyhow::Result<(Timestamp, Month)> {
    let today = Timestamp::now().to_zoned_datetime(jst());
    let month = Month::new(today.year(), today.month()).context("calendar")?;
    let at: Timestamp =
        format!("{:04}-{:02}-03T10:00:00+09:00", month.year(), month.month()).parse()?;
    Ok((at, month))
}

fn setup(dir: &Path) -> anyhow::Result<Setup> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("デモ用フォルダー {} を作成できません", dir.display()))?;
    let dir = std::path::absolute(dir)?;
    let sim_config_path = dir.join("federation-sim.toml");
    let daemon_config_path = dir.join("kaigo-relay.toml");
    let certs = dir.join("certs");
    let secrets = dir.join("secrets");
    let drop_dir = dir.join("drop");
    std::fs::create_dir_all(&certs)?;
    std::fs::create_dir_all(&secrets)?;
    Intake::prepare_folders(&drop_dir)?;

    // Reuse ports and passwords of an earlier run, so the simulator's registrations still hold.
    let previous = if sim_config_path.exists() {
        SimConfig::load(&sim_config_path).ok()
    } else {
        None
    };
    let pick = |prev: Option<u16>| -> anyhow::Result<u16> {
        match prev {
            Some(p) if port_free(p) => Ok(p),
            _ => free_port(),
        }
    };
    let gateway_port = pick(previous.as_ref().map(|p| p.gateway_listen.port()))?;
    let mut control_port = pick(previous.as_ref().map(|p| p.control_listen.port()))?;
    while control_port == gateway_port {
        control_port = free_port()?;
    }
    let previous_admin = std::fs::read(dir.join("demo.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<DemoInfo>(&b).ok())
        .and_then(|i| i.admin_url.rsplit(':').next().map(str::to_owned))
        .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok());
    let mut admin_port = pick(previous_admin)?;
    while admin_port == gateway_port || admin_port == control_port {
        admin_port = free_port()?;
    }
    let old_password = |n: &str| -> Option<String> {
        previous
            .as_ref()?
            .offices
            .iter()
            .find(|o| o.office_number == n)
            .map(|o| o.password.clone())
    };

    let mut sim_config = SimConfig::new("federation-sim");
    sim_config.gateway_listen = SocketAddr::from(([127, 0, 0, 1], gateway_port));
    sim_config.control_listen = SocketAddr::from(([127, 0, 0, 1], control_port));
    sim_config.reception_delay_ms = 1500;
    sim_config.offices = OFFICES
        .iter()
        .map(|(number, name, user)| OfficeConfig {
            office_number: (*number).into(),
            name: (*name).into(),
            user_id: (*user).into(),
            password: old_password(number).unwrap_or_else(random_password),
            certificate_fingerprints: vec![],
        })
        .collect();
    let toml_text = format!(
        "# federation-sim の設定（kaigo-relay demo が作成）/ written by `kaigo-relay demo`\n{}",
        sim_config.to_toml()?
    );
    std::fs::write(&sim_config_path, toml_text)?;

    let mut open_config = sim_config.clone();
    open_config.state_dir = dir.join("federation-sim");
    let sim = Simulator::open(open_config).context("模擬ゲートウェイの準備に失敗しました")?;
    let (clock, month) = demo_clock()?;
    sim.set_clock(clock)?;

    std::fs::copy(sim.ca_cert_path(), certs.join("gateway-ca.pem"))?;
    let mut office_blocks = String::new();
    for (o, (number, name, user)) in sim_config.offices.iter().zip(OFFICES) {
        let (cert, key) = sim
            .client_identity(number)
            .with_context(|| format!("no client certificate issued for {number}"))?;
        std::fs::copy(&cert, certs.join(format!("{number}.pem")))?;
        write_private(&certs.join(format!("{number}.key")), &std::fs::read(&key)?)?;
        write_private(
            &secrets.join(format!("{number}.password")),
            format!("{}\n", o.password).as_bytes(),
        )?;
        office_blocks.push_str(&format!(
            "\n[[offices]]\noffice_number = \"{number}\"\nname = {}\nfederation_user_id = \"{user}\"\nfederation_password_file = \"secrets/{number}.password\"\nclient_cert_file = \"certs/{number}.pem\"\nclient_key_file = \"certs/{number}.key\"\n",
            toml::Value::String(name.into())
        ));
    }
    let gateway_url = format!("https://127.0.0.1:{gateway_port}");
    let daemon_toml = format!(
        r#"# kaigo-relay の設定（kaigo-relay demo が作成）/ written by `kaigo-relay demo`
# Every option is explained in config/kaigo-relay.example.toml.
state_dir = "state"

[intake]
drop_dir = "drop"
mode = "watch"
rescan_interval_secs = 5
settle_interval_ms = 300
incomplete_grace_secs = 30

[gateway]
url = "{gateway_url}"
ca_file = "certs/gateway-ca.pem"
connect_timeout_secs = 5
request_timeout_secs = 30
health_refresh_secs = 60
status_poll_interval_secs = 1

[relay]
max_concurrent_sends = 8
retry_initial_ms = 500
retry_max_secs = 30
shutdown_grace_secs = 5

[admin]
listen = "127.0.0.1:{admin_port}"

# Two backup sites inside the demo folder: try `kaigo-relay backup run|list|verify` and
# `kaigo-relay restore` with this config. The second stands in for an off-site copy and is
# encrypted (the key is made in state/backup.key; export it with `backup key-export`).
# デモ用のバックアップ保存先（2 か所。2 つめは社外保管の代わりで暗号化します）。
[backup]
interval_minutes = 60

[[backup.sites]]
name = "local"
kind = "directory"
path = "backup-local"

[[backup.sites]]
name = "offsite"
kind = "directory"
path = "backup-offsite"
encrypt = true
{office_blocks}"#
    );
    std::fs::write(&daemon_config_path, daemon_toml)?;
    let accounts = demo_accounts(&daemon_config_path)?;

    // New samples on every run: the run number goes into the names and the control record's
    // ファイル管理番号, so a second run is not refused as a duplicate of the first.
    let runs_path = dir.join(".demo-runs");
    let run: u32 = std::fs::read_to_string(&runs_path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
        + 1;
    std::fs::write(&runs_path, run.to_string())?;
    let care: OfficeNumber = OFFICES[0].0.parse()?;
    let plan: OfficeNumber = OFFICES[1].0.parse()?;
    let yymm = format!("{:02}{:02}", month.year() % 100, month.month());
    let r = run % 10;
    let mut broken = String::from_utf8(sample::care_claim(
        &care,
        &plan,
        month,
        &["0000300001"],
        run * 10 + 9,
    ))?;
    broken = broken.replacen(",0,4,711,", ",0,5,711,", 1);
    let files: Vec<(String, Vec<u8>)> = vec![
        (
            format!("KK{yymm}{r}1.CSV"),
            sample::care_claim(
                &care,
                &plan,
                month,
                &["0000100001", "0000100002"],
                run * 10 + 1,
            ),
        ),
        (
            format!("KK{yymm}{r}2.CSV"),
            sample::care_claim(&care, &plan, month, &["0000100003"], run * 10 + 2),
        ),
        (
            format!("KY{yymm}{r}1.CSV"),
            sample::benefit_plan(
                &plan,
                &care,
                month,
                &["0000100001", "0000100002"],
                run * 10 + 1,
            ),
        ),
        (format!("KK{yymm}{r}9.CSV"), broken.into_bytes()),
    ];
    for (name, bytes) in &files {
        drop_file(&drop_dir, name, bytes)?;
    }

    let info = DemoInfo {
        drop_dir: drop_dir.clone(),
        daemon_config: daemon_config_path,
        sim_config: sim_config_path,
        sim_control_url: format!("http://127.0.0.1:{control_port}"),
        processing_month: month.to_string(),
        offices: OFFICES
            .iter()
            .map(|(n, name, _)| DemoOffice {
                office_number: (*n).into(),
                name: (*name).into(),
            })
            .collect(),
        admin_url: format!("https://localhost:{admin_port}/"),
        admin_ca: dir
            .join("state")
            .join(crate::admin::tls::TLS_DIR)
            .join(crate::admin::tls::CA_FILE),
        accounts,
    };
    write_private(&dir.join("demo.json"), &serde_json::to_vec_pretty(&info)?)?;
    Ok(Setup {
        sim,
        info,
        gateway_url,
        samples: files.into_iter().map(|(n, _)| n).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_clock_is_inside_the_window_of_this_month() {
        let (at, month) = demo_clock().unwrap();
        let z = at.to_zoned_datetime(jst());
        assert_eq!((z.day(), z.hour()), (3, 10));
        assert_eq!(Month::new(z.year(), z.month()), Some(month));
    }

    #[test]
    fn demo_offices_are_valid() {
        for (n, _, user) in OFFICES {
            n.parse::<OfficeNumber>().unwrap();
            user.parse::<crate::claim::FederationUserId>().unwrap();
        }
    }
}
