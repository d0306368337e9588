//! The admin UI in a real browser: Debian's Chromium, headless, driven over WebDriver by
//! Debian's chromedriver, against the real daemon over HTTPS. Chromium trusts the appliance's
//! own local CA the way an office PC that imported `ca.pem` does (an NSS database in its home
//! folder), and verifies the certificate as usual: no certificate error is ignored.
//!
//! A corporation account over two offices logs in for the first time and must change its
//! one-time password, switches to its second office, opens that office's 7411 返戻一覧 and sees
//! its rows, downloads the original CP932 file (byte-identical to what the simulator issued),
//! closes a return with a note, changes its password again from "my account", logs out; the
//! old password is then refused and the new one works. Everything is done by clicking links and
//! buttons and typing into fields, as a person does: the UI has no JavaScript (its CSP forbids
//! scripts) and the test injects none into the page.
//!
//! A PNG of each page is kept in `target/browser-screenshots/` (CI output). A missing
//! `chromium` or `chromium-driver` fails the test (`.ci/run` installs both); chromedriver and
//! every Chromium process are killed when the test ends, however it ends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::TcpStream;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use federation_sim::{GenOptions, Month, Style, generate};
use serde_json::{Value, json};
use tests::{CARE_OFFICE, Env, EnvOptions, PLAN_OFFICE, Proc, http_json, relay_ok, sha256_hex};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Setting-up waits (claims accepted, notices mirrored).
const T: Duration = Duration::from_secs(60);
/// A page element to appear, a download to finish.
const UI: Duration = Duration::from_secs(15);

/// The office the test switches to (not the account's first office), and its name.
const OFFICE: &str = CARE_OFFICE;
const OFFICE_NAME: &str = "テスト訪問介護";
/// By the simulator's rules `…7` is returned (事由 B) and `…9` held (保留).
const RETURNED: &str = "1000000017";
const HELD: &str = "1000000019";

// ---------------------------------------------------------------------------------------------
// chromedriver and Chromium

/// chromedriver in a process group of its own (Chromium and its helpers are started in it), all
/// killed when dropped.
struct Driver {
    proc: Proc,
    port: u16,
}

