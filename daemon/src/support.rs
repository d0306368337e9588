//! `kaigo-relay support-bundle`: one file the administrator sends to whoever helps them, holding
//! what that person asks for first — the version and the machine, the config, whether it loads,
//! the daemon's health and its recent log — so that nobody has to walk a clerk through a shell.
//!
//! Invariant: no secret and no submission's content leaves in a bundle. Config values whose key
//! names a password, token, secret, passphrase or credential are replaced (a `…_file` key is a
//! path and stays), as are credentials inside URLs; submissions appear as counts by state and by
//! office, never as files, findings or names. A config that does not load is still bundled
//! (redacted line by line), since that is when help is needed most. The bundle is written
//! owner-only (0600) and never overwrites an existing file.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::config::Settings;

/// What replaces a secret value.
pub const REDACTED: &str = "***";

/// Lines of the journal taken, at most.
const JOURNAL_LINES: &str = "5000";

/// Whether a config key holds a secret itself (not the path of a file that does).
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    if k.ends_with("_file") || k.ends_with("_dir") || k.ends_with("_path") {
        return false;
    }
    [
        "password",
        "passwd",
        "token",
        "secret",
        "passphrase",
        "credential",
        "access_key",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// `scheme://user:password@host/path?query` without the credentials, and without the path and
/// query (a chat tool's webhook URL carries its secret there): `scheme://***@host/***`.
fn redact_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(at) => format!("{REDACTED}@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    let tail = if tail.is_empty() || tail == "/" {
        tail.to_owned()
    } else {
        format!("/{REDACTED}")
    };
    format!("{scheme}://{host}{tail}")
}

fn redact_value(key: Option<&str>, v: &mut toml::Value) {
    match v {
        toml::Value::String(s) => {
            if key.is_some_and(is_secret_key) {
                *s = REDACTED.to_owned();
            } else {
                *s = redact_url(s);
            }
        }
        toml::Value::Table(t) => redact_table(t),
        toml::Value::Array(items) => {
            for item in items {
                redact_value(key, item);
            }
        }
        other => {
            if key.is_some_and(is_secret_key) {
                *other = toml::Value::String(REDACTED.to_owned());
            }
        }
    }
}

fn redact_table(t: &mut toml::Table) {
    for (k, v) in t.iter_mut() {
        redact_value(Some(k), v);
    }
}

/// The config text with its secrets replaced: parsed and written back when it is TOML, line
/// by line (`key = value` with a secret key) when it is not.
pub fn redact_config(text: &str) -> String {
    match text.parse::<toml::Table>() {
        Ok(mut table) => {
            redact_table(&mut table);
            toml::to_string(&table).unwrap_or_else(|_| redact_lines(text))
        }
        Err(_) => redact_lines(text),
    }
}

fn redact_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let secret = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"'))
            .is_some_and(|k| !k.starts_with('#') && is_secret_key(k));
        if secret {
            let key = line.split_once('=').map_or(line, |(k, _)| k);
            out.push_str(&format!("{}= \"{REDACTED}\"", key));
        } else {
            out.push_str(&redact_url(line));
        }
        out.push('\n');
    }
    out
}

/// The default name of a bundle made now.
pub fn default_name(now: Timestamp) -> String {
    format!(
        "kaigo-relay-support-{}.tar.gz",
        crate::timefmt::jst_file_stamp(now)
    )
}

fn version_text(config: &Path, now: Timestamp) -> String {
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "不明 (unknown)".into());
    let uname = rustix::system::uname();
    format!(
        "kaigo-relay {}\n作成日時 (made at): {}\nOS: {os}\nカーネル (kernel): {} {}\nホスト名 (host): {}\n設定ファイル (config): {}\n",
        env!("CARGO_PKG_VERSION"),
        crate::timefmt::jst_rfc3339(now),
        uname.release().to_string_lossy(),
        uname.machine().to_string_lossy(),
        uname.nodename().to_string_lossy(),
        config.display(),
    )
}

/// What `check-config` would say, without stopping at the first problem.
fn check_text(settings: &Result<Settings, crate::config::ConfigError>) -> String {
    match settings {
        Err(e) => format!("設定ファイルを読めません (the config does not load):\n{e}\n"),
        Ok(s) if s.offices.is_empty() => match crate::transport::load_roots(&s.gateway.ca_file) {
            Ok(_) => "設定は正しく読めました。設定ファイルの事業所はありません (config OK; no office in the file)\n".into(),
            Err(e) => format!(
                "設定は読めました。ゲートウェイの CA 証明書はまだ読めません (config OK; the gateway CA cannot be read yet): {e:#}\n"
            ),
        },
        Ok(s) => match crate::federation::GatewayClient::new(s) {
            Ok(_) => format!(
                "設定と証明書は正しく読めました: 事業所 {} 件 (config and certificates OK)\n",
                s.offices.len()
            ),
            Err(e) => format!("証明書に問題があります (a certificate problem): {e:#}\n"),
        },
    }
}

