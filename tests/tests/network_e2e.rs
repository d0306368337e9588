//! The gateway client's network options (issue 4 §5) through real processes: the daemon reaches
//! federation-sim through a real tinyproxy (HTTP CONNECT with basic credentials), presents the
//! office's certificate from a PKCS#12 bundle made by `openssl pkcs12 -export`, and pins the
//! gateway's key. A proxy refusal or a pin mismatch never loses a file and never sends one: it
//! stays queued, is retried, and the reason is recorded and logged.
//!
//! tinyproxy and the openssl command must be installed (`apt-get install -y tinyproxy openssl`;
//! `.ci/run` does it): these tests fail, never skip, without them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tests::{CARE_OFFICE, Env, Proc, sha256_hex, wait_until};

const T: Duration = Duration::from_secs(30);

/// Finds a program on PATH (and in the sbin directories, where Debian may put daemons).
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn require(name: &str) -> PathBuf {
    program(name).unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed; the network end-to-end tests need it. \
             Install it with `apt-get install -y tinyproxy openssl` (.ci/run does this)."
        )
    })
}

fn received_with(env: &Env, sha: &str) -> Vec<Value> {
    env.received()
        .into_iter()
        .filter(|r| r["sha256"] == sha)
        .collect()
}

fn gateway_port(env: &Env) -> u16 {
    env.gateway_url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Rewrites the daemon's config (before it starts).
fn edit_config(env: &Env, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(&env.daemon_config).unwrap();
    std::fs::write(&env.daemon_config, f(text)).unwrap();
}

/// Adds lines to the `[gateway]` table of the daemon's config.
fn add_to_gateway(env: &Env, lines: &str) {
    edit_config(env, |t| {
        assert!(t.contains("[gateway]\n"), "{t}");
        t.replacen("[gateway]\n", &format!("[gateway]\n{lines}"), 1)
    });
}

/// The send attempts of the submission with these bytes and its state, read from the store.
fn sends(env: &Env, sha: &str) -> Option<(String, Vec<String>)> {
    let settings = kaigo_relay::config::Settings::load(&env.daemon_config).unwrap();
    let snapshot = kaigo_relay::status::load(&settings.state_dir, &settings.store_path()).ok()?;
    let sub = snapshot.submissions.into_iter().find(|s| s.sha256 == sha)?;
    let outcomes = sub
        .attempts
        .iter()
        .filter(|a| a.action == "send")
        .map(|a| a.outcome.clone())
        .collect();
    Some((sub.state.as_str().to_owned(), outcomes))
}

/// A tinyproxy of the test's own, in the foreground on a loopback port, allowing `CONNECT` only
/// to the gateway's port and only with these credentials; killed when dropped.
struct Tinyproxy {
    _proc: Proc,
    log: PathBuf,
}

impl Tinyproxy {
    fn start(
        dir: &Path,
        name: &str,
        port: u16,
        gateway_port: u16,
        user: &str,
        password: &str,
    ) -> Tinyproxy {
        let bin = require("tinyproxy");
        let log = dir.join(format!("{name}.log"));
        let conf = dir.join(format!("{name}.conf"));
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Info\n\
                 MaxClients 20\nAllow 127.0.0.1\nBasicAuth {user} {password}\n\
                 ConnectPort {gateway_port}\nDisableViaHeader Yes\n",
                log.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("-d").arg("-c").arg(&conf);
        let proc = Proc::spawn("tinyproxy", cmd, dir.join(format!("{name}.out")));
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(
            up.is_some(),
            "tinyproxy did not start on port {port}\n{}\n{}",
            proc.log_text(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Tinyproxy { _proc: proc, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new(require("openssl"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The RFC 7469 pin of a PEM certificate, computed by openssl exactly as the example config
/// tells an administrator to.
fn spki_pin(cert: &Path) -> String {
    require("openssl");
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -in \"$1\" -pubkey -noout | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | base64",
        )
        .arg("sh")
        .arg(cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pin = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(pin.len(), 44, "{pin}");
    pin
}

#[test]
fn claims_go_through_an_authenticating_proxy_and_a_refusing_proxy_loses_nothing() {
    let mut env = Env::new();
    let gw = gateway_port(&env);
    let port = free_port();
    let dir = env.dir.path().to_owned();
    let proxy = Tinyproxy::start(&dir, "tinyproxy-1", port, gw, "relay", "pr0xy-Pass");
    std::fs::write(dir.join("certs/proxy.password"), "pr0xy-Pass\n").unwrap();
    add_to_gateway(
        &env,
        &format!(
            "proxy_url = \"http://127.0.0.1:{port}\"\nproxy_user = \"relay\"\nproxy_password_file = \"certs/proxy.password\"\n"
        ),
    );
    env.start_daemon();

    // Through the proxy: accepted, exactly once, and the proxy saw the tunnel to the gateway.
    let first = env.claim(&["0000710001"], 71);
    let sha1 = sha256_hex(&first);
    env.drop_atomic("KK261271.CSV", &first);
    let entry = env.wait_state(&sha1, "accepted", T);
    assert_eq!(entry["attempts"], 1, "{entry}");
    assert_eq!(received_with(&env, &sha1).len(), 1);
    let log = proxy.log_text();
    assert!(
        log.contains(&format!("CONNECT 127.0.0.1:{gw}")),
        "tinyproxy's log shows the CONNECT to the gateway:\n{log}"
    );

    // The proxy's administrator changes its password: the daemon's is now refused.
    drop(proxy);
    std::thread::sleep(Duration::from_millis(500));
    let proxy = Tinyproxy::start(&dir, "tinyproxy-2", port, gw, "relay", "changed-Pass");
    let second = env.claim(&["0000710002"], 72);
    let sha2 = sha256_hex(&second);
    env.drop_atomic("KK261272.CSV", &second);
    let (state, outcomes) = env.wait_for("the second file refused by the proxy twice", T, |env| {
        sends(env, &sha2).filter(|(state, outcomes)| state == "queued" && outcomes.len() >= 2)
    });
    assert_eq!(
        state, "queued",
        "not sent, so back in the queue: {outcomes:?}"
    );
    for outcome in &outcomes {
        assert!(
            outcome.contains("not sent") && outcome.contains("proxy refused the credentials"),
            "each attempt records the proxy's refusal: {outcome}"
        );
        assert!(outcome.contains("認証情報"), "Japanese first: {outcome}");
    }
    assert!(
        received_with(&env, &sha2).is_empty(),
        "nothing reached the gateway"
    );
    assert!(
        proxy
            .log_text()
            .contains(&format!("CONNECT 127.0.0.1:{gw}")),
        "the daemon did ask the new proxy"
    );
    let daemon_log = env.logs();
    assert!(
        daemon_log.contains("proxy refused the credentials"),
        "the refusal is logged\n{daemon_log}"
    );
    for secret in ["pr0xy-Pass", "changed-Pass"] {
        assert!(
            !daemon_log.contains(secret),
            "no proxy secret in the logs: {secret}"
        );
    }

    // The password is put back: the queued file goes out, once.
    drop(proxy);
    std::thread::sleep(Duration::from_millis(300));
    let proxy = Tinyproxy::start(&dir, "tinyproxy-3", port, gw, "relay", "pr0xy-Pass");
    let entry = env.wait_state(&sha2, "accepted", T);
    assert!(entry["attempts"].as_u64().unwrap() >= 3, "{entry}");
    let at_sim = received_with(&env, &sha2);
    assert_eq!(at_sim.len(), 1, "{at_sim:?}");
    assert_eq!(at_sim[0]["presented"], 1, "sent exactly once");
    assert!(
        proxy
            .log_text()
            .contains(&format!("CONNECT 127.0.0.1:{gw}"))
    );
    let status = env.daemon().terminate();
    assert!(status.success(), "{status:?}\n{}", env.logs());
}

#[test]
fn an_office_certificate_in_a_pkcs12_bundle_is_presented_and_accepted() {
    let mut env = Env::new();
    let certs = env.dir.path().join("certs");
    let pem = certs.join(format!("{CARE_OFFICE}.pem"));
    let key = certs.join(format!("{CARE_OFFICE}.key"));
    let p12 = certs.join(format!("{CARE_OFFICE}.p12"));
    let passphrase = certs.join(format!("{CARE_OFFICE}.p12.password"));
    std::fs::write(&passphrase, "Kaigo p12 passphrase\n").unwrap();
    // As an office's certificate usually arrives: one .p12 with the key, the certificate and the
    // CA, made by openssl (its defaults: AES-256-CBC, PBKDF2, HMAC-SHA-256).
    openssl(&[
        "pkcs12",
        "-export",
        "-in",
        pem.to_str().unwrap(),
        "-inkey",
        key.to_str().unwrap(),
        "-certfile",
        certs.join("ca.pem").to_str().unwrap(),
        "-name",
        "care office",
        "-passout",
        &format!("file:{}", passphrase.display()),
        "-out",
        p12.to_str().unwrap(),
    ]);
    std::fs::remove_file(&key).unwrap();
    std::fs::remove_file(&pem).unwrap();
    let pem_lines = format!(
        "client_cert_file = \"certs/{CARE_OFFICE}.pem\"\nclient_key_file = \"certs/{CARE_OFFICE}.key\"\n"
    );
    let p12_lines = format!(
        "client_p12_file = \"certs/{CARE_OFFICE}.p12\"\nclient_p12_password_file = \"certs/{CARE_OFFICE}.p12.password\"\n"
    );
    edit_config(&env, |t| {
        assert!(t.contains(&pem_lines), "{t}");
        t.replace(&pem_lines, &p12_lines)
    });

    // check-config reads the bundle; a wrong passphrase is a config error naming office and file.
    tests::relay_ok([
        OsStr::new("check-config"),
        OsStr::new("--config"),
        env.daemon_config.as_os_str(),
    ]);
    let wrong = env.dir.path().join("wrong-passphrase.toml");
    std::fs::write(certs.join("wrong.password"), "not the passphrase\n").unwrap();
    std::fs::write(
        &wrong,
        std::fs::read_to_string(&env.daemon_config)
            .unwrap()
            .replace(
                &format!("certs/{CARE_OFFICE}.p12.password"),
                "certs/wrong.password",
            ),
    )
    .unwrap();
    let out = Command::new(&tests::bins().relay)
        .args(["check-config", "--config"])
        .arg(&wrong)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("事業所 {CARE_OFFICE} の電子証明書"))
            && err.contains(p12.to_str().unwrap())
            && err.contains("パスフレーズが違います")
            && err.contains("wrong passphrase"),
        "{err}"
    );
    assert!(!err.contains("not the passphrase"), "{err}");

    env.start_daemon();
    let bytes = env.claim(&["0000720001"], 81);
    let sha = sha256_hex(&bytes);
    env.drop_atomic("KK261281.CSV", &bytes);
    let entry = env.wait_state(&sha, "accepted", T);
    assert_eq!(entry["office_number"], CARE_OFFICE);
    let at_sim = received_with(&env, &sha);
    assert_eq!(at_sim.len(), 1, "{at_sim:?}");
    assert_eq!(at_sim[0]["office_number"], CARE_OFFICE);
    let log = env.logs();
    assert!(!log.contains("Kaigo p12 passphrase"), "{log}");
}

/// Restarts federation-sim on the same ports with a new server key (same CA, same names, same
/// state): the gateway's certificate changes under a running daemon.
fn restart_sim_with_a_new_key(env: &mut Env) {
    let root = env.dir.path().to_owned();
    let config_path = root.join("federation-sim.toml");
    let mut config = federation_sim::SimConfig::load(&config_path).unwrap();
    config.gateway_listen = env
        .gateway_url
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    config.control_listen = env
        .control_url
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    std::fs::write(&config_path, config.to_toml().unwrap()).unwrap();
    env.sim.terminate();
    std::fs::rename(root.join("sim.log"), root.join("sim-before-new-key.log")).unwrap();
    std::fs::remove_file(root.join("sim-state/server.key")).unwrap();
    std::fs::remove_file(root.join("sim-state/server.pem")).unwrap();
    let mut cmd = Command::new(&tests::bins().sim);
    cmd.args(["serve", "--config"]).arg(&config_path);
    env.sim = Proc::spawn("federation-sim", cmd, root.join("sim.log"));
    let listen = root.join("sim-state/listen.json");
    env.wait_for("federation-sim to listen again", T, |_| {
        let text = std::fs::read_to_string(&listen).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        (v["gateway_url"] == env.gateway_url.as_str()).then_some(())
    });
}

#[test]
fn the_gateway_pin_lets_the_pinned_key_through_and_stops_any_other() {
    let mut env = Env::new();
    let server_pem = env.dir.path().join("sim-state/server.pem");
    let right = spki_pin(&server_pem);
    // The CA's key is a real key of the gateway's chain, but not the gateway's own: the pin is
    // on the end-entity certificate.
    let other = spki_pin(&env.dir.path().join("certs/ca.pem"));
    assert_ne!(right, other);
    add_to_gateway(&env, &format!("pin_sha256 = [\"{other}\", \"{right}\"]\n"));
    env.start_daemon();
    let first = env.claim(&["0000730001"], 91);
    let sha1 = sha256_hex(&first);
    env.drop_atomic("KK261291.CSV", &first);
    env.wait_state(&sha1, "accepted", T);
    assert_eq!(received_with(&env, &sha1).len(), 1);

    // The gateway now presents another key, still signed by the configured CA: the CA check
    // alone would let it through; the pin does not. Nothing is sent, the file stays queued.
    restart_sim_with_a_new_key(&mut env);
    let new_key = spki_pin(&server_pem);
    assert_ne!(new_key, right);
    let second = env.claim(&["0000730002"], 92);
    let sha2 = sha256_hex(&second);
    env.drop_atomic("KK261292.CSV", &second);
    let (state, outcomes) = env.wait_for("two sends stopped by the pin", T, |env| {
        sends(env, &sha2).filter(|(state, outcomes)| state == "queued" && outcomes.len() >= 2)
    });
    assert_eq!(state, "queued");
    for outcome in &outcomes {
        assert!(
            outcome.contains("not sent")
                && outcome.contains("does not match gateway.pin_sha256")
                && outcome.contains(&new_key),
            "each attempt notes the mismatch and the key seen: {outcome}"
        );
        assert!(
            outcome.contains("ゲートウェイの証明書"),
            "Japanese first: {outcome}"
        );
    }
    assert!(received_with(&env, &sha2).is_empty(), "never sent");
    assert_eq!(env.received().len(), 1, "only the first file ever arrived");
    let log = env.logs();
    assert!(
        log.contains("gateway certificate does not match pin_sha256") && log.contains(&new_key),
        "the mismatch is logged with the key the gateway presented\n{log}"
    );
    env.daemon().terminate();

    // The administrator adds the new key's pin (the rollover): the queued file goes out, once.
    edit_config(&env, |t| {
        t.replace(
            &format!("pin_sha256 = [\"{other}\", \"{right}\"]"),
            &format!("pin_sha256 = [\"{right}\", \"{new_key}\"]"),
        )
    });
    env.start_daemon();
    env.wait_state(&sha2, "accepted", T);
    let at_sim = received_with(&env, &sha2);
    assert_eq!(at_sim.len(), 1, "{at_sim:?}");
    assert_eq!(at_sim[0]["presented"], 1, "sent exactly once");
}
