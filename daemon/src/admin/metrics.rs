//! `/healthz` and `/metrics` for the daemon: the checks that say whether the appliance can do
//! its work (the store answers, the drop folder is there, the disks are not full), and the
//! figures a Prometheus server scrapes (submissions by state, relay attempts and failures,
//! notices, returns, alerts, the window, disks, memory, certificate expiry).
//!
//! Invariant: metrics go to loopback, or to a scraper showing the configured token (compared
//! in constant time); labels carry states, kinds and office numbers only, never a name, an
//! insured person's number or a secret.

use std::collections::BTreeMap;

use admin_ui::{CheckResult, Client, HealthCheck, MetricFamily};
use sha2::{Digest as _, Sha256};

use super::dashboard::{Machine, Surroundings, percent};
use crate::store::{Store, StoreError};
use crate::submission::State;

/// Under this share of free space a volume fails `/healthz` (the home page warns earlier).
pub const FAILING_DISK_PERCENT: u8 = 2;

/// Whether `client` may read the metrics with `bearer`.
pub fn may_read(s: &Surroundings, client: &Client, bearer: Option<&str>) -> bool {
    if client.address.is_loopback() {
        return true;
    }
    match (&s.metrics_token, bearer) {
        // Digests of equal length, compared without an early exit.
        (Some(token), Some(given)) => {
            let (a, b) = (
                Sha256::digest(token.expose().as_bytes()),
                Sha256::digest(given.as_bytes()),
            );
            a.iter()
                .zip(b.iter())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
        }
        _ => false,
    }
}

/// The appliance's checks.
pub fn health_check(store: &Store, s: &Surroundings) -> HealthCheck {
    let mut checks = Vec::new();
    let mut check = |name: &str, result: Result<(), String>| {
        checks.push(CheckResult {
            name: name.into(),
            ok: result.is_ok(),
            detail: result.err(),
        });
    };
    check(
        "store",
        store
            .notice_count()
            .map(|_| ())
            .map_err(|e| format!("the store does not answer: {e}")),
    );
    check(
        "drop_folder",
        if s.drop_dir.is_dir() {
            Ok(())
        } else {
            Err("the drop folder is missing".into())
        },
    );
    let m = s.machine();
    for (name, disk) in [("drop_disk", m.drop_disk), ("state_disk", m.state_disk)] {
        check(
            name,
            match disk {
                Some((free, total)) if percent(free, total) < FAILING_DISK_PERCENT => {
                    Err(format!("{}% free", percent(free, total)))
                }
                _ => Ok(()),
            },
        );
    }
    let ok = checks.iter().all(|c| c.ok);
    HealthCheck { ok, checks }
}

fn family(
    name: &str,
    help: &str,
    kind: &'static str,
    samples: Vec<(Vec<(String, String)>, f64)>,
) -> MetricFamily {
    MetricFamily {
        name: name.into(),
        help: help.into(),
        kind,
        samples,
    }
}

fn label(k: &str, v: impl Into<String>) -> Vec<(String, String)> {
    vec![(k.into(), v.into())]
}

/// Every state, so that a state with no file reads 0 rather than disappearing.
const STATES: [State; 11] = [
    State::Queued,
    State::Sending,
    State::Arrived,
    State::Accepted,
    State::AcceptedWithReturns,
    State::Rejected,
    State::Withdrawn,
    State::Held,
    State::Refused,
    State::Duplicate,
    State::FailedNeedsAttention,
];

