//! Logs to the journal with structured fields: the daemon runs as under systemd (its stderr
//! named by `JOURNAL_STREAM`), in a private mount namespace whose `/run/systemd/journal/socket`
//! is the test's datagram socket, so that every event it logs arrives here in journald's native
//! protocol. A claim is relayed, and its lines must carry the claim's submission, file and
//! office as journal fields, with the priority of their level — and nothing goes to stderr.
//!
//! Needs root (a mount namespace), as CI and the development machines run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use tests::{CARE_OFFICE, Env, sha256_hex};

const T: Duration = Duration::from_secs(60);

/// One journal entry: its fields.
type Entry = BTreeMap<String, String>;

/// Parses one datagram of journald's native protocol: `NAME=value\n`, or `NAME\n`, a 64-bit
/// little-endian length, the value and `\n` for a value that holds a newline.
fn parse(mut d: &[u8]) -> Entry {
    let mut e = Entry::new();
    while !d.is_empty() {
        let nl = d.iter().position(|b| *b == b'\n').expect("a field ends");
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            e.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            d = &d[nl + 1..];
        } else {
            let name = String::from_utf8_lossy(line).into_owned();
            let rest = &d[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            let value = &rest[8..8 + len];
            assert_eq!(rest[8 + len], b'\n', "a binary field ends with a newline");
            e.insert(name, String::from_utf8_lossy(value).into_owned());
            d = &rest[8 + len + 1..];
        }
    }
    e
}

/// An entry's MESSAGE ("" when it has none).
fn msg(e: &Entry) -> &str {
    e.get("MESSAGE").map_or("", String::as_str)
}

#[test]
fn under_systemd_each_event_reaches_the_journal_with_the_claims_fields() {
    let mut env = Env::new();
    let dir = env.dir.path().join("journal");
    std::fs::create_dir_all(&dir).unwrap();
    let socket = UnixDatagram::bind(dir.join("socket")).unwrap();
    // Read all the time, as journald does: a full socket buffer would hold the daemon's logging.
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Entry>::new()));
    {
        let received = received.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n) = socket.recv(&mut buf) {
                // An empty datagram carries a large entry as a memfd (not read here).
                if n > 0 {
                    received.lock().unwrap().push(parse(&buf[..n]));
                }
            }
        });
    }
    // As systemd does: JOURNAL_STREAM names stderr's device and inode.
    let script = r#"mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && mount --bind "$0" /run/systemd/journal && JOURNAL_STREAM=$(stat -L -c '%d:%i' /proc/self/fd/2) && export JOURNAL_STREAM && exec "$@""#;
    let wrapper: Vec<&OsStr> = vec![
        OsStr::new("unshare"),
        OsStr::new("--mount"),
        OsStr::new("--propagation"),
        OsStr::new("private"),
        OsStr::new("sh"),
        OsStr::new("-c"),
        OsStr::new(script),
        dir.as_os_str(),
    ];
    env.start_daemon_via(&wrapper, &[("RUST_LOG", "info")]);

    let bytes = env.claim(&["0000600001"], 61);
    let sha = sha256_hex(&bytes);
    // The admin URL file and the status socket work as usual; the log is not on stderr.
    env.admin_url();
    env.drop_atomic("KD000001.CSV", &bytes);
    let status = env.wait_state(&sha, "accepted", T);
    let id = status["id"].as_str().unwrap().to_owned();

    let start = Instant::now();
    while start.elapsed() < T
        && !received
            .lock()
            .unwrap()
            .iter()
            .any(|e| msg(e).starts_with("accepted"))
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let entries: Vec<Entry> = received.lock().unwrap().clone();
    let messages: Vec<&str> = entries.iter().map(msg).collect();
    for e in &entries {
        assert_eq!(
            e.get("SYSLOG_IDENTIFIER").map(String::as_str),
            Some("kaigo-relay"),
            "{e:?}"
        );
        assert!(
            e.contains_key("PRIORITY") && e.contains_key("TARGET"),
            "{e:?}"
        );
    }
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("kaigo-relay running")),
        "{messages:?}"
    );

    // Intake's line names the submission and the office as fields of their own.
    let taken = entries
        .iter()
        .find(|e| msg(e) == "file taken and queued")
        .unwrap_or_else(|| panic!("intake's line: {messages:?}"));
    assert_eq!(taken["SUBMISSION"], id, "{taken:?}");
    assert!(taken["OFFICE"].contains(CARE_OFFICE), "{taken:?}");
    assert_eq!(
        taken["PRIORITY"], "5",
        "INFO is journald's notice: {taken:?}"
    );

    // The relay's line carries the claim's span: submission, file and office.
    let accepted = entries
        .iter()
        .find(|e| msg(e).starts_with("accepted"))
        .unwrap_or_else(|| panic!("the relay's line: {messages:?}"));
    let field = |k: &str| accepted.get(k).map(String::as_str);
    assert_eq!(field("SPAN_NAME"), Some("claim"), "{accepted:?}");
    assert_eq!(field("SUBMISSION"), Some(id.as_str()), "{accepted:?}");
    assert_eq!(field("FILE"), Some("KD000001.CSV"), "{accepted:?}");
    assert_eq!(field("OFFICE"), Some(CARE_OFFICE), "{accepted:?}");

    let status = env.daemon().terminate();
    assert!(status.success());
    let stderr = std::fs::read_to_string(env.dir.path().join("daemon-1.log")).unwrap();
    assert!(
        !stderr.contains("kaigo-relay running") && !stderr.contains("accepted"),
        "under the journal nothing is written twice to stderr:\n{stderr}"
    );
}
