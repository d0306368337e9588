//! Accounts and who may see what, through the real daemon's admin UI over HTTPS (its own local
//! CA), with real claims, notices and 返戻 items of two offices of two corporations.
//!
//! The authorization walk requests **every route** of `admin_ui::ROUTES` as each role — the
//! system administrator, a corporation, an office account and a staff account of corporation A,
//! a corporation and an office account of corporation B, and a visitor without a session —
//! against resources of both offices, and checks each answer against the allow/deny table:
//! nobody reads or changes another office's submissions, notices, returns or accounts by
//! putting its ID in a URL or a form. Other tests here: forced change at first login, cookie
//! attributes, CSRF and origin refusals, lockout and unlock, throttling, session revocation
//! on a password change and from the session list, and that no password or federation secret
//! appears in the log, in a page or in the store file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use federation_sim::{GenOptions, Month, Style, generate};
use serde_json::{Value, json};
use tests::browser::{Browser, Page};
use tests::{CARE_OFFICE, Env, EnvOptions, PLAN_OFFICE, http_json, relay_ok};

const T: Duration = Duration::from_secs(90);

fn cli(env: &Env, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--config", env.daemon_config.to_str().unwrap()]);
    String::from_utf8(relay_ok(all).stdout).unwrap()
}

fn cli_json(env: &Env, args: &[&str]) -> Value {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    serde_json::from_str(&cli(env, &all)).unwrap()
}

/// Logs in with a one-time password, is sent to the password form, and sets `new`.
fn first_login(env: &Env, id: &str, one_time: &str, new: &str) -> Browser {
    let mut b = env.browser();
    let page = b.login(id, one_time);
    assert_eq!(page.status, 303, "{id}: {}", page.text());
    assert_eq!(
        page.header("location").as_deref(),
        Some("/account/password")
    );
    // Every page sends a person who must change the password to the form first.
    for path in ["/", "/submissions", "/accounts", "/audit"] {
        let p = b.get(path);
        assert_eq!(p.status, 303, "{id} {path}");
        assert_eq!(p.header("location").as_deref(), Some("/account/password"));
    }
    let token = b.csrf();
    let changed = b.post(
        "/account/password",
        &[
            ("old_password", one_time),
            ("new_password", new),
            ("new_password_confirm", new),
            ("csrf_token", &token),
        ],
    );
    assert_eq!(changed.status, 303, "{id}: {}", changed.text());
    assert_eq!(b.get("/").status, 200, "{id} reaches the home page");
    b
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Admin,
    CorpA,
    OfficeCare,
    StaffA,
    CorpB,
    OfficePlan,
    Visitor,
}

const ROLES: [Who; 7] = [
    Who::Admin,
    Who::CorpA,
    Who::OfficeCare,
    Who::StaffA,
    Who::CorpB,
    Who::OfficePlan,
    Who::Visitor,
];

fn sees(who: Who, office: &str) -> bool {
    match who {
        Who::Admin => true,
        Who::CorpA | Who::OfficeCare | Who::StaffA => office == CARE_OFFICE,
        Who::CorpB | Who::OfficePlan => office == PLAN_OFFICE,
        Who::Visitor => false,
    }
}

fn manages_accounts(who: Who) -> bool {
    matches!(
        who,
        Who::Admin | Who::CorpA | Who::OfficeCare | Who::CorpB | Who::OfficePlan
    )
}

/// Whether `who` may manage (or, for its own, view) the account `target`.
fn manages(who: Who, target: &str) -> bool {
    match (who, target) {
        (Who::Admin, _) => target != "admin",
        (Who::CorpA, "staff-a" | "office-care") => true,
        (Who::OfficeCare, "staff-a") => true,
        (Who::CorpB, "office-plan") => true,
        _ => false,
    }
}

/// The resources of both offices the walk points at.
#[derive(Debug)]
struct Targets {
    submission: BTreeMap<&'static str, String>,
    notice: BTreeMap<&'static str, String>,
    ret: BTreeMap<&'static str, String>,
}

/// The expected outcome of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// 200 (a page or a download).
    Page,
    /// 303 to somewhere other than the login page (a form that did its work).
    Done,
    /// 422: allowed, but the probe's input is (deliberately) incomplete.
    Rejected,
    /// 403 or 404: not this principal's.
    Denied,
    /// 303 to /login: no session.
    Login,
}

fn check(who: Who, what: &str, page: &Page, want: Expect) {
    let got = page.status;
    let location = page.header("location").unwrap_or_default();
    let ok = match want {
        Expect::Page => got == 200,
        Expect::Done => got == 303 && location != "/login",
        Expect::Rejected => got == 422,
        Expect::Denied => got == 403 || got == 404,
        Expect::Login => got == 303 && location == "/login",
    };
    assert!(
        ok,
        "{who:?} {what}: expected {want:?}, got {got} (location {location:?})\n{}",
        page.text().chars().take(600).collect::<String>()
    );
    if matches!(want, Expect::Denied | Expect::Login) {
        // A refused page never carries the data.
        let text = page.text();
        for secret in ["1000000017", "1000000027"] {
            assert!(
                !text.contains(secret),
                "{who:?} {what}: a refused page shows insured person {secret}"
            );
        }
    }
}

struct Walk {
    seen: BTreeSet<(&'static str, &'static str)>,
}

