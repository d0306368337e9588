//! The Debian package, installed for real: `cargo deb` builds it, `debootstrap` makes a clean
//! Debian root, `dpkg -i` installs it there (user, folders, conffile, unit enabled), and in that
//! root `kaigo-relay check-config` passes on the installed configuration, `kaigo-relay demo
//! --setup-only` runs, and an upgrade takes a backup first and keeps the edited configuration.
//! `systemd-analyze verify` finds every program the unit runs, and `systemd-analyze security
//! --offline=true` scores the unit (printed; at most 2.0).
//!
//! Needs root, debootstrap and cargo-deb (`.ci/run` installs both); the Debian packages come
//! from the mirror in the machine's apt sources.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step stops the test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SUITE: &str = "bookworm";

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A command run inside the Debian root.
fn chroot(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("chroot");
    cmd.arg(root).args(args).env("LANG", "C.UTF-8");
    cmd
}

/// `kaigo-relay ARGS… --config /etc/kaigo-relay/kaigo-relay.toml` in the root, as the service
/// user (as the unit runs it).
fn as_service(root: &Path, args: &[&str]) -> Output {
    let mut all = vec!["runuser", "-u", "kaigo-relay", "--", "kaigo-relay"];
    all.extend_from_slice(args);
    all.extend(["--config", "/etc/kaigo-relay/kaigo-relay.toml"]);
    run(&mut chroot(root, &all))
}

