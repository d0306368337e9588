//! The drop folder exported with a real Samba server on loopback, configured with the share
//! snippet the package ships (`packaging/samba/kaigo-relay-share.conf`), and written into with
//! `smbclient` as an office PC's billing software does: slowly, in three saves over one
//! session, each longer than the last, with pauses long enough for the daemon to see a stable half-written file. The claim
//! must be relayed exactly once, and only whole. Then the share's limits: a PC reads its result
//! but cannot add to, rename in or delete from `送信済/`, follows no link out of the folder,
//! and nobody gets in without an account.
//!
//! Needs root (smbd binds its port and switches to the PC's account) and Debian's `samba` and
//! `smbclient` packages, which `.ci/run` installs; without them the test fails and says so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tests::{Env, Proc, sha256_hex, status_json};

const T: Duration = Duration::from_secs(60);
/// The office PC's account in the test: an account every Debian system has, in the group
/// `nogroup` (standing for the package's `kaigo-drop`).
const PC_USER: &str = "nobody";
const PC_GROUP: &str = "nogroup";
const PC_PASSWORD: &str = "jimu-pc-2026";
const SHARE: &str = "kaigo-drop";

/// A private smbd serving the shipped share snippet; stopped when dropped.
struct Smbd {
    proc: Proc,
    port: u16,
    conf: PathBuf,
}

impl Drop for Smbd {
    fn drop(&mut self) {
        let _ = self
            .proc
            .signal_and_wait(rustix::process::Signal::TERM, Duration::from_secs(10));
    }
}