impl Walk {
    fn mark(&mut self, method: &'static str, pattern: &'static str) {
        assert!(
            admin_ui::ROUTES
                .iter()
                .any(|r| r.method == method && r.path == pattern),
            "{method} {pattern} is not a route"
        );
        self.seen.insert((method, pattern));
    }
}

#[test]
fn every_route_answers_each_role_as_the_allow_deny_table_says() {
    let mut env = Env::with_options(EnvOptions {
        // The walk logs in from 127.0.0.1 many times; throttling has its own test.
        admin_toml: "login_burst_per_address = 1000\nlogin_burst_per_id = 100".into(),
        ..EnvOptions::default()
    });
    let mut cfg = std::fs::OpenOptions::new()
        .append(true)
        .open(&env.daemon_config)
        .unwrap();
    use std::io::Write as _;
    writeln!(
        cfg,
        "\n[backup]\n[[backup.sites]]\nname = \"backup-dir\"\nkind = \"directory\"\npath = \"backup-dir\"\nencrypt = true"
    )
    .unwrap();
    drop(cfg);
    env.start_daemon();
    let url = env.admin_url();
    assert!(url.starts_with("https://localhost:"), "{url}");

    // The first start made the administrator with a one-time password, in a 0600 file.
    let initial = std::fs::read_to_string(env.state_dir().join("initial-admin-password.txt"))
        .expect("the first password file");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(env.state_dir().join("initial-admin-password.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let admin_first = initial
        .lines()
        .find_map(|l| l.split_once("password: ").map(|(_, p)| p.trim().to_owned()))
        .expect("the password line");
    let log1 = std::fs::read_to_string(env.dir.path().join("daemon-1.log")).unwrap();
    assert!(
        !log1.contains(&admin_first),
        "the first password is never logged"
    );

    // Corporations, offices and staff, set up from the command line.
    let corp_a = env.add_user(&[
        "--id",
        "corp-a",
        "--role",
        "corporation",
        "--corporation-name",
        "社会福祉法人あおば会",
        "--corporation-office",
        CARE_OFFICE,
    ]);
    let corp_b = env.add_user(&[
        "--id",
        "corp-b",
        "--role",
        "corporation",
        "--corporation-name",
        "株式会社みどり",
        "--corporation-office",
        PLAN_OFFICE,
    ]);
    let office_care = env.add_user(&[
        "--id",
        "office-care",
        "--role",
        "office",
        "--office",
        CARE_OFFICE,
    ]);
    let office_plan = env.add_user(&[
        "--id",
        "office-plan",
        "--role",
        "office",
        "--office",
        PLAN_OFFICE,
    ]);
    let staff_a = env.add_user(&["--id", "staff-a", "--role", "staff", "--grant", CARE_OFFICE]);
    let users = cli_json(&env, &["user", "list"]);
    assert_eq!(users["users"].as_array().unwrap().len(), 6, "{users}");

    // Claims of both offices (…7 is returned by the simulator's rules), accepted, then the
    // month-end notices, mirrored into the store.
    drop_generated(
        &env,
        CARE_OFFICE,
        'A',
        vec![1_000_000_017, 1_000_000_011],
        1,
    );
    drop_generated(
        &env,
        PLAN_OFFICE,
        'B',
        vec![1_000_000_027, 1_000_000_021],
        2,
    );
    env.wait_for("four claims accepted", T, |env| {
        let s = env.status();
        (s.len() >= 4
            && s.iter()
                .all(|x| x["state"] == "accepted" || x["state"] == "accepted_with_returns"))
        .then_some(())
    });
    let v = http_json(
        "POST",
        &format!("{}/sim/advance", env.control_url),
        Some(&json!({"phase": "month_end"})),
    );
    assert_eq!(v["phase"], "month_end", "{v}");
    let returns = env.wait_for("returns of both offices", T, |env| {
        let r = cli_json(env, &["returns"]);
        let items = r["returns"].as_array().cloned().unwrap_or_default();
        let offices: BTreeSet<String> = items
            .iter()
            .map(|i| i["office_number"].as_str().unwrap().to_owned())
            .collect();
        (offices.len() == 2).then_some(items)
    });
    let notices = cli_json(&env, &["notices"])["notices"]
        .as_array()
        .cloned()
        .unwrap();
    let status = env.status();
    let pick = |list: &[Value], office: &str, key: &str| -> String {
        list.iter()
            .find(|x| x["office_number"] == office)
            .map(|x| x[key].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {key} for {office} in {list:?}"))
    };
    let targets = Targets {
        submission: [CARE_OFFICE, PLAN_OFFICE]
            .into_iter()
            .map(|o| (o, pick(&status, o, "id")))
            .collect(),
        notice: [CARE_OFFICE, PLAN_OFFICE]
            .into_iter()
            .map(|o| {
                let csv = notices
                    .iter()
                    .find(|n| n["office_number"] == o && n["kind_id"] == "7411")
                    .unwrap_or_else(|| panic!("a 7411 of {o}"));
                (o, csv["notice_id"].as_str().unwrap().to_owned())
            })
            .collect(),
        ret: [CARE_OFFICE, PLAN_OFFICE]
            .into_iter()
            .map(|o| (o, pick(&returns, o, "id")))
            .collect(),
    };
    // The CLI's `returns --json` has no ID field name guarantee beyond "id".
    assert!(targets.ret.values().all(|id| !id.is_empty()));

    // Everyone logs in for the first time: the one-time password must be replaced first.
    let admin_reset = cli(&env, &["user", "reset-admin"]);
    assert!(admin_reset.contains("admin"), "{admin_reset}");
    let admin_pw = admin_reset
        .lines()
        .find_map(|l| {
            l.split_once("new password: ")
                .map(|(_, p)| p.trim().to_owned())
        })
        .expect("reset-admin prints the new password");
    // The first password no longer works after reset-admin.
    let mut stale = env.browser();
    assert_eq!(stale.login("admin", &admin_first).status, 401);
    let mut browsers: BTreeMap<Who, Browser> = BTreeMap::new();
    browsers.insert(
        Who::Admin,
        first_login(&env, "admin", &admin_pw, "kanri-sha-pass-2026"),
    );
    browsers.insert(
        Who::CorpA,
        first_login(&env, "corp-a", &corp_a, "aoba-houjin-pass"),
    );
    browsers.insert(
        Who::OfficeCare,
        first_login(&env, "office-care", &office_care, "care-office-pass"),
    );
    browsers.insert(
        Who::StaffA,
        first_login(&env, "staff-a", &staff_a, "kimura-jimu-2026"),
    );
    browsers.insert(
        Who::CorpB,
        first_login(&env, "corp-b", &corp_b, "midori-corp-pass"),
    );
    browsers.insert(
        Who::OfficePlan,
        first_login(&env, "office-plan", &office_plan, "plan-office-pass"),
    );
    browsers.insert(Who::Visitor, env.browser());

    let mut walk = Walk {
        seen: BTreeSet::new(),
    };
    let offices = [CARE_OFFICE, PLAN_OFFICE];
    let accounts = ["staff-a", "office-care", "office-plan", "admin"];

    for who in ROLES {
        let b = browsers.get_mut(&who).unwrap();
        let token = if who == Who::Visitor {
            "no-session".to_owned()
        } else {
            b.csrf()
        };
        let gate = |allowed: bool, yes: Expect| -> Expect {
            if who == Who::Visitor {
                Expect::Login
            } else if allowed {
                yes
            } else {
                Expect::Denied
            }
        };
        let logged_in = who != Who::Visitor;

        // Public pages.
        walk.mark("GET", "/login");
        let login = b.get("/login");
        if logged_in {
            assert_eq!(
                login.status, 303,
                "{who:?}: a session goes home from /login"
            );
        } else {
            check(who, "GET /login", &login, Expect::Page);
        }
        walk.mark("GET", "/login/password");
        check(
            who,
            "GET /login/password",
            &b.get("/login/password"),
            Expect::Page,
        );
        walk.mark("GET", "/static/style.css");
        check(
            who,
            "GET /static/style.css",
            &b.get("/static/style.css"),
            Expect::Page,
        );
        // Monitoring: the health check answers anyone; the metrics answer this loopback
        // client (a LAN scraper needs the token: admin-ui's and the daemon's unit tests), and
        // carry no insured person's number or name.
        walk.mark("GET", "/certificate");
        check(
            who,
            "GET /certificate",
            &b.get("/certificate"),
            Expect::Page,
        );
        walk.mark("GET", "/certificate/kaigo-relay-ca.crt");
        check(
            who,
            "GET /certificate/kaigo-relay-ca.crt",
            &b.get("/certificate/kaigo-relay-ca.crt"),
            Expect::Page,
        );
        // Help is open to every role (and to no session), on the real daemon's catalogue.
        for (pattern, path) in [
            ("/help", "/help"),
            ("/help/codes", "/help/codes"),
            ("/help/manual", "/help/manual"),
            ("/help/code/{code}", "/help/code/file.utf8"),
            ("/help/{topic}", "/help/submissions"),
        ] {
            walk.mark("GET", pattern);
            check(who, &format!("GET {path}"), &b.get(path), Expect::Page);
        }
        walk.mark("GET", "/lang");
        let switched = b.get("/lang?to=en&back=%2Fcertificate");
        assert_eq!(switched.status, 303, "{who:?}: the language switch");
        assert_eq!(switched.header("location").as_deref(), Some("/certificate"));
        b.get("/lang?to=ja&back=%2F");
        walk.mark("GET", "/healthz");
        check(who, "GET /healthz", &b.get("/healthz"), Expect::Page);
        walk.mark("GET", "/metrics");
        let metrics = b.get("/metrics");
        check(who, "GET /metrics", &metrics, Expect::Page);
        for private in ["1000000017", "1000000027", "ﾃｽﾄ"] {
            assert!(
                !metrics.text().contains(private),
                "{who:?}: /metrics shows {private}"
            );
        }

        // Pages of every session.
        for (m, p) in [
            ("GET", "/"),
            ("GET", "/account"),
            ("GET", "/account/password"),
            ("GET", "/alerts"),
        ] {
            walk.mark(m, p);
            check(who, p, &b.get(p), gate(true, Expect::Page));
        }
        walk.mark("GET", "/offices");
        let list = b.get("/offices");
        check(who, "GET /offices", &list, gate(true, Expect::Page));
        if logged_in {
            for o in offices {
                assert_eq!(
                    list.text().contains(o),
                    sees(who, o),
                    "{who:?}: the office list and office {o}"
                );
            }
        }

        for o in offices {
            walk.mark("GET", "/offices/{number}");
            check(
                who,
                &format!("GET /offices/{o}"),
                &b.get(&format!("/offices/{o}")),
                gate(sees(who, o), Expect::Page),
            );
            for list in ["/submissions", "/notices", "/returns", "/returns/export"] {
                walk.mark("GET", list);
                let page = b.get(&format!("{list}?office={o}"));
                check(
                    who,
                    &format!("GET {list}?office={o}"),
                    &page,
                    gate(sees(who, o), Expect::Page),
                );
            }
            let sub = &targets.submission[o];
            walk.mark("GET", "/submissions/{id}");
            check(
                who,
                &format!("GET /submissions/{sub} ({o})"),
                &b.get(&format!("/submissions/{sub}")),
                gate(sees(who, o), Expect::Page),
            );
            // Resend (the file does not need it) and withdraw without the tick: refused as
            // input on one's own, not found on another's; nothing reaches the gateway.
            for (pattern, action) in [
                ("/submissions/{id}/resend", "resend"),
                ("/submissions/{id}/withdraw", "withdraw"),
            ] {
                walk.mark("POST", pattern);
                check(
                    who,
                    &format!("POST /submissions/{sub}/{action} ({o})"),
                    &b.post(
                        &format!("/submissions/{sub}/{action}"),
                        &[("csrf_token", &token)],
                    ),
                    gate(sees(who, o), Expect::Rejected),
                );
            }
            let notice = &targets.notice[o];
            for (pattern, suffix) in [
                ("/notices/{id}", ""),
                ("/notices/{id}/original", "/original"),
                ("/notices/{id}/utf8", "/utf8"),
                ("/notices/{id}/view", "/view"),
            ] {
                walk.mark("GET", pattern);
                let page = b.get(&format!("/notices/{notice}{suffix}"));
                check(
                    who,
                    &format!("GET /notices/{notice}{suffix} ({o})"),
                    &page,
                    gate(sees(who, o), Expect::Page),
                );
                if page.status == 200 && suffix == "/original" {
                    assert!(
                        page.header("content-disposition")
                            .unwrap_or_default()
                            .starts_with("attachment"),
                        "a download"
                    );
                }
            }
            // Switching to an office by naming it in the form.
            walk.mark("POST", "/office");
            check(
                who,
                &format!("POST /office {o}"),
                &b.post("/office", &[("office", o), ("csrf_token", &token)]),
                gate(sees(who, o), Expect::Done),
            );
            // Closing a return: another office's item is not found, with a proper note (and
            // stays open, checked after the walk); on one's own, a probe without a note is
            // refused as input (the real close comes after the walk).
            let ret = &targets.ret[o];
            walk.mark("POST", "/returns/{id}/close");
            let note = if sees(who, o) {
                ""
            } else {
                "他事業所の返戻を閉じる試み"
            };
            check(
                who,
                &format!("POST /returns/{ret}/close ({o})"),
                &b.post(
                    &format!("/returns/{ret}/close"),
                    &[("note", note), ("csrf_token", &token)],
                ),
                gate(sees(who, o), Expect::Rejected),
            );
        }
        if logged_in {
            // After trying to switch to every office, the session works on one it may see.
            let home = b.get("/").text();
            let current: Vec<&str> = offices.into_iter().filter(|o| home.contains(o)).collect();
            assert!(
                current.iter().all(|o| sees(who, o)),
                "{who:?} home shows {current:?}"
            );
        }

        // Account management.
        for (m, p) in [("GET", "/accounts"), ("GET", "/accounts/new")] {
            walk.mark(m, p);
            check(who, p, &b.get(p), gate(manages_accounts(who), Expect::Page));
        }
        walk.mark("POST", "/accounts");
        // A probe with no role: refused as input when the principal may create accounts.
        check(
            who,
            "POST /accounts (no role)",
            &b.post(
                "/accounts",
                &[
                    ("id", "probe-x"),
                    ("display_name", "x"),
                    ("csrf_token", &token),
                ],
            ),
            if who == Who::Visitor {
                Expect::Login
            } else if manages_accounts(who) {
                Expect::Rejected
            } else {
                Expect::Denied
            },
        );
        for target in accounts {
            let own = match who {
                Who::Admin => target == "admin",
                Who::OfficeCare => target == "office-care",
                Who::StaffA => target == "staff-a",
                Who::OfficePlan => target == "office-plan",
                _ => false,
            };
            walk.mark("GET", "/accounts/{id}");
            check(
                who,
                &format!("GET /accounts/{target}"),
                &b.get(&format!("/accounts/{target}")),
                gate(
                    manages_accounts(who) && (own || manages(who, target)),
                    Expect::Page,
                ),
            );
            // Grants with no office: refused as input (staff-a, the one staff account) when
            // the principal manages the account, not found otherwise. Unlock and enable change
            // nothing here, so they are walked for real.
            walk.mark("POST", "/accounts/{id}/grants");
            let grants = b.post(
                &format!("/accounts/{target}/grants"),
                &[("csrf_token", &token)],
            );
            check(
                who,
                &format!("POST /accounts/{target}/grants"),
                &grants,
                gate(manages(who, target), Expect::Rejected),
            );
            for action in ["unlock", "enable"] {
                walk.mark(
                    "POST",
                    if action == "unlock" {
                        "/accounts/{id}/unlock"
                    } else {
                        "/accounts/{id}/enable"
                    },
                );
                check(
                    who,
                    &format!("POST /accounts/{target}/{action}"),
                    &b.post(
                        &format!("/accounts/{target}/{action}"),
                        &[("csrf_token", &token)],
                    ),
                    gate(manages(who, target), Expect::Done),
                );
            }
            if !manages(who, target) {
                // Denied resets and disables change nothing (checked below).
                for (pattern, action) in [
                    ("/accounts/{id}/reset", "reset"),
                    ("/accounts/{id}/disable", "disable"),
                ] {
                    walk.mark("POST", pattern);
                    check(
                        who,
                        &format!("POST /accounts/{target}/{action}"),
                        &b.post(
                            &format!("/accounts/{target}/{action}"),
                            &[("csrf_token", &token)],
                        ),
                        gate(false, Expect::Done),
                    );
                }
            }
        }
        for page in ["/audit", "/system"] {
            walk.mark("GET", page);
            let got = b.get(page);
            check(who, page, &got, gate(who == Who::Admin, Expect::Page));
            if page == "/system" && who == Who::Admin {
                // The daemon's own log lines are there (it logged its start).
                assert!(got.text().contains("最近のログ"));
                assert!(
                    got.text().contains("kaigo_relay::"),
                    "log lines with their module"
                );
            }
        }

        // Backups: administrators only (one encrypted directory site is configured).
        walk.mark("GET", "/backups");
        let got = b.get("/backups");
        check(who, "/backups", &got, gate(who == Who::Admin, Expect::Page));
        if who == Who::Admin {
            assert!(got.text().contains("backup-dir"), "the site is listed");
            assert!(got.text().contains("鍵の書き出しがまだ確認されていません"));
        }
        walk.mark("GET", "/backups/key");
        let got = b.get("/backups/key");
        check(
            who,
            "/backups/key",
            &got,
            gate(who == Who::Admin, Expect::Page),
        );
        if who == Who::Admin {
            assert!(got.text().contains("key-id: "), "the key file");
        }
        walk.mark("POST", "/backups/key/confirm");
        check(
            who,
            "/backups/key/confirm",
            &b.post(
                "/backups/key/confirm",
                &[("csrf_token", &token), ("key_id", "ffffffffffffffff")],
            ),
            gate(who == Who::Admin, Expect::Rejected),
        );
        walk.mark("POST", "/backups/restore");
        check(
            who,
            "/backups/restore",
            // Without the tick: nothing is restored (the e2e backup test restores for real).
            &b.post(
                "/backups/restore",
                &[("csrf_token", &token), ("site", "backup-dir")],
            ),
            gate(who == Who::Admin, Expect::Rejected),
        );
        walk.mark("POST", "/backups/run");
        check(
            who,
            "/backups/run",
            &b.post("/backups/run", &[("csrf_token", &token)]),
            gate(who == Who::Admin, Expect::Done),
        );

        // Everyone sets their own alert address; a malformed one is refused. Only the
        // administrator sends a test (no destination is configured here: the page says so).
        walk.mark("POST", "/account/alerts");
        check(
            who,
            "POST /account/alerts",
            &b.post(
                "/account/alerts",
                &[
                    ("csrf_token", &token),
                    ("email", "jimu@example.jp"),
                    ("group", "returns"),
                    ("language", "ja"),
                ],
            ),
            gate(true, Expect::Done),
        );
        check(
            who,
            "POST /account/alerts (bad address)",
            &b.post(
                "/account/alerts",
                &[("csrf_token", &token), ("email", "not an address")],
            ),
            gate(true, Expect::Rejected),
        );
        walk.mark("POST", "/alerts/test");
        check(
            who,
            "POST /alerts/test",
            &b.post("/alerts/test", &[("csrf_token", &token)]),
            gate(who == Who::Admin, Expect::Page),
        );

        // Ending another account's session by naming it: never (checked after the walk).
        walk.mark("POST", "/account/sessions/revoke");
        check(
            who,
            "POST /account/sessions/revoke (unknown)",
            &b.post(
                "/account/sessions/revoke",
                &[
                    ("session_id", "0123456789abcdef0123"),
                    ("csrf_token", &token),
                ],
            ),
            gate(false, Expect::Done),
        );
    }

    // Nothing a refusal touched changed: every account still logs in with its password, and
    // no return item was closed.
    for (id, pw) in [
        ("staff-a", "kimura-jimu-2026"),
        ("office-care", "care-office-pass"),
        ("office-plan", "plan-office-pass"),
        ("admin", "kanri-sha-pass-2026"),
    ] {
        let mut b = env.browser();
        assert_eq!(b.login(id, pw).status, 303, "{id} still logs in");
    }
    let r = cli_json(&env, &["returns"]);
    assert!(
        r["returns"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] != "closed"),
        "{r}"
    );

    // The allowed changes, for real.
    let corp_a = browsers.get_mut(&Who::CorpA).unwrap();
    let token = corp_a.csrf();
    let created = corp_a.post(
        "/accounts",
        &[
            ("id", "staff-a2"),
            ("display_name", "事務 二郎"),
            ("role", "staff"),
            ("grants", CARE_OFFICE),
            ("csrf_token", &token),
        ],
    );
    check(
        Who::CorpA,
        "POST /accounts staff-a2",
        &created,
        Expect::Page,
    );
    let one_time = created.text();
    assert!(one_time.contains("staff-a2"));
    // A corporation cannot make a staff account for another corporation's office.
    let foreign = corp_a.post(
        "/accounts",
        &[
            ("id", "staff-x"),
            ("display_name", "x"),
            ("role", "staff"),
            ("grants", PLAN_OFFICE),
            ("csrf_token", &token),
        ],
    );
    assert!(
        matches!(foreign.status, 403 | 404 | 422),
        "{}",
        foreign.status
    );
    walk.mark("POST", "/accounts/{id}/reset");
    let reset = corp_a.post("/accounts/staff-a2/reset", &[("csrf_token", &token)]);
    check(
        Who::CorpA,
        "POST /accounts/staff-a2/reset",
        &reset,
        Expect::Page,
    );
    walk.mark("POST", "/accounts/{id}/disable");
    check(
        Who::CorpA,
        "POST /accounts/staff-a2/disable",
        &corp_a.post("/accounts/staff-a2/disable", &[("csrf_token", &token)]),
        Expect::Done,
    );
    let office_care = browsers.get_mut(&Who::OfficeCare).unwrap();
    let token = office_care.csrf();
    let ret = &targets.ret[CARE_OFFICE];
    check(
        Who::OfficeCare,
        "close a return with a note",
        &office_care.post(
            &format!("/returns/{ret}/close"),
            &[
                ("note", "利用者死亡のため請求しない"),
                ("csrf_token", &token),
            ],
        ),
        Expect::Done,
    );
    let r = cli_json(&env, &["returns"]);
    let closed: Vec<&Value> = r["returns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "closed")
        .collect();
    assert_eq!(closed.len(), 1, "{r}");
    assert_eq!(closed[0]["office_number"], CARE_OFFICE);

    // Logging out, last.
    for who in ROLES {
        let b = browsers.get_mut(&who).unwrap();
        walk.mark("POST", "/logout");
        let token = if who == Who::Visitor {
            "x".to_owned()
        } else {
            b.csrf()
        };
        let out = b.post("/logout", &[("csrf_token", &token)]);
        if who == Who::Visitor {
            check(who, "POST /logout", &out, Expect::Login);
        } else {
            assert_eq!(out.status, 303);
            assert_eq!(out.header("location").as_deref(), Some("/login"));
            check(who, "GET / after logout", &b.get("/"), Expect::Login);
        }
    }

    // The walk covered every route except the two public POSTs, which the login tests cover.
    walk.mark("POST", "/login");
    walk.mark("POST", "/login/password");
    walk.mark("POST", "/account/password");
    let all: BTreeSet<(&str, &str)> = admin_ui::ROUTES
        .iter()
        .map(|r| (r.method, r.path))
        .collect();
    let missing: Vec<_> = all.difference(&walk.seen).collect();
    assert!(missing.is_empty(), "routes not walked: {missing:?}");

    // The audit log names the changes, the downloads and the logins.
    let admin = browsers.get_mut(&Who::Admin).unwrap();
    admin.login("admin", "kanri-sha-pass-2026");
    let audit = admin.get("/audit").text();
    for action in [
        "account_created",
        "password_changed",
        "password_reset",
        "account_disabled",
        "notice_downloaded",
        "return_closed",
        "login_failed",
        "admin_reset",
        "logout",
    ] {
        assert!(audit.contains(action), "the audit log has {action}");
    }

    // No password or federation secret in the log, in a page, or in the store file.
    let staff_a2_first = corp_a_one_time(&one_time);
    let secrets = [
        "pw-care-1",
        "pw-plan-2",
        "kanri-sha-pass-2026",
        "aoba-houjin-pass",
        "care-office-pass",
        "kimura-jimu-2026",
        "midori-corp-pass",
        "plan-office-pass",
        admin_pw.as_str(),
        admin_first.as_str(),
        staff_a2_first.as_str(),
    ];
    env.daemon().terminate();
    let mut store = Vec::new();
    for entry in std::fs::read_dir(env.state_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "redb") {
            store.extend(std::fs::read(&p).unwrap());
        }
    }
    assert!(!store.is_empty());
    let logs = env.logs();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!logs.contains(s), "a secret is in the log");
        assert!(
            !store.windows(s.len()).any(|w| w == s.as_bytes()),
            "a secret is in the store file in clear"
        );
        assert!(!audit.contains(s), "a secret is on the audit page");
    }
}