/// The mirror of the machine's apt sources (deb822 or one-line form).
fn mirror() -> String {
    let mut texts = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.filter_map(Result::ok) {
            texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    for t in &texts {
        for line in t.lines() {
            let line = line.trim();
            if let Some(uri) = line.strip_prefix("URIs:")
                && let Some(u) = uri.split_whitespace().find(|u| u.contains("/debian"))
            {
                return u.to_owned();
            }
            if line.starts_with("deb ")
                && let Some(u) = line.split_whitespace().find(|u| u.ends_with("/debian"))
            {
                return u.to_owned();
            }
        }
    }
    "http://deb.debian.org/debian".to_owned()
}

/// Unmounts a mount point when dropped (before the temporary root is removed).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn build_deb(out_dir: &Path) -> PathBuf {
    let bins = tests::bins();
    // The test suite's own (debug) build of the binary: the package's contents and scripts are
    // what is tested here; `cargo deb -p kaigo-relay` makes the release package the same way.
    assert!(bins.relay.exists());
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let target_dir = bins
        .relay
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_owned();
    run(Command::new(cargo)
        .args([
            "deb",
            "-p",
            "kaigo-relay",
            "--profile",
            "dev",
            "--no-build",
            "-o",
        ])
        .arg(out_dir)
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    std::fs::read_dir(out_dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb")
}

#[test]
fn the_deb_installs_into_a_clean_debian_root_and_upgrades_with_a_backup() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test installs into a debootstrap root and needs root (CI runs as root)"
    );
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let deb = build_deb(dir.path());
    let root = dir.path().join("root");
    run(Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=systemd,systemd-sysv,procps",
            SUITE,
        ])
        .arg(&root)
        .arg(mirror()));
    std::fs::copy(&deb, root.join("tmp/kaigo-relay.deb")).unwrap();
    // A running Debian has /proc (systemd-tmpfiles needs it); unmounted when the test ends.
    run(Command::new("mount")
        .args(["-t", "proc", "proc"])
        .arg(root.join("proc")));
    let _proc = Unmount(root.join("proc"));

    // Install: the postinst says where to log in and where the one-time password will be.
    let install = text(&run(&mut chroot(
        &root,
        &["dpkg", "-i", "/tmp/kaigo-relay.deb"],
    )));
    assert!(
        install.contains("管理画面 (admin UI):  https://"),
        "{install}"
    );
    assert!(
        install.contains("/var/lib/kaigo-relay/initial-admin-password.txt"),
        "{install}"
    );
    let user = text(&run(&mut chroot(
        &root,
        &["getent", "passwd", "kaigo-relay"],
    )));
    assert!(user.contains(":/var/lib/kaigo-relay:"), "{user}");
    let group = text(&run(&mut chroot(&root, &["getent", "group", "kaigo-drop"])));
    assert!(
        group.starts_with("kaigo-drop:"),
        "the PCs' Samba group: {group}"
    );
    assert!(
        root.join("usr/share/doc/kaigo-relay/samba/kaigo-relay-share.conf")
            .is_file(),
        "the Samba share snippet is installed"
    );
    for (path, want) in [
        ("/srv/kaigo-relay/drop", "kaigo-relay 1770"),
        ("/var/lib/kaigo-relay", "kaigo-relay 700"),
        ("/var/backups/kaigo-relay", "kaigo-relay 700"),
        ("/etc/kaigo-relay/kaigo-relay.toml", "root 640"),
    ] {
        let got = text(&run(&mut chroot(&root, &["stat", "-c", "%U %a", path])));
        assert_eq!(got.trim(), want, "{path}");
    }
    // (The link points inside the root, so it is read, not followed.)
    let link = std::fs::read_link(
        root.join("etc/systemd/system/multi-user.target.wants/kaigo-relay.service"),
    )
    .expect("the unit is enabled");
    assert!(
        link.ends_with("systemd/system/kaigo-relay.service"),
        "{link:?}"
    );
    let conffiles = text(&run(&mut chroot(
        &root,
        &[
            "dpkg-query",
            "--showformat=${Conffiles}",
            "--show",
            "kaigo-relay",
        ],
    )));
    assert!(
        conffiles.contains("/etc/kaigo-relay/kaigo-relay.toml"),
        "{conffiles}"
    );

    // The installed configuration passes the unit's ExecStartPre check, as the service user.
    let check = text(&as_service(&root, &["check-config"]));
    assert!(check.contains("config OK"), "{check}");
    let demo = text(&run(&mut chroot(
        &root,
        &["kaigo-relay", "demo", "--setup-only", "--dir", "/tmp/demo"],
    )));
    assert!(root.join("tmp/demo").is_dir(), "{demo}");

    // The unit as systemd reads it in the installed root: every program its Exec lines run
    // exists there (a minimal Debian has no /bin/kill unless the package pulls in procps).
    let verify = text(&run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("kaigo-relay.service")));
    assert!(verify.trim().is_empty(), "systemd-analyze verify: {verify}");

    // The unit's exposure, as systemd scores it.
    let security = text(&run(Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(format!("--root={}", root.display()))
        .arg("kaigo-relay.service")));
    let score: f64 = security
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for kaigo-relay.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in\n{security}"));
    println!("systemd-analyze security --offline=true: exposure {score}");
    assert!(score <= 2.0, "exposure {score}\n{security}");

    // A store exists once the service has run: make one with a first backup, as the service
    // user, then upgrade (the same package again is an upgrade to dpkg).
    as_service(&root, &["backup", "run"]);
    let copies = root.join("var/backups/kaigo-relay/copies");
    assert!(copies.join("0000000001/manifest.json").exists());
    let config = root.join("etc/kaigo-relay/kaigo-relay.toml");
    let edited = format!(
        "{}\n# edited by the office\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, &edited).unwrap();
    let upgrade = text(&run(&mut chroot(
        &root,
        &["dpkg", "-i", "--force-confold", "/tmp/kaigo-relay.deb"],
    )));
    assert!(
        upgrade.contains("backing up before the upgrade"),
        "{upgrade}"
    );
    // An upgrade keeps the accounts: it says so, not where the first one-time password is.
    assert!(
        upgrade.contains("から更新しました (kaigo-relay was updated from 0.1.0"),
        "{upgrade}"
    );
    assert!(!upgrade.contains("initial-admin-password.txt"), "{upgrade}");
    assert!(
        copies.join("0000000002/manifest.json").exists(),
        "the upgrade took a backup first\n{upgrade}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        edited,
        "the upgrade keeps the edited configuration"
    );
}
