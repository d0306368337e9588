//! The `federation-sim` binary: exit code 64 for a bad config, the listening line on stdout,
//! `listen.json`, and a graceful exit on SIGTERM.

// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_federation-sim"))
}

#[test]
fn a_bad_config_exits_with_64_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.toml");
    std::fs::write(&path, "state_dir = \"s\"\nunknown_key = 1\n").unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown_key"), "{stderr}");

    std::fs::write(&path, "state_dir = \"s\"\ncontrol_listen = \"0.0.0.0:0\"\n").unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));

    let out = bin()
        .args(["serve", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.toml");
    std::fs::write(
        &path,
        "state_dir = \"state\"\ngateway_listen = \"127.0.0.1:0\"\ncontrol_listen = \"127.0.0.1:0\"\n\
         [[offices]]\noffice_number = \"1379999996\"\nuser_id = \"KJ00000001\"\npassword = \"p\"\n",
    )
    .unwrap();
    let mut child = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("federation-sim listening: gateway=https://127.0.0.1:"),
        "{line}"
    );
    assert!(line.contains(" control=http://127.0.0.1:"), "{line}");
    let state = dir.path().join("state");
    let listen: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("listen.json")).unwrap()).unwrap();
    assert!(line.contains(listen["gateway_url"].as_str().unwrap()));
    for file in [
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "clients/1379999996.pem",
        "sim.redb",
    ] {
        assert!(state.join(file).exists(), "{file}");
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request over a raw socket (the control API is plain HTTP).
fn http(addr: &str, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn start(config: &std::path::Path) -> (std::process::Child, String) {
    let mut child = bin()
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let control = line
        .trim()
        .split(" control=http://")
        .nth(1)
        .unwrap()
        .to_owned();
    (child, control)
}

#[test]
fn the_clock_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim.toml");
    std::fs::write(
        &path,
        "state_dir = \"state\"\ngateway_listen = \"127.0.0.1:0\"\ncontrol_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let (mut child, control) = start(&path);
    let resp = http(
        &control,
        "POST",
        "/sim/clock",
        r#"{"now":"2026-12-03T10:00:00+09:00"}"#,
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (mut child, control) = start(&path);
    let resp = http(&control, "GET", "/sim/clock", "");
    assert!(resp.contains("\"virtual\":true"), "{resp}");
    assert!(resp.contains("\"now\":\"2026-12-03T10:0"), "{resp}");
    child.kill().unwrap();
    child.wait().unwrap();
}