/// Every metric family, read from the store and the machine now.
pub fn families(store: &Store, s: &Surroundings) -> Result<Vec<MetricFamily>, StoreError> {
    let mut by_state: BTreeMap<&'static str, f64> =
        STATES.iter().map(|st| (st.as_str(), 0.0)).collect();
    let mut attempts: BTreeMap<(String, bool), f64> = BTreeMap::new();
    store.each(|sub| {
        *by_state.entry(sub.state.as_str()).or_default() += 1.0;
        for a in &sub.attempts {
            *attempts.entry((a.action.clone(), a.answered)).or_default() += 1.0;
        }
        Ok::<(), StoreError>(())
    })?;
    let returns: BTreeMap<&'static str, f64> = store
        .return_status_counts()?
        .into_iter()
        .map(|(status, n)| (status.as_str(), n as f64))
        .collect();
    let alerts = crate::alerts::current(store)?;
    let offices = store.office_records()?;
    let m: Machine = s.machine();
    let mut out = vec![
        family(
            "kaigo_relay_submissions",
            "Claim files taken from the drop folder, by state",
            "gauge",
            by_state
                .into_iter()
                .map(|(st, n)| (label("state", st), n))
                .collect(),
        ),
        family(
            "kaigo_relay_relay_attempts_total",
            "Requests to the gateway for claim files (send, reconcile), by whether the gateway gave a usable answer",
            "counter",
            attempts
                .iter()
                .map(|((action, answered), n)| {
                    (
                        vec![
                            ("action".into(), action.clone()),
                            ("answered".into(), answered.to_string()),
                        ],
                        *n,
                    )
                })
                .collect(),
        ),
        family(
            "kaigo_relay_relay_errors_total",
            "Requests to the gateway that got no usable answer (network, TLS, 5xx, timeouts)",
            "counter",
            vec![(
                vec![],
                attempts
                    .iter()
                    .filter(|((_, answered), _)| !answered)
                    .map(|(_, n)| n)
                    .sum(),
            )],
        ),
        family(
            "kaigo_relay_notices",
            "Notices mirrored from the federation and kept in the store",
            "gauge",
            vec![(vec![], store.notice_count()? as f64)],
        ),
        family(
            "kaigo_relay_returns",
            "Returned claims (返戻) tracked, by status",
            "gauge",
            returns
                .into_iter()
                .map(|(st, n)| (label("status", st), n))
                .collect(),
        ),
        family(
            "kaigo_relay_alerts",
            "Conditions that need a person",
            "gauge",
            vec![(vec![], alerts.len() as f64)],
        ),
        family(
            "kaigo_relay_uptime_seconds",
            "Seconds since the daemon started",
            "gauge",
            vec![(vec![], m.uptime.as_secs_f64().floor())],
        ),
    ];
    if let Some(w) = s.window.borrow().as_ref() {
        out.push(family(
            "kaigo_relay_window_open",
            "1 while the gateway receives claims",
            "gauge",
            vec![(vec![], if w.open { 1.0 } else { 0.0 })],
        ));
        out.push(family(
            "kaigo_relay_window_closes_timestamp_seconds",
            "When the current reception window closes (Unix time)",
            "gauge",
            vec![(vec![], w.closes_at.as_second() as f64)],
        ));
    }
    let mut free = Vec::new();
    let mut size = Vec::new();
    for (volume, d) in [("drop", m.drop_disk), ("state", m.state_disk)] {
        if let Some((f, t)) = d {
            free.push((label("volume", volume), f as f64));
            size.push((label("volume", volume), t as f64));
        }
    }
    out.push(family(
        "kaigo_relay_disk_free_bytes",
        "Free bytes on the drop folder's and the store's volumes",
        "gauge",
        free,
    ));
    out.push(family(
        "kaigo_relay_disk_size_bytes",
        "Size of the drop folder's and the store's volumes",
        "gauge",
        size,
    ));
    if let Some(rss) = m.process_resident {
        out.push(family(
            "kaigo_relay_resident_memory_bytes",
            "Resident memory of the daemon",
            "gauge",
            vec![(vec![], rss as f64)],
        ));
    }
    out.push(family(
        "kaigo_relay_certificate_expiry_timestamp_seconds",
        "When each office's client certificate expires (Unix time)",
        "gauge",
        offices
            .iter()
            .filter_map(|o| {
                o.certificate.as_ref().map(|c| {
                    (
                        label("office", o.office_number.clone()),
                        c.not_after.as_second() as f64,
                    )
                })
            })
            .collect(),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn surroundings(token: Option<&str>) -> Surroundings {
        let (_tx, rx) = tokio::sync::watch::channel(None);
        Surroundings::new(
            rx,
            std::env::temp_dir(),
            std::env::temp_dir(),
            token.map(|t| crate::config::Secret::new(t.into())),
        )
    }

    fn client(addr: &str) -> Client {
        Client {
            address: addr.parse().unwrap(),
            user_agent: "prometheus".into(),
        }
    }

    #[test]
    fn metrics_go_to_loopback_or_to_the_right_token_only() {
        let none = surroundings(None);
        assert!(may_read(&none, &client("127.0.0.1"), None));
        assert!(may_read(&none, &client("::1"), None));
        assert!(!may_read(&none, &client("192.168.1.20"), None));
        assert!(!may_read(&none, &client("192.168.1.20"), Some("")));
        let with = surroundings(Some("a-long-metrics-token-0123"));
        assert!(may_read(
            &with,
            &client("192.168.1.20"),
            Some("a-long-metrics-token-0123")
        ));
        assert!(!may_read(
            &with,
            &client("192.168.1.20"),
            Some("a-long-metrics-token-0124")
        ));
        assert!(!may_read(&with, &client("192.168.1.20"), None));
    }

    #[test]
    fn a_missing_drop_folder_fails_the_health_check_and_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let (_tx, rx) = tokio::sync::watch::channel(None);
        let s = Surroundings::new(rx, dir.path().join("nope"), dir.path().to_owned(), None);
        let h = health_check(&store, &s);
        assert!(!h.ok);
        let failed: Vec<&str> = h
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failed, ["drop_folder"]);
        std::fs::create_dir(dir.path().join("nope")).unwrap();
        assert!(health_check(&store, &s).ok);
    }
}