/// The one-time password shown on the "account created" page.
fn corp_a_one_time(page: &str) -> String {
    // The page shows it in a <code> element (and nowhere else).
    page.split("<code")
        .nth(1)
        .and_then(|rest| rest.split_once('>'))
        .and_then(|(_, rest)| rest.split_once("</code>"))
        .map(|(pw, _)| pw.trim().to_owned())
        .unwrap_or_default()
}

/// Logs in and completes the forced first change; returns the browser.
fn ready(env: &Env, id: &str, one_time: &str, new: &str) -> Browser {
    first_login(env, id, one_time, new)
}

#[test]
fn login_protection_sessions_and_cookies() {
    let mut env = Env::with_options(EnvOptions {
        // Lockout after 4 failures; an ID may be tried 20 times in a burst, an address 200.
        admin_toml: "lockout_after_failures = 4\nlogin_burst_per_id = 20\nlogin_refill_per_id_secs = 60\nlogin_burst_per_address = 200\nlogin_refill_per_address_secs = 60".into(),
        ..EnvOptions::default()
    });
    env.start_daemon();
    let _ = env.admin_url();
    let clerk_first = env.add_user(&["--id", "clerk", "--role", "staff", "--grant", CARE_OFFICE]);
    let boss_first = env.add_user(&["--id", "boss", "--role", "office", "--office", CARE_OFFICE]);

    // Cookie attributes of the login form's and the session's cookies.
    let mut b = env.browser();
    let form = b.get("/login");
    let login_cookie = form
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-kaigo_login="))
        .expect("the login form sets its CSRF cookie");
    let logged = b.login("clerk", &clerk_first);
    let session_cookie = logged
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-kaigo_session="))
        .expect("a session cookie");
    for c in [&login_cookie, &session_cookie] {
        let attrs: BTreeSet<String> = c
            .split(';')
            .skip(1)
            .map(|a| a.trim().to_ascii_lowercase())
            .collect();
        for want in ["secure", "httponly", "samesite=strict", "path=/"] {
            assert!(attrs.contains(want), "{c} lacks {want}");
        }
        assert!(
            !attrs.iter().any(|a| a.starts_with("domain")),
            "{c} has no Domain"
        );
    }
    let token_value = session_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    assert!(token_value.len() >= 43, "256-bit token: {token_value}");
    // The store keeps only its hash.
    drop(b);

    // Forced change at first login, then CSRF and origin refusals.
    let mut clerk = ready(&env, "clerk", &clerk_first, "kimura-jimu-2026");
    let token = clerk.csrf();
    let wrong = clerk.post(
        "/office",
        &[("office", CARE_OFFICE), ("csrf_token", "forged")],
    );
    assert_eq!(wrong.status, 403, "a wrong CSRF token");
    let missing = clerk.post("/office", &[("office", CARE_OFFICE)]);
    assert_eq!(missing.status, 403, "no CSRF token");
    let foreign = clerk.request(
        "POST",
        "/office",
        Some(tests::browser::encode(&[
            ("office", CARE_OFFICE),
            ("csrf_token", &token),
        ])),
        &[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
    );
    assert_eq!(foreign.status, 403, "a cross-site form");
    let cross_origin_only = clerk.request(
        "POST",
        "/office",
        Some(tests::browser::encode(&[
            ("office", CARE_OFFICE),
            ("csrf_token", &token),
        ])),
        &[("origin", "https://evil.example")],
    );
    assert_eq!(cross_origin_only.status, 403, "a foreign Origin");
    let fine = clerk.post(
        "/office",
        &[("office", CARE_OFFICE), ("csrf_token", &token)],
    );
    assert_eq!(fine.status, 303, "the same form from the site itself");
    // Login CSRF: a login post without the form's cookie.
    let mut bare = env.browser();
    let form = bare.get("/login");
    let t = form.input_values("csrf_token").remove(0);
    bare.clear_cookies();
    let refused = bare.post(
        "/login",
        &[
            ("id", "clerk"),
            ("password", "kimura-jimu-2026"),
            ("csrf_token", &t),
        ],
    );
    assert_eq!(refused.status, 403, "login without its CSRF cookie");
    assert!(bare.cookie("__Host-kaigo_session").is_none());

    // Sessions: a second login appears in the list; the first ends it from there.
    let mut second = env.browser();
    assert_eq!(second.login("clerk", "kimura-jimu-2026").status, 303);
    assert_eq!(second.get("/").status, 200);
    let page = clerk.get("/account");
    let ids = other_sessions(&page);
    assert_eq!(ids.len(), 1, "one other session to end: {ids:?}");
    let token = clerk.csrf();
    let revoke = clerk.post(
        "/account/sessions/revoke",
        &[("session_id", &ids[0]), ("csrf_token", &token)],
    );
    assert_eq!(revoke.status, 303);
    assert_eq!(
        second.get("/").header("location").as_deref(),
        Some("/login?expired=1")
    );
    let told = second.get("/login?expired=1");
    assert!(
        told.text().contains("/help/code/accounts.session_expired"),
        "the login page says why: {}",
        told.text()
    );
    assert_eq!(
        clerk.get("/").status,
        200,
        "the session that ended it goes on"
    );

    // A password change ends every other session of the account.
    let mut other = env.browser();
    assert_eq!(other.login("clerk", "kimura-jimu-2026").status, 303);
    let token = clerk.csrf();
    let changed = clerk.post(
        "/account/password",
        &[
            ("old_password", "kimura-jimu-2026"),
            ("new_password", "sakura-no-hana-7"),
            ("new_password_confirm", "sakura-no-hana-7"),
            ("csrf_token", &token),
        ],
    );
    assert_eq!(changed.status, 303, "{}", changed.text());
    assert_eq!(
        other.get("/").header("location").as_deref(),
        Some("/login?expired=1")
    );
    assert_eq!(clerk.get("/").status, 200);
    // A wrong current password changes nothing.
    let token = clerk.csrf();
    let bad = clerk.post(
        "/account/password",
        &[
            ("old_password", "not-my-password"),
            ("new_password", "tsuki-to-hoshi-9"),
            ("new_password_confirm", "tsuki-to-hoshi-9"),
            ("csrf_token", &token),
        ],
    );
    assert_eq!(bad.status, 422);
    // Each refusal links to its entry in the message catalogue, raised by the code itself.
    assert!(
        bad.text()
            .contains("/help/code/accounts.password_wrong_current"),
        "{}",
        bad.text()
    );

    // The change from the login screen (with the old password) ends every session.
    let mut screen = env.browser();
    let form = screen.get("/login/password");
    let t = form.input_values("csrf_token").remove(0);
    let done = screen.post(
        "/login/password",
        &[
            ("id", "clerk"),
            ("old_password", "sakura-no-hana-7"),
            ("new_password", "ume-no-ki-3-gatsu"),
            ("new_password_confirm", "ume-no-ki-3-gatsu"),
            ("csrf_token", &t),
        ],
    );
    assert_eq!(done.status, 303, "{}", done.text());
    assert_eq!(
        clerk.get("/").header("location").as_deref(),
        Some("/login?expired=1")
    );
    assert_eq!(clerk.login("clerk", "ume-no-ki-3-gatsu").status, 303);

    // Lockout: four wrong passwords lock the account; the right one is then refused too.
    let mut guesser = env.browser();
    for _ in 0..4 {
        let denied = guesser.login("clerk", "wrong-password-x");
        assert_eq!(denied.status, 401);
        assert!(denied.text().contains("/help/code/accounts.login_denied"));
    }
    assert_eq!(
        guesser.login("clerk", "ume-no-ki-3-gatsu").status,
        401,
        "locked: the right password is refused"
    );
    let users = cli_json(&env, &["user", "list"]);
    let clerk_entry = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == "clerk")
        .unwrap()
        .clone();
    assert_eq!(clerk_entry["locked"], true, "{clerk_entry}");
    // Unlocked by the office account that manages it, in the UI.
    let mut boss = ready(&env, "boss", &boss_first, "aoba-jimusho-2026");
    // (On another ID than the clerk's: each check of the old password spends one of its
    // login attempts, which the throttling below counts.)
    let token = boss.csrf();
    let short = boss.post(
        "/account/password",
        &[
            ("old_password", "aoba-jimusho-2026"),
            ("new_password", "tsuki9"),
            ("new_password_confirm", "tsuki9"),
            ("csrf_token", &token),
        ],
    );
    assert_eq!(short.status, 422);
    assert!(
        short
            .text()
            .contains("/help/code/accounts.password_too_short"),
        "{}",
        short.text()
    );
    let token = boss.csrf();
    let differ = boss.post(
        "/account/password",
        &[
            ("old_password", "aoba-jimusho-2026"),
            ("new_password", "tsuki-to-hoshi-9"),
            ("new_password_confirm", "tsuki-to-hoshi-8"),
            ("csrf_token", &token),
        ],
    );
    assert!(
        differ
            .text()
            .contains("/help/code/accounts.password_mismatch"),
        "{}",
        differ.text()
    );
    let token = boss.csrf();
    let unlock = boss.post("/accounts/clerk/unlock", &[("csrf_token", &token)]);
    assert_eq!(unlock.status, 303);
    let mut again = env.browser();
    assert_eq!(again.login("clerk", "ume-no-ki-3-gatsu").status, 303);
    // …and from the command line.
    for _ in 0..4 {
        assert_eq!(guesser.login("clerk", "wrong-password-y").status, 401);
    }
    cli(&env, &["user", "unlock", "--id", "clerk"]);
    assert_eq!(again.login("clerk", "ume-no-ki-3-gatsu").status, 303);

    // Throttling per ID: a burst of 20 attempts, then 429 (before any password is checked).
    let mut flood = env.browser();
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let page = flood.login("nobody-here", "whatever-pw");
        if page.status == 429 {
            assert!(page.text().contains("/help/code/accounts.login_throttled"));
        }
        statuses.push(page.status);
    }
    assert!(statuses.iter().take(20).all(|s| *s == 401), "{statuses:?}");
    assert!(statuses.iter().skip(20).all(|s| *s == 429), "{statuses:?}");

    // fail2ban can match every failure: one line each, with the address and the ID.
    let log = std::fs::read_to_string(env.dir.path().join("daemon-1.log")).unwrap();
    let failures = log
        .lines()
        .filter(|l| l.contains("login failed address=127.0.0.1 user=") && l.contains("reason="))
        .count();
    assert!(failures >= 8 + 30, "{failures} failure lines");
    for secret in [
        "kimura-jimu-2026",
        "sakura-no-hana-7",
        "ume-no-ki-3-gatsu",
        "wrong-password-x",
        clerk_first.as_str(),
        boss_first.as_str(),
    ] {
        assert!(!log.contains(secret), "a password is in the log");
    }
}

/// The session IDs on "my account" other than the one making the request.
fn other_sessions(page: &Page) -> Vec<String> {
    page.text()
        .split("<tr")
        .filter(|row| !row.contains("この画面"))
        .filter_map(|row| {
            let needle = "name=\"session_id\" value=\"";
            let start = row.find(needle)? + needle.len();
            row[start..].split('"').next().map(str::to_owned)
        })
        .collect()
}
