//! Failpoints: test-only crash points at the commit boundaries of intake, the relay and the
//! notice mirror. Inert unless the environment variable `KAIGO_RELAY_FAILPOINTS` is set.
//!
//! `KAIGO_RELAY_FAILPOINTS=intake.after_commit=3` makes the process kill itself with SIGKILL the
//! 3rd time it reaches the point named `intake.after_commit`, after writing one line
//! `failpoint intake.after_commit hit: SIGKILL` to stderr (so a test can prove the point was
//! reached). Several points may be armed at once, comma-separated
//! (`relay.after_response=1,intake.after_move=2`); the first one reached at its count wins.
//! [`POINTS`] lists every point in the code; a point not listed there, a count that is not a
//! positive integer, or an entry without `=` is reported once on stderr and ignored (a typo
//! must not take the daemon down, nor silently test nothing without saying so).
//!
//! The crash-recovery end-to-end test (`tests/tests/crash_e2e.rs`) arms each point in turn and
//! checks that after a restart every file is recorded at the federation exactly once and none
//! is lost.
//!
//! Why hand-written rather than the `fail` crate: `fail` has no "kill the process" action (its
//! `panic` unwinds or aborts through the runtime, and a panic inside a tokio task is caught, so
//! the daemon would carry on — not a crash), and it is only active behind a compile-time feature,
//! which would make the binary under test differ from the one shipped. Here the shipped binary
//! is the tested binary; the price when the variable is unset is one `OnceLock` read and an
//! emptiness check per point.
//!
//! Invariant: with the variable unset (or empty), [`hit`] never does anything but return.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms failpoints.
pub const ENV_VAR: &str = "KAIGO_RELAY_FAILPOINTS";

/// Every failpoint in the daemon, in the order a file meets them.
pub const POINTS: &[&str] = &[
    "intake.before_commit",
    "intake.after_commit",
    "intake.after_move",
    "intake.after_mark_moved",
    "relay.before_sending_commit",
    "relay.after_sending_commit",
    "relay.after_response",
    "relay.after_receipt_commit",
    "relay.before_reconcile",
    "relay.after_failed_try_commit",
    "relay.after_status_response",
    "relay.after_status_commit",
    "mirror.before_page_commit",
    "mirror.after_page_commit",
    "backup.after_snapshot",
    "backup.after_object",
];

#[derive(Debug)]
struct Armed {
    name: String,
    at: u64,
    hits: AtomicU64,
}

static ARMED: OnceLock<Vec<Armed>> = OnceLock::new();

/// Marks the point `name`. When the point is armed and this is its N-th hit in this process,
/// writes `failpoint NAME hit: SIGKILL` to stderr and kills the process with SIGKILL.
#[inline]
pub fn hit(name: &str) {
    let armed = ARMED.get_or_init(from_env);
    if armed.is_empty() {
        return;
    }
    hit_armed(armed, name);
}

#[cold]
fn hit_armed(armed: &[Armed], name: &str) {
    for a in armed.iter().filter(|a| a.name == name) {
        let n = a.hits.fetch_add(1, Ordering::SeqCst) + 1;
        if n == a.at {
            crash(name);
        }
    }
}

fn crash(name: &str) -> ! {
    eprintln!("failpoint {name} hit: SIGKILL");
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    // SIGKILL cannot be caught; should sending it fail, still never go past the point.
    std::process::abort()
}

fn from_env() -> Vec<Armed> {
    let Some(spec) = std::env::var_os(ENV_VAR) else {
        return Vec::new();
    };
    let Some(spec) = spec.to_str() else {
        eprintln!("{ENV_VAR} is not UTF-8; no failpoint armed");
        return Vec::new();
    };
    let (armed, errors) = parse(spec);
    for e in &errors {
        eprintln!("{ENV_VAR}: {e}; ignored");
    }
    if !armed.is_empty() {
        let list: Vec<String> = armed.iter().map(|(n, at)| format!("{n}={at}")).collect();
        eprintln!("failpoints armed: {}", list.join(","));
    }
    armed
        .into_iter()
        .map(|(name, at)| Armed {
            name,
            at,
            hits: AtomicU64::new(0),
        })
        .collect()
}

/// Parses `name=N[,name=N…]` into the armed points and a message for each malformed entry.
fn parse(spec: &str) -> (Vec<(String, u64)>, Vec<String>) {
    let mut armed = Vec::new();
    let mut errors = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, count)) = entry.split_once('=') else {
            errors.push(format!("\"{entry}\" is not NAME=COUNT"));
            continue;
        };
        let name = name.trim();
        if !POINTS.contains(&name) {
            errors.push(format!(
                "\"{name}\" is not a failpoint (known: {})",
                POINTS.join(", ")
            ));
            continue;
        }
        match count.trim().parse::<u64>() {
            Ok(at) if at >= 1 => armed.push((name.to_owned(), at)),
            _ => errors.push(format!(
                "\"{entry}\": the count must be a whole number from 1"
            )),
        }
    }
    (armed, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points_and_reports_malformed_entries() {
        let (armed, errors) = parse(" intake.after_commit=3 , relay.after_response=1,");
        assert_eq!(
            armed,
            vec![
                ("intake.after_commit".to_owned(), 3),
                ("relay.after_response".to_owned(), 1)
            ]
        );
        assert!(errors.is_empty(), "{errors:?}");
        let (armed, errors) = parse(
            "intake.after_commit,intake.after_move=0,relay.after_response=x,no.such=1,intake.after_move=2",
        );
        assert_eq!(armed, vec![("intake.after_move".to_owned(), 2)]);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[3].contains("no.such"), "{errors:?}");
        assert_eq!(parse(""), (vec![], vec![]));
    }

    #[test]
    fn unarmed_points_do_nothing() {
        let armed = vec![Armed {
            name: "intake.after_commit".into(),
            at: 3,
            hits: AtomicU64::new(0),
        }];
        // Other points are not counted; this one is, and would fire only at its 3rd hit.
        hit_armed(&armed, "intake.after_move");
        hit_armed(&armed, "intake.after_commit");
        hit_armed(&armed, "intake.after_commit");
        assert_eq!(armed[0].hits.load(Ordering::SeqCst), 2);
        // The process-wide set is empty in unit tests: hitting is a no-op.
        hit("intake.after_commit");
    }

    #[test]
    fn every_point_in_the_code_is_listed_and_every_listed_point_is_in_the_code() {
        let sources = [
            include_str!("intake.rs"),
            include_str!("relay.rs"),
            include_str!("mirror.rs"),
            include_str!("backup/mod.rs"),
        ]
        .concat();
        let in_code: Vec<&str> = sources
            .split("failpoint::hit(\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        for p in &in_code {
            assert!(
                POINTS.contains(p),
                "{p} is hit in the code but not in POINTS"
            );
        }
        for p in POINTS {
            assert!(in_code.contains(p), "{p} is in POINTS but never hit");
        }
        assert_eq!(
            in_code.len(),
            POINTS.len(),
            "each point is hit once: {in_code:?}"
        );
    }
}