impl Driver {
    /// chromedriver (and so Chromium) with `home` as its home folder.
    fn start(log: PathBuf, home: &Path) -> Driver {
        for (bin, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the browser test needs Debian's {package} \
                 (apt-get install -y chromium chromium-driver; .ci/run installs it)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .process_group(0);
        let proc = Proc::spawn("chromedriver", cmd, log);
        let up = tests::wait_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(
            up.is_some(),
            "chromedriver did not listen on {port}\n{}",
            proc.log_text()
        );
        Driver { proc, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver, Chromium and its zygote/renderer/utility processes share the group.
        if let Some(pgid) = rustix::process::Pid::from_raw(self.proc.id() as i32) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

/// A DevTools command through chromedriver (`POST /session/{id}/goog/cdp/execute`), for what
/// WebDriver itself has no command for: the download folder and full-page screenshots. It
/// talks to the browser, never runs script in the page.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// One Chromium session, driven synchronously so the test reads top to bottom.
struct Chrome {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    /// `https://localhost:PORT`.
    base: String,
    shots: PathBuf,
    taken: Vec<PathBuf>,
    /// Dropped after the session is closed (fields drop after `Drop::drop`).
    _driver: Driver,
}

impl Chrome {
    /// Starts headless Chromium with a fresh profile, trusting only the appliance's CA key.
    fn start(env: &Env, downloads: &Path) -> Chrome {
        let base = env.admin_url().trim_end_matches('/').to_owned();
        let home = env.dir.path().join("chromium-home");
        home_trusting(&env.state_dir().join("admin-tls").join("ca.pem"), &home);
        let profile = env.dir.path().join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::create_dir_all(downloads).unwrap();
        let driver = Driver::start(env.dir.path().join("chromedriver.log"), &home);
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--password-store=basic".into(),
            "--lang=ja".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": false,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads.to_str().unwrap(),
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                    "credentials_enable_service": false,
                    "profile.password_manager_enabled": false,
                    "profile.password_manager_leak_detection": false,
                },
            },
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = rt
            .block_on(async {
                let connector = hyper_util::client::legacy::connect::HttpConnector::new();
                tokio::time::timeout(
                    Duration::from_secs(60),
                    ClientBuilder::new(connector)
                        .capabilities(caps)
                        .connect(&format!("http://127.0.0.1:{}", driver.port)),
                )
                .await
            })
            .unwrap_or_else(|_| {
                panic!("Chromium did not start in 60 s\n{}", driver.proc.log_text())
            })
            .unwrap_or_else(|e| panic!("cannot start Chromium: {e}\n{}", driver.proc.log_text()));
        let chrome = Chrome {
            rt,
            client: Some(client),
            base,
            shots: screenshot_dir(),
            taken: Vec::new(),
            _driver: driver,
        };
        // Headless Chromium saves downloads only where it is told to, without asking.
        chrome.cdp(
            "Browser.setDownloadBehavior",
            json!({ "behavior": "allow", "downloadPath": downloads.to_str().unwrap() }),
        );
        let version = chrome.client().capabilities().and_then(|c| {
            c.get("browserVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        eprintln!("browser_e2e: Chromium {version:?} at {}", chrome.base);
        chrome.shots_reset();
        chrome
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("session open")
    }

    fn cdp(&self, cmd: &'static str, params: Value) -> Value {
        let c = self.client().clone();
        self.rt
            .block_on(c.issue_cmd(Cdp { cmd, params }))
            .unwrap_or_else(|e| panic!("DevTools {cmd}: {e}"))
    }

    fn goto(&self, path: &str) {
        self.goto_absolute(&format!("{}{path}", self.base));
    }

    fn goto_absolute(&self, url: &str) {
        let c = self.client().clone();
        self.rt
            .block_on(c.goto(url))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The current page's path and query.
    fn path(&self) -> String {
        let c = self.client().clone();
        let url = self.rt.block_on(c.current_url()).unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The element, waiting for it to appear; panics with the page's text if it does not.
    fn find(&self, locator: Locator<'_>) -> Element {
        let c = self.client().clone();
        let found = self.rt.block_on(c.wait().at_most(UI).for_element(locator));
        match found {
            Ok(e) => e,
            Err(e) => panic!(
                "{locator:?} is not on {} ({e})\n{}",
                self.path(),
                self.body_text()
            ),
        }
    }

    fn css(&self, selector: &str) -> Element {
        self.find(Locator::Css(selector))
    }

    fn all(&self, locator: Locator<'_>) -> Vec<Element> {
        let c = self.client().clone();
        self.rt.block_on(c.find_all(locator)).unwrap()
    }

    fn text_of(&self, e: &Element) -> String {
        self.rt.block_on(e.text()).unwrap()
    }

    fn text(&self, selector: &str) -> String {
        let e = self.css(selector);
        self.text_of(&e)
    }

    fn body_text(&self) -> String {
        let c = self.client().clone();
        self.rt
            .block_on(async move { c.find(Locator::Css("body")).await?.text().await })
            .unwrap_or_default()
    }

    fn attr(&self, e: &Element, name: &str) -> Option<String> {
        self.rt.block_on(e.attr(name)).unwrap()
    }

    fn click(&self, e: &Element) {
        self.rt.block_on(e.click()).unwrap();
    }

    fn type_into(&self, e: &Element, text: &str) {
        self.rt.block_on(e.send_keys(text)).unwrap();
    }

    /// Replaces the text of the field with this `id`.
    fn fill(&self, id: &str, text: &str) {
        let e = self.find(Locator::Id(id));
        self.rt.block_on(e.clear()).unwrap();
        self.type_into(&e, text);
    }

    /// Waits until the element's text contains `needle`; returns the text. While a click
    /// navigates, the element found may belong to the page being left and vanish before its
    /// text is read: that is "not yet", and the next look finds the new page's element.
    fn wait_text(&self, selector: &str, needle: &str) -> String {
        let deadline = Instant::now() + UI;
        loop {
            let e = self.css(selector);
            let text = match self.rt.block_on(e.text()) {
                Ok(text) => text,
                Err(err) => format!("(left the page while reading: {err})"),
            };
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{selector} does not show {needle:?}: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the browser shows `path` (after a click that navigates).
    fn wait_path(&self, want: &str) {
        let deadline = Instant::now() + UI;
        loop {
            let got = self.path();
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "expected to be on {want}, still on {got}\n{}",
                self.body_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn shots_reset(&self) {
        std::fs::create_dir_all(&self.shots).unwrap();
        for entry in std::fs::read_dir(&self.shots).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "png") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// A PNG of the whole page (beyond the window) as `NAME.png` in the screenshots folder.
    fn shot(&mut self, name: &str) {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let (w, h) = (
            size["width"].as_f64().unwrap_or(1280.0).ceil(),
            size["height"].as_f64().unwrap_or(900.0).ceil().min(8000.0),
        );
        let shot = self.cdp(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 },
            }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}: not a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        self.taken.push(path);
    }

    /// Logs in through the form on /login (the page must be showing).
    fn submit_login(&self, id: &str, password: &str) {
        self.fill("id", id);
        self.fill("password", password);
        let button = self.css("form[action='/login'] button[type='submit']");
        self.click(&button);
    }

    /// Fills and submits the password form on /account/password.
    fn submit_password_change(&self, old: &str, new: &str) {
        self.fill("old_password", old);
        self.fill("new_password", new);
        self.fill("new_password_confirm", new);
        let button = self.css("form[action='/account/password'] button[type='submit']");
        self.click(&button);
    }

    /// Follows a link of the menu.
    fn menu(&self, href: &str) {
        let link = self.css(&format!("nav a[href='{href}']"));
        self.click(&link);
        self.wait_path(href);
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        // End the session (chromedriver quits Chromium); the driver's group is killed after.
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(async move {
                tokio::time::timeout(Duration::from_secs(10), c.close()).await
            });
        }
    }
}

/// A home folder for Chromium whose NSS database (`~/.pki/nssdb`, where Chromium on Linux
/// reads the trust anchors a person adds) trusts the appliance's local CA for servers, as an
/// office PC that imported `ca.pem` does. Certificates are then verified as usual: chain,
/// validity and the host name.
fn home_trusting(ca_pem: &Path, home: &Path) {
    let db = home.join(".pki").join("nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db_arg = format!("sql:{}", db.display());
    let certutil = |args: &[&str]| {
        let out = Command::new("certutil")
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "certutil ({e}): the browser test needs Debian's libnss3-tools to make \
                     Chromium trust the appliance's CA (.ci/run installs it)"
                )
            });
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    certutil(&["-N", "-d", &db_arg, "--empty-password"]);
    certutil(&[
        "-A",
        "-d",
        &db_arg,
        "-n",
        "kaigo-relay local CA",
        "-t",
        "C,,",
        "-i",
        ca_pem.to_str().unwrap(),
    ]);
}

/// `target/browser-screenshots`, beside the profile folder holding this test executable
/// (`target/<profile>/deps/browser_e2e-…`), so also under `CARGO_TARGET_DIR`.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target directory");
    target.join("browser-screenshots")
}

// ---------------------------------------------------------------------------------------------
// Setting up: claims of two offices, month-end notices, a corporation account

fn cli(env: &Env, args: &[&str]) -> Value {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--json", "--config", env.daemon_config.to_str().unwrap()]);
    let out = relay_ok(all);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Drops generated claims of `office`, their names starting with `prefix` (the generator names
/// files the same for every office).
fn drop_generated(env: &Env, office: &str, prefix: char, people: Vec<u64>, seed: u64) {
    let files = generate(&GenOptions {
        office: office.into(),
        processing_month: Month::parse("202612").unwrap(),
        members: people.len() as u32,
        style: Style::Honobono,
        seed,
        service_month: None,
        insured_numbers: Some(people),
    })
    .unwrap();
    for f in files {
        env.drop_atomic(&format!("{prefix}{}", &f.name[1..]), &f.bytes);
    }
}

/// The returns of `office` as `kaigo-relay returns --json` lists them.
fn returns_of(env: &Env, office: &str) -> Vec<Value> {
    cli(env, &["returns"])["returns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["office_number"] == office)
        .cloned()
        .collect()
}

#[test]
fn a_corporation_user_works_through_the_admin_ui_in_chromium() {
    let started = Instant::now();
    let mut env = Env::with_options(EnvOptions {
        health_refresh_secs: 1,
        ..EnvOptions::default()
    });
    // Poll for notices every second while claims are being sent.
    let mut cfg = std::fs::OpenOptions::new()
        .append(true)
        .open(&env.daemon_config)
        .unwrap();
    writeln!(
        cfg,
        "\n[mirror]\nidle_interval_minutes = 1\nafter_submission_interval_secs = 1\nafter_submission_minutes = 600"
    )
    .unwrap();
    drop(cfg);
    env.start_daemon();
    let url = env.admin_url(); // also: the store exists
    assert!(url.starts_with("https://localhost:"), "{url}");

    // A corporation with both offices, made from the command line: a one-time password.
    let one_time = cli(
        &env,
        &[
            "user",
            "add",
            "--id",
            "sakura-houjin",
            "--role",
            "corporation",
            "--corporation-name",
            "社会福祉法人さくら会",
            "--corporation-office",
            CARE_OFFICE,
            "--corporation-office",
            PLAN_OFFICE,
        ],
    )["password"]
        .as_str()
        .unwrap()
        .to_owned();

    // December's claims of both offices, accepted; the month-end notices, mirrored.
    drop_generated(
        &env,
        CARE_OFFICE,
        'A',
        vec![1_000_000_011, 1_000_000_017, 1_000_000_019],
        1,
    );
    drop_generated(
        &env,
        PLAN_OFFICE,
        'B',
        vec![1_000_000_021, 1_000_000_027],
        2,
    );
    env.wait_for("four claims accepted", T, |env| {
        let s = env.status();
        (s.len() == 4
            && s.iter()
                .all(|x| x["state"] == "accepted" || x["state"] == "accepted_with_returns"))
        .then_some(())
    });
    let issued = http_json(
        "POST",
        &format!("{}/sim/advance", env.control_url),
        Some(&json!({ "phase": "month_end" })),
    );
    assert_eq!(issued["phase"], "month_end", "{issued}");
    let sim_notices = http_json("GET", &format!("{}/sim/notices", env.control_url), None);
    let sim_7411 = sim_notices
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["office_number"] == OFFICE && n["kind_id"] == "7411")
        .unwrap_or_else(|| panic!("the simulator issued no 7411 to {OFFICE}: {sim_notices}"))
        .clone();
    let notice_id = sim_7411["notice_id"].as_str().unwrap().to_owned();
    env.wait_for("the notices and returns of both offices", T, |env| {
        let notices = cli(env, &["notices"]);
        let mirrored = notices["notices"]
            .as_array()
            .is_some_and(|l| l.len() == sim_notices.as_array().unwrap().len());
        let offices: BTreeSet<String> = cli(env, &["returns"])["returns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["office_number"].as_str().unwrap().to_owned())
            .collect();
        (mirrored && offices.len() == 2).then_some(())
    });
    // The rows the office's 7411 must show: the statements the simulator returned or held
    // (its own record, not the daemon's reading of the notice).
    let sim_returns = http_json("GET", &format!("{}/sim/returns", env.control_url), None);
    let expected_rows: Vec<String> = sim_returns
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["office_number"] == OFFICE && r["outcome"] != "assessed")
        .map(|r| r["insured_number"].as_str().unwrap().to_owned())
        .collect();
    let expected_people: BTreeSet<&str> = expected_rows.iter().map(String::as_str).collect();
    assert_eq!(
        expected_people,
        BTreeSet::from([RETURNED, HELD]),
        "the simulator's rules: …7 returned, …9 held\n{sim_returns}"
    );
    let setup = started.elapsed();

    // ---- Chromium --------------------------------------------------------------------------
    let downloads = env.dir.path().join("downloads");
    let mut chrome = Chrome::start(&env, &downloads);

    // 1. The login page; a first login with the one-time password is sent to change it.
    chrome.goto("/");
    chrome.wait_path("/login");
    assert!(chrome.text("h1").contains("ログイン"));
    chrome.shot("01-login");
    chrome.submit_login("sakura-houjin", &one_time);
    chrome.wait_path("/account/password");
    let forced = chrome.text("main .message.info");
    assert!(
        forced.contains("新しいパスワードに変更してください"),
        "{forced}"
    );
    // The menu is not offered until the password is changed, and no page opens.
    assert!(chrome.all(Locator::Css("nav a")).is_empty());
    chrome.shot("02-password-change-forced");
    chrome.goto("/notices");
    chrome.wait_path("/account/password");
    let first_password = "sakura-kaigo-2026";
    chrome.submit_password_change(&one_time, first_password);
    chrome.wait_path("/account?changed=1");
    let changed = chrome.text("main .message");
    assert!(changed.contains("パスワードを変更しました"), "{changed}");
    chrome.shot("03-password-changed");

    // 2. Home, then switch to the second office.
    chrome.menu("/");
    let who = chrome.text("header .who .user");
    assert!(
        who.contains("sakura-houjin") && who.contains("法人"),
        "{who}"
    );
    // The account's first office is current; the test switches to the other one.
    let before = chrome.text("header .who .office");
    assert!(!before.contains(OFFICE), "{before}");
    chrome.shot("04-home");
    let select = chrome.css("form[action='/office'] select[name='office']");
    let offered: BTreeSet<String> = chrome
        .all(Locator::Css(
            "form[action='/office'] select[name='office'] option",
        ))
        .iter()
        .map(|o| chrome.attr(o, "value").unwrap_or_default())
        .collect();
    assert_eq!(
        offered,
        BTreeSet::from([CARE_OFFICE.to_owned(), PLAN_OFFICE.to_owned()])
    );
    chrome.rt.block_on(select.select_by_value(OFFICE)).unwrap();
    let switch = chrome.css("form[action='/office'] button[type='submit']");
    chrome.click(&switch);
    let current = chrome.wait_text("header .who .office", OFFICE);
    chrome.wait_path("/");
    assert!(
        current.contains(OFFICE_NAME),
        "the header names the chosen office: {current}"
    );
    let on_home = chrome.text("main");
    assert!(on_home.contains(OFFICE_NAME), "{on_home}");
    chrome.shot("05-office-switched");

    // 3. The notice list shows the chosen office's notices; open its 7411.
    chrome.menu("/notices");
    let heading = chrome.text("main h2");
    assert!(heading.contains(OFFICE), "{heading}");
    let link = chrome.find(Locator::XPath(
        "//tbody/tr[td[2][starts-with(normalize-space(),'7411')]]/td[3]/a",
    ));
    let href = chrome.attr(&link, "href").unwrap();
    assert!(href.ends_with(&format!("/notices/{notice_id}")), "{href}");
    assert_eq!(
        chrome
            .all(Locator::XPath(
                "//tbody/tr[td[2][starts-with(normalize-space(),'7411')]]"
            ))
            .len(),
        1,
        "one 7411 for this office and month"
    );
    chrome.shot("06-notices");
    chrome.click(&link);
    chrome.wait_path(&format!("/notices/{notice_id}"));
    let title = chrome.text("main h1");
    assert!(
        title.contains("請求明細書・給付管理票返戻（保留）一覧表"),
        "{title}"
    );
    let shown_sha = chrome.text("main dl code");
    assert_eq!(shown_sha, sim_7411["sha256"].as_str().unwrap());
    // Its 明細 (D1) table: the Japanese columns, and one row per returned or held statement.
    let detail = chrome
        .all(Locator::Css("section.notice-table"))
        .into_iter()
        .find(|s| {
            let h = chrome.rt.block_on(s.find(Locator::Css("h2"))).unwrap();
            chrome.text_of(&h).contains("明細")
        })
        .expect("a 明細 table");
    let columns: Vec<String> = chrome
        .rt
        .block_on(detail.find_all(Locator::Css("thead th")))
        .unwrap()
        .iter()
        .map(|th| chrome.text_of(th))
        .collect();
    for c in [
        "保険者番号",
        "被保険者番号",
        "カナ氏名",
        "サービス提供年月",
        "事由",
        "内容",
    ] {
        assert!(columns.iter().any(|x| x == c), "column {c} in {columns:?}");
    }
    let insured_col = columns.iter().position(|c| c == "被保険者番号").unwrap();
    let reason_col = columns.iter().position(|c| c == "事由").unwrap();
    let rows: Vec<Vec<String>> = chrome
        .rt
        .block_on(detail.find_all(Locator::Css("tbody tr")))
        .unwrap()
        .iter()
        .map(|tr| {
            chrome
                .rt
                .block_on(tr.find_all(Locator::Css("td")))
                .unwrap()
                .iter()
                .map(|td| chrome.text_of(td))
                .collect()
        })
        .collect();
    let mut shown_people: Vec<String> = rows.iter().map(|r| r[insured_col].clone()).collect();
    let mut want_people = expected_rows.clone();
    shown_people.sort();
    want_people.sort();
    assert_eq!(shown_people, want_people, "the 7411's rows: {rows:?}");
    assert!(
        rows.iter()
            .filter(|r| r[insured_col] == RETURNED)
            .all(|r| r[reason_col] == "B"),
        "{rows:?}"
    );
    let page = chrome.body_text();
    assert!(page.contains("保留"), "the held statement is marked");
    assert!(
        !page.contains("1000000027") && !page.contains("1000000021"),
        "the other office's people are not on this office's notice"
    );
    chrome.shot("07-notice-7411");

    // 4. Download the original (CP932, as the federation sent it).
    let original = chrome.css("ul.downloads a[href$='/original']");
    chrome.click(&original);
    let expected_size = sim_7411["size"].as_u64().unwrap();
    let file = tests::wait_until(UI, || {
        std::fs::read_dir(&downloads)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.extension().is_none_or(|x| x != "crdownload")
                    && std::fs::metadata(p).is_ok_and(|m| m.len() == expected_size)
            })
    })
    .unwrap_or_else(|| {
        panic!(
            "no download of {expected_size} bytes in {}: {:?}",
            downloads.display(),
            std::fs::read_dir(&downloads)
                .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
                .unwrap_or_default()
        )
    });
    let downloaded = std::fs::read(&file).unwrap();
    assert_eq!(
        sha256_hex(&downloaded),
        sim_7411["sha256"].as_str().unwrap()
    );
    let stored = env.dir.path().join("7411-from-store.csv");
    relay_ok([
        "notices",
        "--config",
        env.daemon_config.to_str().unwrap(),
        "--get",
        &notice_id,
        "--output",
        stored.to_str().unwrap(),
    ]);
    assert_eq!(
        downloaded,
        std::fs::read(&stored).unwrap(),
        "the download is the stored file"
    );
    assert!(
        std::str::from_utf8(&downloaded).is_err(),
        "the original is CP932, not converted"
    );
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&downloaded);
    assert!(
        !bad && text.contains(",7411,D1,") && text.contains(RETURNED),
        "{text}"
    );
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".csv"), "downloaded as {name}");
    // Chromium's own list of downloads: the file, complete.
    chrome.goto_absolute("chrome://downloads/");
    chrome.shot("08-downloaded");
    chrome.goto("/");

    // 5. Returns: close one of the returned statement's items with a note.
    chrome.menu("/returns");
    let heading = chrome.text("main h2");
    assert!(heading.contains(OFFICE), "{heading}");
    let open_rows = chrome.all(Locator::XPath(&format!(
        "//tbody/tr[td[3][normalize-space()='{RETURNED}']][.//form[contains(@class,'close-return')]]"
    )));
    assert!(!open_rows.is_empty(), "{}", chrome.body_text());
    chrome.shot("09-returns");
    let row = &open_rows[0];
    let status_before = chrome.text_of(
        &chrome
            .rt
            .block_on(row.find(Locator::XPath("td[8]")))
            .unwrap(),
    );
    assert!(status_before.contains("未対応"), "{status_before}");
    let form = chrome
        .rt
        .block_on(row.find(Locator::Css("form.close-return")))
        .unwrap();
    let action = chrome.attr(&form, "action").unwrap();
    let item_id = action
        .strip_prefix("/returns/")
        .and_then(|a| a.strip_suffix("/close"))
        .unwrap_or_else(|| panic!("form action {action}"))
        .to_owned();
    let note = "資格を確認し、保険者に連絡済み";
    let textarea = chrome
        .rt
        .block_on(form.find(Locator::Css("textarea[name='note']")))
        .unwrap();
    chrome.type_into(&textarea, note);
    let close = chrome
        .rt
        .block_on(form.find(Locator::Css("button[type='submit']")))
        .unwrap();
    chrome.click(&close);
    chrome.wait_path(&format!("/returns?office={OFFICE}&closed=1"));
    let flash = chrome.text("main .message.info");
    assert!(flash.contains("完了"), "the clerk is told: {flash}");
    let closed_row = chrome.find(Locator::XPath(&format!(
        "//tbody/tr[td[3][normalize-space()='{RETURNED}']][.//p[contains(@class,'note') and contains(., '{note}')]]"
    )));
    let status_after = chrome.text_of(
        &chrome
            .rt
            .block_on(closed_row.find(Locator::XPath("td[8]")))
            .unwrap(),
    );
    assert!(status_after.contains("完了"), "{status_after}");
    assert!(
        chrome
            .rt
            .block_on(closed_row.find_all(Locator::Css("form")))
            .unwrap()
            .is_empty(),
        "a closed item has no close form"
    );
    let item = returns_of(&env, OFFICE)
        .into_iter()
        .find(|r| r["id"] == item_id.as_str())
        .unwrap_or_else(|| panic!("return {item_id} in the CLI's list"));
    assert_eq!(item["status"], "closed", "{item}");
    assert_eq!(item["note"], note, "{item}");
    chrome.shot("10-return-closed");

    // English, one click away: the same page in English, the Japanese hidden; and back.
    let english = chrome.css("header .lang-switch a");
    chrome.click(&english);
    let heading = chrome.wait_text("main h1", "Returned claims");
    assert!(
        !heading.contains("返戻の管理"),
        "English mode hides the Japanese: {heading}"
    );
    let nav = chrome.text("header nav");
    assert!(
        nav.contains("Notices") && !nav.contains("通知文書"),
        "{nav}"
    );
    assert!(
        chrome.path().starts_with("/returns?office="),
        "back on the same page"
    );
    chrome.shot("10b-returns-in-english");
    let japanese = chrome.css("header .lang-switch a");
    chrome.click(&japanese);
    chrome.wait_text("main h1", "返戻の管理");

    // 6. Change the password again, from "my account".
    chrome.menu("/account");
    chrome.shot("11-my-account");
    let change = chrome.css("main a[href='/account/password']");
    chrome.click(&change);
    chrome.wait_path("/account/password");
    assert!(
        chrome.all(Locator::Css("main .message.info")).is_empty(),
        "not forced this time"
    );
    chrome.shot("12-password-change");
    let second_password = "sakura-kaigo-2027";
    chrome.submit_password_change(first_password, second_password);
    chrome.wait_path("/account?changed=1");
    assert!(
        chrome
            .text("main .message")
            .contains("パスワードを変更しました")
    );
    chrome.shot("13-password-changed-again");

    // 6b. Register an address for alerts on the same page, then open the alerts page.
    chrome.fill("alert-email", "sakura-jimu@example.jp");
    let save = chrome.css("main form[action='/account/alerts'] button[type='submit']");
    chrome.click(&save);
    chrome.wait_path("/account?alerts=1");
    assert!(
        chrome
            .text("main .message")
            .contains("通知の設定を保存しました")
    );
    let kept = chrome.css("#alert-email");
    assert_eq!(
        chrome.attr(&kept, "value").as_deref(),
        Some("sakura-jimu@example.jp")
    );
    chrome.shot("13b-alert-settings-saved");
    chrome.menu("/alerts");
    chrome.wait_text("main h1", "通知");
    chrome.shot("13c-alerts");

    // 7. Log out: every page then asks for a login.
    let logout = chrome.css("header form.logout button[type='submit']");
    chrome.click(&logout);
    chrome.wait_path("/login");
    chrome.shot("14-logged-out");
    chrome.goto("/");
    chrome.wait_path("/login");
    chrome.goto(&format!("/notices/{notice_id}"));
    chrome.wait_path("/login");
    assert!(!chrome.body_text().contains(RETURNED));

    // The old password no longer works; the new one does.
    chrome.submit_login("sakura-houjin", first_password);
    chrome.wait_path("/login");
    let refused = chrome.text("main .message.error");
    assert!(!refused.is_empty());
    chrome.shot("15-old-password-refused");
    chrome.submit_login("sakura-houjin", second_password);
    chrome.wait_path("/");
    // (The office chosen is the session's: a new login starts at the account's first one.)
    assert!(chrome.text("header .who .user").contains("sakura-houjin"));
    chrome.shot("16-logged-in-with-new-password");
    let logout = chrome.css("header form.logout button[type='submit']");
    chrome.click(&logout);
    chrome.wait_path("/login");

    eprintln!(
        "browser_e2e: set-up {:.1} s, browser {:.1} s; screenshots in {}:",
        setup.as_secs_f64(),
        (started.elapsed() - setup).as_secs_f64(),
        chrome.shots.display()
    );
    for p in &chrome.taken {
        eprintln!("  {}", p.display());
    }
    drop(chrome);
    env.daemon().terminate();
}
