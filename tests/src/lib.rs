//! End-to-end test harness: real `federation-sim` and `kaigo-relay` processes on loopback
//! ports, real folders, real mutual TLS. Nothing is mocked.
//!
//! Invariant: every wait has a deadline, and a test that times out prints the logs of both
//! processes, so a failure in CI explains itself.

// This crate only serves tests: a failed set-up step must stop the test with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod alert_sinks;
pub mod browser;
pub mod measure;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use federation_sim::{OfficeConfig, SimConfig, Simulator};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kaigo_relay::claim::{Month, OfficeNumber, sample};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Paths of the two binaries under test.
#[derive(Debug)]
pub struct Bins {
    /// `kaigo-relay`.
    pub relay: PathBuf,
    /// `federation-sim`.
    pub sim: PathBuf,
}

/// Builds the binaries once per test process (same profile as the tests) and returns them.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> → target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile> directory")
            .to_owned();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "kaigo-relay",
            "-p",
            "federation-sim",
            "--bins",
        ]);
        if release {
            cmd.arg("--release");
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build of the binaries failed");
        Bins {
            relay: profile_dir.join("kaigo-relay"),
            sim: profile_dir.join("federation-sim"),
        }
    })
}

/// A child process whose output goes to a log file; killed when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// What it is, for messages.
    pub name: String,
    /// Its combined stdout and stderr.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with its output in `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.into(),
            log,
        }
    }

    fn pid(&self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid")
    }

    /// The OS process id (for `/proc/<pid>/…` in benchmarks).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` and waits up to `timeout` for the process to exit.
    pub fn signal_and_wait(
        &mut self,
        signal: rustix::process::Signal,
        timeout: Duration,
    ) -> Option<ExitStatus> {
        let _ = rustix::process::kill_process(self.pid(), signal);
        self.wait_exit(timeout)
    }

    /// SIGTERM, then the exit status (panics if it does not stop within 20 s).
    pub fn terminate(&mut self) -> ExitStatus {
        match self.signal_and_wait(rustix::process::Signal::TERM, Duration::from_secs(20)) {
            Some(s) => s,
            None => panic!("{} did not stop on SIGTERM\n{}", self.name, self.log_text()),
        }
    }

    /// SIGKILL: a crash, with no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.signal_and_wait(rustix::process::Signal::KILL, Duration::from_secs(10));
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The demo offices of the tests (synthetic numbers, valid check digits).
pub const CARE_OFFICE: &str = "1379999996";
/// The care-management office that plans for `CARE_OFFICE`.
pub const PLAN_OFFICE: &str = "1379999988";

/// The simulator's clock in every test: inside the December 2026 window.
pub const CLOCK: &str = "2026-12-03T10:00:00+09:00";

/// Knobs of an environment.
#[derive(Debug, Clone)]
pub struct EnvOptions {
    /// intake.settle_interval_ms.
    pub settle_interval_ms: u64,
    /// intake.rescan_interval_secs.
    pub rescan_interval_secs: u64,
    /// intake.incomplete_grace_secs.
    pub incomplete_grace_secs: u64,
    /// The simulator's 受付 delay.
    pub reception_delay_ms: u64,
    /// gateway.health_refresh_secs.
    pub health_refresh_secs: u64,
    /// intake.mode: "watch" or "poll".
    pub intake_mode: &'static str,
    /// Extra lines of the `[admin]` section.
    pub admin_toml: String,
    /// Extra sections at the end of the config file (`[disk]`, …).
    pub extra_toml: String,
    /// Offices beyond the two the tests send for, registered at the simulator and in the
    /// config (`bench_support::office_number(100 + i)`, user `KJ2000000i`): for benchmarks of
    /// an appliance with many offices.
    pub extra_offices: usize,
}

impl Default for EnvOptions {
    fn default() -> Self {
        EnvOptions {
            settle_interval_ms: 200,
            rescan_interval_secs: 2,
            incomplete_grace_secs: 60,
            reception_delay_ms: 300,
            health_refresh_secs: 60,
            intake_mode: "watch",
            admin_toml: String::new(),
            extra_toml: String::new(),
            extra_offices: 0,
        }
    }
}

/// A simulator process and a daemon config pointing at it, in a temporary folder.
#[derive(Debug)]
pub struct Env {
    /// The temporary folder holding everything.
    pub dir: tempfile::TempDir,
    /// The simulator process.
    pub sim: Proc,
    /// The daemon process, when started.
    pub daemon: Option<Proc>,
    /// `https://127.0.0.1:PORT`.
    pub gateway_url: String,
    /// `http://127.0.0.1:PORT`.
    pub control_url: String,
    /// The daemon's config file.
    pub daemon_config: PathBuf,
    /// The drop folder.
    pub drop_dir: PathBuf,
    /// The processing month `claim` writes into files (the simulator's clock starts in 202612).
    pub month: Month,
    daemon_starts: u32,
}

