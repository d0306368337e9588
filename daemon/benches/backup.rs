//! Backup of a large store: fills a store with synthetic notices to about `--gib` GiB (default 1;
//! or `--notices N`), then measures on the same disk:
//! - `cp` of the store file (and `cp` followed by `sync` of the copy: what a durable copy costs);
//! - the snapshot (one read transaction copied into a fresh redb file, hashed) and its
//!   verification (reopen, `check_integrity()`, re-hash), separately;
//! - a whole backup run to one directory site (snapshot + verify + copy + fsync + read-back),
//!   and its ratio to `cp` (the target: within 2×);
//! - per-site upload times for a plain directory site, an encrypted directory site, and, with
//!   `--s3 http://127.0.0.1:PORT` (a moto server with bucket `bench`), an encrypted S3 site.
//!
//! `cargo bench -p kaigo-relay --bench backup -- [--gib G | --notices N] [--dir D] [--s3 URL]
//! [--store PATH] [--cold]` (`--store`: fill that file once and reuse it on later runs).
//!
//! Page cache: by default nothing is dropped between steps, so `cp` and the backup read a warm
//! store alike. With `--cold` (root only) the page cache is dropped before `cp` and before the
//! whole local backup, so that both read the store from the disk, as on an appliance whose
//! store is not in memory.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failed step stops it

use std::path::Path;
use std::time::{Duration, Instant};

