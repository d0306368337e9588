//! The backups page's view, built from the backup log: per site the last attempt, the newest
//! verified copy, the last drill and the newest error; the recent runs; the key and whether its
//! export was confirmed.
//!
//! Invariant: read-only over the store and the key file's confirmation mark; what "verified"
//! means is the backup module's (a copy counts once read back and checked).

use std::time::Duration;

use admin_ui::{BackupKeyView, BackupRunRow, BackupSiteView, BackupsView, ExplainedText};
use jiff::Timestamp;

use crate::backup::{Backups, DrillRecord, RunRecord};
use crate::timefmt::jst_minutes;

fn reason_text(r: &str) -> String {
    match r {
        "schedule" => "定期 (schedule)".into(),
        "accounts" => "アカウント・事業所の変更 (accounts changed)".into(),
        "manual" => "管理画面から (from this page)".into(),
        "command" => "コマンドから (command)".into(),
        other => other.into(),
    }
}

/// The page's view.
pub fn view(backups: &Backups, now: Timestamp) -> Result<BackupsView, crate::backup::BackupError> {
    let runs = backups.runs(500)?;
    let drills = backups.drills(500)?;
    let settings = backups.settings();
    let sites = backups
        .sites()
        .iter()
        .map(|site| site_view(site, &runs, &drills, settings.max_copy_age, now))
        .collect();
    let key = backups.key().map(|k| BackupKeyView {
        id: k.id(),
        confirmed: crate::backup::key_confirmed(settings, &k.id()),
    });
    let hours = settings.interval.as_secs_f64() / 3600.0;
    Ok(BackupsView {
        sites,
        runs: runs.iter().take(20).map(run_row).collect(),
        key,
        interval_hours: if hours.fract() == 0.0 {
            format!("{hours:.0}")
        } else {
            format!("{hours:.1}")
        },
    })
}

fn site_view(
    site: &crate::backup::Site,
    runs: &[RunRecord],
    drills: &[DrillRecord],
    max_copy_age: Duration,
    now: Timestamp,
) -> BackupSiteView {
    let name = site.name();
    // Runs are newest first; a run that failed before any site counts as an attempt at all.
    let attempt = runs
        .iter()
        .find(|r| r.error.is_some() || r.sites.iter().any(|s| s.site == name));
    let attempt_outcome = attempt.and_then(|r| r.sites.iter().find(|s| s.site == name));
    let verified = runs.iter().find_map(|r| {
        r.sites
            .iter()
            .find(|s| s.site == name && s.ok)
            .map(|s| (r, s))
    });
    let drill = drills.iter().find(|d| d.site == name);
    let attempt_ok = attempt_outcome.is_some_and(|s| s.ok);
    let (error, error_code) = attempt
        .filter(|_| !attempt_ok)
        .and_then(|r| {
            r.error
                .clone()
                .map(|e| (e, r.error_code.clone()))
                .or_else(|| {
                    attempt_outcome.and_then(|s| s.error.clone().map(|e| (e, s.error_code.clone())))
                })
        })
        .or_else(|| {
            drill
                .filter(|d| !d.ok)
                .and_then(|d| d.error.clone().map(|e| (e, d.error_code.clone())))
        })
        .unzip();
    let fresh = verified
        .is_some_and(|(r, _)| now.duration_since(r.started_at).unsigned_abs() <= max_copy_age);
    BackupSiteView {
        name: name.to_owned(),
        location: site.describe(),
        encrypted: site.settings.encrypt,
        last_attempt: attempt.map(|r| jst_minutes(r.started_at)),
        last_attempt_ok: attempt_ok,
        last_verified: verified.map(|(r, _)| format!("#{} {}", r.seq, jst_minutes(r.started_at))),
        size: verified.map(|(_, s)| crate::admin::dashboard::bytes_text(s.size)),
        last_drill: drill.map(|d| jst_minutes(d.at)),
        last_drill_ok: drill.is_some_and(|d| d.ok),
        error,
        error_help: error_code.flatten().map(|c| admin_ui::help::href(&c)),
        stale: !fresh || drill.is_some_and(|d| !d.ok),
    }
}

fn run_row(r: &RunRecord) -> BackupRunRow {
    let secs = r.finished_at.duration_since(r.started_at).as_secs_f64();
    let explained = |text: &Option<String>, code: &Option<String>| {
        text.clone().map(|text| ExplainedText {
            text,
            help: code.as_deref().map(admin_ui::help::href),
        })
    };
    let mut errors: Vec<ExplainedText> = explained(&r.error, &r.error_code).into_iter().collect();
    errors.extend(
        r.sites
            .iter()
            .filter_map(|s| explained(&s.error, &s.error_code)),
    );
    BackupRunRow {
        seq: r.seq,
        at: jst_minutes(r.started_at),
        reason: reason_text(&r.reason),
        size: crate::admin::dashboard::bytes_text(r.snapshot_size),
        seconds: format!("{secs:.1}"),
        sites_ok: r.sites.iter().filter(|s| s.ok).count(),
        sites_total: r.sites.len(),
        errors,
    }
}