impl Env {
    /// An environment with default options.
    pub fn new() -> Env {
        Env::with_options(EnvOptions::default())
    }

    /// Sets up the simulator's state and certificates, starts it as a process on port 0, and
    /// writes the daemon's config.
    pub fn with_options(opts: EnvOptions) -> Env {
        kaigo_relay::install_crypto_provider();
        let bins = bins();
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let mut offices: Vec<(String, String, String, String)> = [
            (CARE_OFFICE, "テスト訪問介護", "KJ10000001", "pw-care-1"),
            (PLAN_OFFICE, "テスト居宅介護支援", "KJ10000002", "pw-plan-2"),
        ]
        .iter()
        .map(|(n, name, user, pw)| ((*n).into(), (*name).into(), (*user).into(), (*pw).into()))
        .collect();
        offices.extend((0..opts.extra_offices).map(|i| {
            (
                kaigo_relay::bench_support::office_number(100 + i),
                format!("ベンチ事業所{i}"),
                format!("KJ2{i:07}"),
                format!("pw-extra-{i}"),
            )
        }));
        let mut sim_config = SimConfig::new(root.join("sim-state"));
        sim_config.gateway_listen = "127.0.0.1:0".parse().expect("addr");
        sim_config.control_listen = "127.0.0.1:0".parse().expect("addr");
        sim_config.reception_delay_ms = opts.reception_delay_ms;
        sim_config.offices = offices
            .iter()
            .map(|(n, name, user, pw)| OfficeConfig {
                office_number: n.clone(),
                name: name.clone(),
                user_id: user.clone(),
                password: pw.clone(),
                certificate_fingerprints: vec![],
            })
            .collect();
        let sim_config_path = root.join("federation-sim.toml");
        std::fs::write(&sim_config_path, sim_config.to_toml().expect("toml"))
            .expect("write sim config");
        let certs = root.join("certs");
        std::fs::create_dir_all(&certs).expect("certs dir");
        let mut office_blocks = String::new();
        {
            let sim = Simulator::open(sim_config).expect("simulator state");
            sim.set_clock(CLOCK.parse().expect("clock"))
                .expect("set clock");
            std::fs::copy(sim.ca_cert_path(), certs.join("ca.pem")).expect("copy CA");
            for (n, name, user, pw) in &offices {
                let (cert, key) = sim.client_identity(n).expect("client certificate");
                std::fs::copy(cert, certs.join(format!("{n}.pem"))).expect("copy cert");
                std::fs::copy(key, certs.join(format!("{n}.key"))).expect("copy key");
                std::fs::write(certs.join(format!("{n}.password")), format!("{pw}\n"))
                    .expect("password");
                office_blocks.push_str(&format!(
                    "\n[[offices]]\noffice_number = \"{n}\"\nname = \"{name}\"\nfederation_user_id = \"{user}\"\nfederation_password_file = \"certs/{n}.password\"\nclient_cert_file = \"certs/{n}.pem\"\nclient_key_file = \"certs/{n}.key\"\n"
                ));
            }
        }
        let listen_file = root.join("sim-state").join("listen.json");
        let mut cmd = Command::new(&bins.sim);
        cmd.args(["serve", "--config"]).arg(&sim_config_path);
        let sim = Proc::spawn("federation-sim", cmd, root.join("sim.log"));
        let listen = wait_until(Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&listen_file).ok()?;
            serde_json::from_str::<Value>(&text).ok()
        })
        .unwrap_or_else(|| panic!("federation-sim did not start\n{}", sim.log_text()));
        let gateway_url = listen["gateway_url"]
            .as_str()
            .expect("gateway_url")
            .to_owned();
        let control_url = listen["control_url"]
            .as_str()
            .expect("control_url")
            .to_owned();

        let drop_dir = root.join("drop");
        let daemon_config = root.join("kaigo-relay.toml");
        let toml = format!(
            r#"state_dir = "state"
[intake]
drop_dir = "drop"
mode = "{intake_mode}"
rescan_interval_secs = {rescan}
settle_interval_ms = {settle}
incomplete_grace_secs = {grace}
[gateway]
url = "{gateway_url}"
ca_file = "certs/ca.pem"
connect_timeout_secs = 5
request_timeout_secs = 10
health_refresh_secs = {refresh}
status_poll_interval_secs = 1
[relay]
retry_initial_ms = 200
retry_max_secs = 2
shutdown_grace_secs = 5
[admin]
listen = "127.0.0.1:0"
{admin_toml}
{office_blocks}
{extra_toml}"#,
            admin_toml = opts.admin_toml,
            extra_toml = opts.extra_toml,
            rescan = opts.rescan_interval_secs,
            settle = opts.settle_interval_ms,
            grace = opts.incomplete_grace_secs,
            refresh = opts.health_refresh_secs,
            intake_mode = opts.intake_mode,
        );
        std::fs::write(&daemon_config, toml).expect("write daemon config");
        std::fs::create_dir_all(&drop_dir).expect("drop dir");
        Env {
            dir,
            sim,
            daemon: None,
            gateway_url,
            control_url,
            daemon_config,
            drop_dir,
            month: "202612".parse().expect("month"),
            daemon_starts: 0,
        }
    }

    /// Starts `kaigo-relay run` as a process.
    pub fn start_daemon(&mut self) {
        self.start_daemon_with_env(&[]);
    }

    /// Starts `kaigo-relay run` as a process with extra environment variables (for example
    /// `KAIGO_RELAY_FAILPOINTS`).
    pub fn start_daemon_with_env(&mut self, vars: &[(&str, &str)]) {
        self.start_daemon_via(&[], vars);
    }

    /// Starts `kaigo-relay run` as the last arguments of `wrapper` (a program and its first
    /// arguments, e.g. `unshare …`), with `vars` set.
    pub fn start_daemon_via(&mut self, wrapper: &[&std::ffi::OsStr], vars: &[(&str, &str)]) {
        self.daemon_starts += 1;
        // The new daemon says where its admin UI answers; never read the last one's.
        let _ = std::fs::remove_file(self.state_dir().join("admin-url"));
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&bins().relay);
                cmd
            }
            None => Command::new(&bins().relay),
        };
        cmd.args(["run", "--config"]).arg(&self.daemon_config);
        cmd.env("RUST_LOG", "info,kaigo_relay=debug");
        // Armed only when a test asks, never inherited from the shell running the tests.
        cmd.env_remove("KAIGO_RELAY_FAILPOINTS");
        cmd.envs(vars.iter().copied());
        let log = self
            .dir
            .path()
            .join(format!("daemon-{}.log", self.daemon_starts));
        self.daemon = Some(Proc::spawn("kaigo-relay", cmd, log));
    }

    /// The daemon process.
    pub fn daemon(&mut self) -> &mut Proc {
        self.daemon.as_mut().expect("daemon started")
    }

    /// Both processes' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = format!("---- federation-sim log ----\n{}\n", self.sim.log_text());
        for n in 1..=self.daemon_starts {
            let p = self.dir.path().join(format!("daemon-{n}.log"));
            s.push_str(&format!(
                "---- kaigo-relay log #{n} ----\n{}\n",
                std::fs::read_to_string(p).unwrap_or_default()
            ));
        }
        s
    }

    /// `kaigo-relay status --json`'s submissions.
    pub fn status(&self) -> Vec<Value> {
        status_json(&self.daemon_config).unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Sets the simulator's virtual clock (`POST /sim/clock`).
    pub fn set_sim_clock(&self, now: &str) {
        let v = http_json(
            "POST",
            &format!("{}/sim/clock", self.control_url),
            Some(&serde_json::json!({ "now": now })),
        );
        assert_eq!(v["virtual"], true, "{v}");
    }

    /// `GET /sim/received`.
    pub fn received(&self) -> Vec<Value> {
        http_json("GET", &format!("{}/sim/received", self.control_url), None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits for `f` to return `Some`, or panics with both logs after `timeout`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Env) -> Option<T>,
    ) -> T {
        match wait_until(timeout, || f(self)) {
            Some(v) => v,
            None => panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.logs()
            ),
        }
    }

    /// Writes a file under a temporary name and renames it into the drop folder.
    pub fn drop_atomic(&self, name: &str, bytes: &[u8]) {
        let tmp = self.drop_dir.join(format!(".{name}.part"));
        std::fs::write(&tmp, bytes).expect("write temp file");
        std::fs::rename(&tmp, self.drop_dir.join(name)).expect("rename into the drop folder");
    }

    /// A valid claim file of the care office for the simulator's processing month.
    pub fn claim(&self, insured: &[&str], file_no: u32) -> Vec<u8> {
        let care: OfficeNumber = CARE_OFFICE.parse().expect("office");
        let plan: OfficeNumber = PLAN_OFFICE.parse().expect("office");
        sample::care_claim(&care, &plan, self.month, insured, file_no)
    }

    /// A claim of `claim` with a single quote put into its invoice record: one the checker
    /// refuses (a character the interface spec does not allow).
    pub fn refused_claim(&self, insured: &[&str], file_no: u32) -> Vec<u8> {
        let mut b = self.claim(insured, file_no);
        let at = b
            .windows(6)
            .position(|w| w == b"\"7111\"")
            .expect("the invoice record");
        b.insert(at + 5, b'\'');
        b
    }

    /// Creates an admin-UI account with `kaigo-relay user add --json ARGS` and returns its
    /// one-time password.
    pub fn add_user(&self, args: &[&str]) -> String {
        let mut all = vec!["user", "add", "--json"];
        all.extend_from_slice(args);
        all.extend([
            "--config",
            self.daemon_config.to_str().expect("config path"),
        ]);
        let out = relay_ok(all);
        let answer: Value = serde_json::from_slice(&out.stdout).expect("user add --json");
        answer["password"]
            .as_str()
            .expect("a one-time password")
            .to_owned()
    }

    /// The state folder of the daemon.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Where the running daemon's admin UI answers (waits for it to say).
    pub fn admin_url(&self) -> String {
        let file = self.state_dir().join("admin-url");
        self.wait_for("the admin UI to listen", Duration::from_secs(30), |_| {
            std::fs::read_to_string(&file)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| s.starts_with("https://"))
        })
    }

    /// A browser for the running daemon's admin UI, trusting its local CA.
    pub fn browser(&self) -> browser::Browser {
        let url = self.admin_url();
        browser::Browser::new(&url, &self.state_dir().join("admin-tls").join("ca.pem"))
    }

    /// The status entry of the file with this SHA-256 that is not a duplicate, once it has the
    /// given state.
    pub fn wait_state(&self, sha: &str, state: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("{sha} to be {state}"), timeout, |env| {
            env.status()
                .into_iter()
                .find(|s| s["sha256"] == sha && s["state"] == state)
        })
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