use kaigo_relay::backup::Backups;
use kaigo_relay::bench_support::NoticeFill;
use kaigo_relay::claim::Month;
use kaigo_relay::config::{BackupSettings, Retention, SiteLocation, SiteSettings};
use kaigo_relay::store::Store;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Writes dirty pages out and drops the page cache (needs root).
fn drop_caches() {
    let _ = timed(&mut std::process::Command::new("sync"));
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .expect("--cold drops the page cache, which needs root");
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn timed(cmd: &mut std::process::Command) -> Duration {
    let t = Instant::now();
    let status = cmd.status().expect("run command");
    assert!(status.success(), "{cmd:?} failed");
    t.elapsed()
}

fn site(name: &str, location: SiteLocation, encrypt: bool) -> SiteSettings {
    SiteSettings {
        name: name.into(),
        location,
        encrypt,
        retention: Retention {
            hourly: 0,
            daily: 0,
            weekly: 0,
            monthly: 0,
        },
    }
}

fn settings(dir: &Path, sites: Vec<SiteSettings>) -> BackupSettings {
    BackupSettings {
        interval: Duration::from_secs(3600),
        after_account_change: false,
        drill_interval: Duration::ZERO,
        max_copy_age: Duration::from_secs(3600),
        max_drill_age: Duration::from_secs(3600),
        key_file: dir.join("backup.key"),
        work_dir: dir.join("backup-work"),
        sites,
    }
}

fn main() -> anyhow::Result<()> {
    kaigo_relay::install_crypto_provider();
    let cold = std::env::args().any(|a| a == "--cold");
    let gib: f64 = arg("--gib").map_or(Ok(1.0), |s| s.parse())?;
    let tmp = tempfile::tempdir_in(arg("--dir").unwrap_or_else(|| "/tmp".into()))?;
    let root = tmp.path();
    let kept = arg("--store").map(std::path::PathBuf::from);
    let path = kept.clone().unwrap_or_else(|| root.join("store.redb"));
    let fresh = !path.exists();

    // One fill of unique notices (about 2.8 KiB of store each: 380 000 make about 1 GiB).
    let store = Store::open(&path)?;
    let t = Instant::now();
    let total = arg("--notices").map_or(Ok((gib * 380_000.0) as u64), |s| s.parse())?;
    let notices = if fresh {
        let fill = NoticeFill::synthetic(total, 200, "200001".parse::<Month>()?);
        fill.fill(&store, |n, _| {
            if n % 100_000 < 500 {
                eprintln!("  filled {n} notices");
            }
        })?
        .notices
    } else {
        eprintln!("  reusing {}", path.display());
        store.notice_count()?
    };
    let size = std::fs::metadata(&path)?.len();
    eprintln!("  fill took {:.0} s", secs(t.elapsed()));

    // cp of the same file on the same disk (warm cache, like the backup's read).
    let cp_path = root.join("cp-copy.redb");
    if cold {
        drop_caches();
    } else {
        let _ = timed(
            std::process::Command::new("cat")
                .arg(&path)
                .stdout(std::process::Stdio::null()),
        );
    }
    let cp = timed(std::process::Command::new("cp").arg(&path).arg(&cp_path));
    let sync = timed(std::process::Command::new("sync").arg(&cp_path));
    std::fs::remove_file(&cp_path)?;

    // Snapshot and verification, separately.
    let snap_path = root.join("snapshot.redb");
    let t = Instant::now();
    let digest = store.snapshot_to(&snap_path)?;
    let snapshot_and_verify = t.elapsed();
    let t = Instant::now();
    let again = kaigo_relay::store::verify_snapshot(&snap_path)?;
    let verify = t.elapsed();
    assert_eq!(again, digest);
    let snap_size = std::fs::metadata(&snap_path)?.len();
    std::fs::remove_file(&snap_path)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // The whole local backup: one plain directory site.
    let local = settings(
        root,
        vec![site(
            "local",
            SiteLocation::Directory {
                path: root.join("site-local"),
            },
            false,
        )],
    );
    let backups = Backups::new(store.clone(), local)?;
    if cold {
        drop_caches();
    }
    let t = Instant::now();
    let run = rt.block_on(backups.run("bench"))?;
    let whole_local = t.elapsed();
    assert!(run.all_ok(), "{run:?}");
    std::fs::remove_dir_all(root.join("site-local"))?;

    // Per-site upload times: plain directory, encrypted directory, encrypted S3.
    let mut sites = vec![
        site(
            "dir-plain",
            SiteLocation::Directory {
                path: root.join("site-plain"),
            },
            false,
        ),
        site(
            "dir-encrypted",
            SiteLocation::Directory {
                path: root.join("site-enc"),
            },
            true,
        ),
    ];
    if let Some(endpoint) = arg("--s3") {
        sites.push(site(
            "s3-encrypted",
            SiteLocation::S3 {
                endpoint,
                bucket: "bench".into(),
                prefix: "kaigo".into(),
                region: "us-east-1".into(),
                path_style: true,
                access_key_id: "bench".into(),
                secret_access_key: kaigo_relay::config::Secret::new("bench".into()),
            },
            true,
        ));
    }
    let many = settings(root, sites);
    let backups = Backups::new(store.clone(), many)?;
    let t = Instant::now();
    let run2 = rt.block_on(backups.run("bench"))?;
    let whole_many = t.elapsed();
    assert!(run2.all_ok(), "{run2:?}");
    // And a restore drill of each (download, decrypt, verify).
    let mut drills = Vec::new();
    for s in backups.sites() {
        let d = rt.block_on(backups.drill_site(s))?;
        assert!(d.ok, "{d:?}");
        drills.push((s.name().to_owned(), d.ms));
    }

    let mib = size as f64 / 1048576.0;
    println!(
        "backup benchmark ({})",
        if cold {
            "cold: page cache dropped before cp and before the whole local backup"
        } else {
            "warm page cache"
        }
    );
    println!(
        "  store: {mib:.0} MiB, {notices} notices, {} rows; snapshot file {:.0} MiB",
        digest.rows(),
        snap_size as f64 / 1048576.0
    );
    println!(
        "  cp: {:.2} s ({:.0} MiB/s); cp + sync: {:.2} s",
        secs(cp),
        mib / secs(cp),
        secs(cp + sync)
    );
    println!(
        "  snapshot + verify: {:.2} s (verify alone: reopen, check_integrity, re-hash {:.2} s)",
        secs(snapshot_and_verify),
        secs(verify)
    );
    println!(
        "  whole local backup (snapshot, verify, copy, fsync, read-back): {:.2} s = {:.2}× cp, {:.2}× cp + sync (target ≤ 2× cp)",
        secs(whole_local),
        secs(whole_local) / secs(cp),
        secs(whole_local) / secs(cp + sync)
    );
    println!(
        "    of which snapshot + verify {:.2} s, upload + read-back {:.2} s",
        run.snapshot_ms as f64 / 1000.0,
        run.sites[0].upload_ms as f64 / 1000.0
    );
    println!(
        "  run to {} sites at once: {:.2} s (snapshot {:.2} s, encryption {:.2} s)",
        run2.sites.len(),
        secs(whole_many),
        run2.snapshot_ms as f64 / 1000.0,
        run2.encrypt_ms as f64 / 1000.0
    );
    for s in &run2.sites {
        println!(
            "    site {}: upload + read-back {:.2} s ({:.0} MiB)",
            s.site,
            s.upload_ms as f64 / 1000.0,
            s.size as f64 / 1048576.0
        );
    }
    for (name, ms) in drills {
        println!(
            "    restore drill {name} (download, decrypt, open, check, hash): {:.2} s",
            ms as f64 / 1000.0
        );
    }
    Ok(())
}