/// The shipped snippet with the test's folder, PC group and daemon group in place of the
/// package's `/srv/kaigo-relay/drop`, `kaigo-drop` and `kaigo-relay`.
fn share_section(drop_dir: &Path, daemon_group: &str) -> String {
    let snippet = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/samba/kaigo-relay-share.conf"),
    )
    .expect("the shipped Samba snippet");
    let mut out = String::new();
    let mut replaced = 0;
    for line in snippet.lines() {
        let trimmed = line.trim_start();
        let line = if trimmed.starts_with("path = ") {
            replaced += 1;
            format!("   path = {}", drop_dir.display())
        } else if trimmed.starts_with("valid users = @kaigo-drop") {
            replaced += 1;
            format!("   valid users = @{PC_GROUP}")
        } else if trimmed.starts_with("force group = kaigo-relay") {
            replaced += 1;
            format!("   force group = {daemon_group}")
        } else {
            line.to_owned()
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert_eq!(
        replaced, 3,
        "the snippet names its path and both groups once:\n{snippet}"
    );
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_smbd(env: &Env) -> Smbd {
    let dir = env.dir.path().join("samba");
    for sub in ["private", "lock", "state", "cache", "run", "ncalrpc"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let port = free_port();
    let d = dir.display();
    // The [global] the snippet recommends, with every state file in the test's folder.
    let conf = format!(
        "[global]\n\
         server role = standalone server\n\
         server min protocol = SMB2_10\n\
         map to guest = never\n\
         restrict anonymous = 2\n\
         load printers = no\n\
         printcap name = /dev/null\n\
         disable spoolss = yes\n\
         disable netbios = yes\n\
         interfaces = 127.0.0.1\n\
         bind interfaces only = yes\n\
         smb ports = {port}\n\
         passdb backend = tdbsam:{d}/private/passdb.tdb\n\
         private dir = {d}/private\n\
         lock directory = {d}/lock\n\
         state directory = {d}/state\n\
         cache directory = {d}/cache\n\
         pid directory = {d}/run\n\
         ncalrpc dir = {d}/ncalrpc\n\
         log level = 1\n\n{}",
        share_section(&env.drop_dir, "root")
    );
    let conf_path = dir.join("smb.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let check = Command::new("testparm")
        .args(["-s", "--suppress-prompt"])
        .arg(&conf_path)
        .output()
        .expect("run testparm (apt-get install samba)");
    assert!(
        check.status.success(),
        "testparm refuses the config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        !stderr.contains("Unknown parameter") && !stderr.contains("Ignoring unknown"),
        "every parameter of the snippet is one Samba knows: {stderr}"
    );

    // The PC's Samba account.
    let mut pw = Command::new("smbpasswd")
        .args(["-c"])
        .arg(&conf_path)
        .args(["-s", "-a", PC_USER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run smbpasswd (apt-get install samba)");
    pw.stdin
        .take()
        .unwrap()
        .write_all(format!("{PC_PASSWORD}\n{PC_PASSWORD}\n").as_bytes())
        .unwrap();
    let out = pw.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "smbpasswd: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut cmd = Command::new("smbd");
    cmd.args(["--foreground", "--no-process-group", "--debug-stdout", "-s"])
        .arg(&conf_path);
    // A group of its own: at its stop smbd signals its whole process group, which must not be
    // the test's.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let proc = Proc::spawn("smbd", cmd, dir.join("smbd.log"));
    let up = tests::wait_until(Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(
        up.is_some(),
        "smbd did not listen (it needs root)\n{}",
        proc.log_text()
    );
    Smbd {
        proc,
        port,
        conf: conf_path,
    }
}

/// One smbclient session running `commands`; (succeeded, everything it printed).
fn smbclient(smbd: &Smbd, user: Option<&str>, commands: &str, cwd: &Path) -> (bool, String) {
    let mut cmd = Command::new("smbclient");
    cmd.arg(format!("//127.0.0.1/{SHARE}"))
        .args(["-p", &smbd.port.to_string(), "-m", "SMB3", "-s"])
        .arg(&smbd.conf)
        .current_dir(cwd);
    match user {
        Some(u) => cmd.args(["-U", u]),
        None => cmd.arg("-N"),
    };
    // No terminal and no stdin: a refused login must fail, not wait for a typed password.
    let out = cmd
        .args(["-c", commands])
        .stdin(Stdio::null())
        .output()
        .expect("run smbclient (apt-get install smbclient)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("NT_STATUS_"), text)
}

/// Byte offsets to cut a claim at: just past a record's CRLF (the part on the server is a
/// well-formed run of whole records with no end record) and in the middle of a record.
fn cuts(bytes: &[u8]) -> Vec<usize> {
    let crlf: Vec<usize> = bytes
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == b"\r\n")
        .map(|(i, _)| i + 2)
        .collect();
    assert!(crlf.len() >= 4, "a claim of several records");
    let boundary = crlf[crlf.len() / 2];
    let middle = (crlf[crlf.len() - 2] + crlf[crlf.len() - 3]) / 2;
    let mut out = vec![boundary, middle];
    out.sort_unstable();
    out.dedup();
    out
}

#[test]
fn a_claim_written_slowly_through_the_samba_share_is_relayed_once_and_the_share_allows_nothing_else()
 {
    let mut env = Env::new();
    // smbd acts as the PC's account with the daemon's group (root here): that group needs to
    // reach the drop folder, which the package's tmpfiles make 1770.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(&env.drop_dir, std::fs::Permissions::from_mode(0o1770)).unwrap();
    let smbd = start_smbd(&env);
    // The daemon runs with the unit's UMask=077: the modes it gives its folders and notes must
    // not depend on the umask.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    env.start_daemon();
    rustix::process::umask(old);
    env.admin_url();

    let user = format!("{PC_USER}%{PC_PASSWORD}");
    let pc = env.dir.path().join("pc");
    std::fs::create_dir_all(&pc).unwrap();
    let name = "KD000001.CSV";
    let claim = env.claim(&["0000500001", "0000500002", "0000500003"], 51);
    let sha = sha256_hex(&claim);

    // One session, as billing software that saves as it goes: each save writes the file again
    // with what it has so far (smbclient's `reput` cannot be used: 4.17 writes the rest at the
    // start of the file), with pauses far longer than the daemon's two stability checks
    // (2 × 200 ms), so that it sees a stable, half-written file each time.
    let mut session = Command::new("smbclient")
        .arg(format!("//127.0.0.1/{SHARE}"))
        .args(["-p", &smbd.port.to_string(), "-m", "SMB3", "-s"])
        .arg(&smbd.conf)
        .args(["-U", &user])
        .current_dir(&pc)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run smbclient");
    let mut stdin = session.stdin.take().unwrap();
    let cuts = cuts(&claim);
    let mut written = 0;
    for (i, &cut) in cuts.iter().chain([&claim.len()]).enumerate() {
        let mut local = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(pc.join(name))
            .unwrap();
        local.write_all(&claim[written..cut]).unwrap();
        drop(local);
        written = cut;
        writeln!(stdin, "put {name} {name}").unwrap();
        stdin.flush().unwrap();
        if cut == claim.len() {
            break;
        }
        // The part is on the server, unchanged for many stability checks…
        let on_server = env.drop_dir.join(name);
        let arrived = tests::wait_until(Duration::from_secs(10), || {
            let len = std::fs::metadata(&on_server).ok()?.len();
            (len == cut as u64).then_some(())
        });
        assert!(
            arrived.is_some(),
            "part {i} ({cut} bytes) reached the share\n{}",
            smbd.proc.log_text()
        );
        std::thread::sleep(Duration::from_millis(1500));
        // …and still the daemon has not taken it.
        assert!(
            on_server.exists(),
            "a half-written file stays in the drop folder\n{}",
            env.logs()
        );
        assert!(
            status_json(&env.daemon_config).unwrap().is_empty(),
            "nothing recorded from a half-written file\n{}",
            env.logs()
        );
    }
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    let out = session.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !said.contains("NT_STATUS_"),
        "the slow session: {said}"
    );

    env.wait_state(&sha, "accepted", T);
    let received = env.received();
    assert_eq!(received.len(), 1, "relayed once: {received:?}");
    assert_eq!(received[0]["sha256"], sha.as_str(), "and whole");
    let recorded = status_json(&env.daemon_config).unwrap();
    assert_eq!(recorded.len(), 1, "one submission: {recorded:?}");

    // What the folder holds: the file as the PC's account made it, with the daemon's group.
    let sent = env.drop_dir.join("送信済");
    let archived = std::fs::metadata(sent.join(name)).unwrap();
    let pc_uid = Command::new("id").args(["-u", PC_USER]).output().unwrap();
    let pc_uid: u32 = String::from_utf8_lossy(&pc_uid.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        archived.uid(),
        pc_uid,
        "made as the PC's account, not as root"
    );
    assert_eq!(archived.gid(), 0, "with the daemon's group (force group)");
    assert_eq!(archived.mode() & 0o777, 0o640, "create mask");
    for dir in ["送信済", "エラー"] {
        let mode = std::fs::metadata(env.drop_dir.join(dir)).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o750, "{dir}/ under umask 077");
    }
    let note = format!("{name}.結果.txt");
    let note_mode = std::fs::metadata(sent.join(&note)).unwrap().mode() & 0o777;
    assert_eq!(note_mode, 0o640, "the result note under umask 077");

    // The PC reads its result through the share.
    let (ok, said) = smbclient(
        &smbd,
        Some(&user),
        &format!("get 送信済/{note} result.txt"),
        &pc,
    );
    assert!(ok, "the result note is readable: {said}");
    let result = std::fs::read_to_string(pc.join("result.txt")).unwrap();
    assert!(result.contains(name), "{result}");

    // …and can change nothing in the results folders.
    std::fs::write(pc.join("other.CSV"), &claim).unwrap();
    for (what, cmd) in [
        (
            "add a file to 送信済/",
            "put other.CSV 送信済/other.CSV".to_owned(),
        ),
        ("delete from 送信済/", format!("del 送信済/{name}")),
        (
            "rename in 送信済/",
            format!("rename 送信済/{name} 送信済/renamed.CSV"),
        ),
        ("overwrite a note", format!("put other.CSV 送信済/{note}")),
        ("make a folder in 送信済/", "mkdir 送信済/sub".to_owned()),
        (
            "add a file to エラー/",
            "put other.CSV エラー/other.CSV".to_owned(),
        ),
    ] {
        let (ok, said) = smbclient(&smbd, Some(&user), &cmd, &pc);
        assert!(!ok, "a PC cannot {what}: {said}");
        assert!(said.contains("NT_STATUS_ACCESS_DENIED"), "{what}: {said}");
    }
    assert!(sent.join(name).exists() && !sent.join("other.CSV").exists());
    assert_eq!(
        std::fs::read_to_string(sent.join(&note)).unwrap(),
        std::fs::read_to_string(pc.join("result.txt")).unwrap(),
        "the note is unchanged"
    );

    // No link leads out of the folder.
    std::os::unix::fs::symlink("/etc", env.drop_dir.join("etc-link")).unwrap();
    let (ok, said) = smbclient(&smbd, Some(&user), "get etc-link/hostname h.txt", &pc);
    assert!(
        !ok && !pc.join("h.txt").exists(),
        "a link is not followed: {said}"
    );
    std::fs::remove_file(env.drop_dir.join("etc-link")).unwrap();

    // Nobody gets in without the account.
    let (ok, said) = smbclient(&smbd, None, "ls", &pc);
    assert!(!ok, "no guest access: {said}");
    let (ok, said) = smbclient(&smbd, Some(&format!("{PC_USER}%wrong")), "ls", &pc);
    assert!(
        !ok && said.contains("NT_STATUS_LOGON_FAILURE"),
        "a wrong password is refused: {said}"
    );

    // Nothing else reached the federation, and the daemon took nothing it should not have.
    // (Three rescans of the folder after the last smbclient session.)
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(env.received().len(), 1, "{:?}", env.received());
    let status = env.daemon().terminate();
    assert!(status.success(), "{}", env.logs());
    drop(smbd);
}