/// Counts of submissions by state and by office, the alerts, the disks and the store; plus the
/// daemon's own figures when it runs.
fn health(settings: &Settings, daemon: &Value) -> anyhow::Result<Value> {
    let snap = crate::status::load(&settings.state_dir, &settings.store_path())
        .context("cannot read the submissions")?;
    let mut by_state: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_office: BTreeMap<String, BTreeMap<&str, u64>> = BTreeMap::new();
    for s in &snap.submissions {
        *by_state.entry(s.state.as_str()).or_default() += 1;
        let office = s
            .office_number
            .as_ref()
            .map_or_else(|| "(不明 unknown)".to_owned(), ToString::to_string);
        *by_office
            .entry(office)
            .or_default()
            .entry(s.state.as_str())
            .or_default() += 1;
    }
    let disk = |p: &Path| match crate::disk_guard::free_space(p) {
        Ok((free, total)) => json!({"folder": p, "free_bytes": free, "total_bytes": total}),
        Err(e) => json!({"folder": p, "error": e.to_string()}),
    };
    let store_bytes = std::fs::metadata(settings.store_path())
        .map(|m| m.len())
        .ok();
    Ok(json!({
        "daemon": daemon,
        "submissions": {"total": snap.submissions.len(), "by_state": by_state, "by_office": by_office},
        "alerts": snap.alerts,
        "disks": {"drop": disk(&settings.intake.drop_dir), "state": disk(&settings.state_dir)},
        "disk_min_free_bytes": settings.disk.min_free_bytes,
        "store_bytes": store_bytes,
        "backup_sites": settings.backup.sites.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
    }))
}

/// The daemon's answer to [`crate::listing::Query::Support`] (`null` when it does not run).
pub fn daemon_figures() -> Value {
    let pid = std::process::id();
    let (rss, run_time) = match sysinfo::System::new() {
        Ok(mut sys) => {
            let spid = sysinfo::Pid::from_u32(pid);
            sys.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[spid]),
                false,
                sysinfo::ProcessRefreshKind::nothing().with_memory(),
            );
            sys.process(spid)
                .map_or((None, None), |p| (Some(p.memory()), Some(p.run_time())))
        }
        Err(_) => (None, None),
    };
    let log: Vec<Value> = crate::recent_log::lines()
        .into_iter()
        .rev()
        .map(|l| {
            json!({
                "at": crate::timefmt::jst_rfc3339(l.at),
                "level": l.level.as_str(),
                "target": l.target,
                "text": l.text,
            })
        })
        .collect();
    json!({
        "running": true,
        "version": env!("CARGO_PKG_VERSION"),
        "pid": pid,
        "rss_bytes": rss,
        "run_time_secs": run_time,
        "recent_log": log,
    })
}