/// Runs `kaigo-relay ARGS…` to completion; panics with its stderr unless it succeeds.
pub fn relay_ok<I, S>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(&bins().relay)
        .args(args)
        .output()
        .expect("run kaigo-relay");
    assert!(
        out.status.success(),
        "kaigo-relay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `kaigo-relay status --json --config CONFIG`'s submissions, or what went wrong.
pub fn status_json(config: &Path) -> Result<Vec<Value>, String> {
    Ok(status_doc(config)?["submissions"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The current alerts as `kaigo-relay status --json` shows them.
pub fn status_alerts(config: &Path) -> Result<Vec<Value>, String> {
    Ok(status_doc(config)?["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The whole document of `kaigo-relay status --json --config CONFIG`.
pub fn status_doc(config: &Path) -> Result<Value, String> {
    let out = Command::new(&bins().relay)
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .map_err(|e| format!("cannot run status: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("status JSON: {e}"))
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain-HTTP JSON request (the simulator's control API).
pub fn http_json(method: &str, url: &str, body: Option<&Value>) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("request");
        let resp = client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{method} {url}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    })
}

/// Writes `bytes` into `path` in `chunks` pieces with `pause` between them, keeping the file
/// open, as billing software that writes in place does.
pub fn write_slowly(path: &Path, bytes: &[u8], cuts: &[usize], pause: Duration) {
    let mut f = std::fs::File::create(path).expect("create");
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        f.write_all(&bytes[start..cut]).expect("write");
        f.flush().expect("flush");
        start = cut;
        if cut != bytes.len() {
            std::thread::sleep(pause);
        }
    }
}

/// A real S3-compatible server on loopback: moto's server (`pip install 'moto[server]'`, which
/// `.ci/run` does), with one bucket made empty. Killed when dropped.
#[derive(Debug)]
pub struct S3Server {
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl S3Server {
    /// Starts the server in `dir` and makes `bucket`.
    pub fn start(dir: &Path, bucket: &str) -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .current_dir(dir);
        let proc = Proc::spawn("moto", cmd, dir.join("moto.log"));
        let endpoint = format!("http://127.0.0.1:{port}");
        // Moto answers unsigned requests, so a plain PUT makes the bucket.
        let made = wait_until(Duration::from_secs(60), || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
            use std::io::{Read as _, Write as _};
            write!(
                s,
                "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .ok()?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).ok()?;
            answer.starts_with("HTTP/1.1 200").then_some(())
        });
        assert!(
            made.is_some(),
            "the S3 server (moto) did not start; install it with pip install 'moto[server]'\n{}",
            proc.log_text()
        );
        S3Server { proc, endpoint }
    }

    /// The object keys in `bucket` (one listing page: enough for tests).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let mut s = std::net::TcpStream::connect(self.endpoint.trim_start_matches("http://"))
            .expect("connect to moto");
        use std::io::{Read as _, Write as _};
        write!(
            s,
            "GET /{bucket}?list-type=2 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.endpoint.trim_start_matches("http://")
        )
        .expect("request");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("answer");
        answer
            .split("<Key>")
            .skip(1)
            .filter_map(|p| p.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }
}