/// The journal of the service, when this machine has one.
fn journal() -> Result<String, String> {
    let out = std::process::Command::new("journalctl")
        .args([
            "--unit=kaigo-relay",
            "--lines",
            JOURNAL_LINES,
            "--output=short-iso",
            "--no-pager",
            "--quiet",
        ])
        .output()
        .map_err(|e| format!("journalctl を実行できません (cannot run journalctl): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "journalctl が失敗しました (journalctl failed): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One entry of a bundle.
struct Entry {
    name: &'static str,
    bytes: Vec<u8>,
}

/// Makes the bundle for the config at `config` into `output` (a new file); returns what it holds.
pub fn make(config: &Path, output: &Path) -> anyhow::Result<Vec<String>> {
    let now = Timestamp::now();
    let mut entries = Vec::new();
    let mut manifest = format!(
        "kaigo-relay サポート用資料 (support bundle), {}\n\
         パスワード・トークンなどの秘密と、請求ファイルの中身は含みません。\n\
         (No secret and no claim file content is included.)\n\n",
        crate::timefmt::jst_rfc3339(now)
    );
    let mut note = |line: String| {
        manifest.push_str(&line);
        manifest.push('\n');
    };
    entries.push(Entry {
        name: "version.txt",
        bytes: version_text(config, now).into_bytes(),
    });
    note("version.txt: 版とマシン (version and machine)".into());
    match std::fs::read_to_string(config) {
        Ok(text) => {
            entries.push(Entry {
                name: "config.toml",
                bytes: redact_config(&text).into_bytes(),
            });
            note("config.toml: 設定（秘密は *** に置換）(the config, secrets replaced)".into());
        }
        Err(e) => note(format!(
            "config.toml: なし — 設定ファイルを読めません (missing: cannot read {}): {e}",
            config.display()
        )),
    }
    let settings = Settings::load(config);
    entries.push(Entry {
        name: "check-config.txt",
        bytes: check_text(&settings).into_bytes(),
    });
    note("check-config.txt: 設定と証明書の確認結果 (what check-config says)".into());
    if let Ok(settings) = &settings {
        let daemon = crate::listing::query(
            &settings.state_dir,
            &settings.store_path(),
            &crate::listing::Query::Support,
        )
        .unwrap_or_else(|e| json!({"running": false, "error": format!("{e:#}")}));
        let running = daemon["running"] == true;
        let mut recent = String::new();
        for l in daemon["recent_log"].as_array().into_iter().flatten() {
            recent.push_str(&format!(
                "{} {:5} {} {}\n",
                l["at"].as_str().unwrap_or(""),
                l["level"].as_str().unwrap_or(""),
                l["target"].as_str().unwrap_or(""),
                l["text"].as_str().unwrap_or("")
            ));
        }
        let mut daemon_summary = daemon.clone();
        if let Some(o) = daemon_summary.as_object_mut() {
            o.remove("recent_log");
        }
        match health(settings, &daemon_summary) {
            Ok(h) => {
                entries.push(Entry {
                    name: "health.json",
                    bytes: serde_json::to_vec_pretty(&h)?,
                });
                note("health.json: 送信の件数（状態別・事業所別）、警告、ディスク、データベース (counts by state and office, alerts, disks, store)".into());
            }
            Err(e) => note(format!("health.json: なし (missing): {e:#}")),
        }
        if running {
            entries.push(Entry {
                name: "recent.log",
                bytes: recent.into_bytes(),
            });
            note("recent.log: デーモンの最近のログ (the daemon's recent log lines)".into());
        } else {
            note(
                "recent.log: なし — デーモンは動いていません (missing: the daemon is not running)"
                    .into(),
            );
        }
    } else {
        note("health.json, recent.log: なし — 設定を読めないため (missing: the config does not load)".into());
    }
    match journal() {
        Ok(text) => {
            entries.push(Entry {
                name: "journal.log",
                bytes: text.into_bytes(),
            });
            note(format!(
                "journal.log: journald のログ（最大 {JOURNAL_LINES} 行）(the service's journal)"
            ));
        }
        Err(e) => note(format!("journal.log: なし (missing): {e}")),
    }
    entries.insert(
        0,
        Entry {
            name: "MANIFEST.txt",
            bytes: manifest.into_bytes(),
        },
    );
    write_bundle(output, &entries, now)?;
    Ok(entries.iter().map(|e| e.name.to_owned()).collect())
}

fn write_bundle(output: &Path, entries: &[Entry], now: Timestamp) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .with_context(|| {
            format!(
                "{} を作成できません（既にある場合は別の名前を --output で指定してください）(cannot create; if it exists, choose another --output)",
                output.display()
            )
        })?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let dir = output
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".tar.gz"))
        .unwrap_or("kaigo-relay-support")
        .to_owned();
    let mtime = u64::try_from(now.as_second()).unwrap_or(0);
    for e in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(e.bytes.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, format!("{dir}/{}", e.name), e.bytes.as_slice())
            .with_context(|| format!("cannot write {}", e.name))?;
    }
    let gz = tar.into_inner().context("cannot finish the archive")?;
    let mut file = gz.finish().context("cannot finish the compression")?;
    file.flush()?;
    file.sync_all()?;
    Ok(())
}

/// Where a bundle goes when no `--output` is given: the current folder.
pub fn default_output(now: Timestamp) -> PathBuf {
    PathBuf::from(default_name(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_replaced_and_paths_kept() {
        let text = r#"
state_dir = "/var/lib/kaigo-relay"
[admin]
metrics_token = "abc123"
metrics_token_file = "/etc/kaigo-relay/secrets/metrics.token"
[gateway]
url = "https://gw.example:8443"
[gateway.proxy]
url = "http://proxyuser:hunter2@proxy.lan:3128"
proxy_password = "hunter2"
[[alerts.webhook]]
url = "https://hooks.example.jp/services/T0/B0/XoXoSlackToken?key=QueryToken"
[[backup.sites]]
name = "s3"
secret_access_key = "AKIAxxxxSECRET"
access_key_id = "AKIAID"
port = 9000
"#;
        let out = redact_config(text);
        for secret in [
            "abc123",
            "hunter2",
            "AKIAxxxxSECRET",
            "AKIAID",
            "proxyuser",
            "XoXoSlackToken",
            "QueryToken",
        ] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        for kept in [
            "/etc/kaigo-relay/secrets/metrics.token",
            "https://gw.example:8443",
            "https://hooks.example.jp/***",
            "proxy.lan:3128",
            "/var/lib/kaigo-relay",
            "9000",
        ] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
        assert!(out.parse::<toml::Table>().is_ok(), "still TOML:\n{out}");
    }

    #[test]
    fn a_config_that_is_not_toml_is_redacted_line_by_line() {
        let text = "state_dir = \"/x\"\n[admin\nmetrics_token = \"abc123\"\n# password = comment\nurl = \"https://u:p@h/\"\n";
        let out = redact_config(text);
        assert!(!out.contains("abc123") && !out.contains("u:p@"), "{out}");
        assert!(
            out.contains("[admin\n") && out.contains("# password = comment"),
            "{out}"
        );
    }

    #[test]
    fn a_bundle_never_overwrites_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("b.tar.gz");
        std::fs::write(&out, b"keep").unwrap();
        let err = write_bundle(&out, &[], Timestamp::now()).unwrap_err();
        assert!(format!("{err:#}").contains("--output"), "{err:#}");
        assert_eq!(std::fs::read(&out).unwrap(), b"keep");
    }
}
