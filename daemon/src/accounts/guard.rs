//! Login protection: throttling per client address and per login ID (token buckets, in memory),
//! and the lockout rule kept with each account (in the store, so a restart does not reset it).
//!
//! Invariant: a throttled or locked attempt never reaches the password hash, so a flood of
//! guesses costs the appliance almost nothing and teaches the guesser nothing. Time comes in as
//! an argument (tokio's `Instant` for the buckets, wall-clock for lockouts), so every rule is
//! tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Limits of the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardSettings {
    /// Attempts an address may make in a burst.
    pub per_address_burst: u32,
    /// One more attempt per address every this long.
    pub per_address_refill: Duration,
    /// Attempts one login ID may receive in a burst (from any address).
    pub per_id_burst: u32,
    /// One more attempt per ID every this long.
    pub per_id_refill: Duration,
    /// Consecutive failures that lock an account.
    pub lockout_after: u32,
    /// How long a lockout lasts unless an administrator unlocks it first.
    pub lockout_for: Duration,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            per_address_burst: 10,
            per_address_refill: Duration::from_secs(6),
            per_id_burst: 5,
            per_id_refill: Duration::from_secs(12),
            lockout_after: 10,
            lockout_for: Duration::from_secs(30 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, burst: u32, refill: Duration, now: Instant) -> Result<(), Duration> {
        let per_sec = 1.0 / refill.as_secs_f64().max(1e-6);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_sec))
        }
    }
}

/// Why an attempt is not even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many attempts from this address; try again after this long.
    ThrottledAddress(Duration),
    /// Too many attempts for this ID; try again after this long.
    ThrottledId(Duration),
}

/// Throttling per address and per ID.
#[derive(Debug)]
pub struct Throttle {
    settings: GuardSettings,
    addresses: HashMap<IpAddr, Bucket>,
    ids: HashMap<String, Bucket>,
}

/// Buckets idle this long are forgotten (they are full again by then).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

impl Throttle {
    /// An empty throttle.
    pub fn new(settings: GuardSettings) -> Throttle {
        Throttle {
            settings,
            addresses: HashMap::new(),
            ids: HashMap::new(),
        }
    }

    /// Takes one attempt for `address` and `id`, or says how long to wait. An attempt refused
    /// for the address does not use up the ID's allowance (so a flood from one address cannot
    /// lock a clerk out from her own PC).
    pub fn attempt(&mut self, address: IpAddr, id: &str, now: Instant) -> Result<(), Refusal> {
        let s = self.settings;
        if self.addresses.len() + self.ids.len() > 10_000 {
            self.addresses
                .retain(|_, b| now.saturating_duration_since(b.at) < FORGET_AFTER);
            self.ids
                .retain(|_, b| now.saturating_duration_since(b.at) < FORGET_AFTER);
        }
        let full = |burst: u32| Bucket {
            tokens: f64::from(burst),
            at: now,
        };
        let mut address_bucket = *self
            .addresses
            .get(&address)
            .unwrap_or(&full(s.per_address_burst));
        address_bucket
            .take(s.per_address_burst, s.per_address_refill, now)
            .map_err(Refusal::ThrottledAddress)?;
        self.addresses.insert(address, address_bucket);
        let key = id.to_lowercase();
        let bucket = self.ids.entry(key).or_insert(full(s.per_id_burst));
        bucket
            .take(s.per_id_burst, s.per_id_refill, now)
            .map_err(Refusal::ThrottledId)
    }
}

/// The lockout state kept with an account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockout {
    /// Failures since the last success or unlock.
    pub failures: u32,
    /// Locked until then.
    pub locked_until: Option<Timestamp>,
}

impl Lockout {
    /// Whether the account is locked at `now`.
    pub fn is_locked(&self, now: Timestamp) -> bool {
        self.locked_until.is_some_and(|t| now < t)
    }

    /// Records a failed password. Returns true when this failure locked the account.
    pub fn failed(&mut self, now: Timestamp, s: &GuardSettings) -> bool {
        if self.locked_until.is_some_and(|t| now >= t) {
            // A lockout that ran out starts a new count.
            *self = Lockout::default();
        }
        self.failures += 1;
        if self.failures >= s.lockout_after && self.locked_until.is_none() {
            self.locked_until =
                Some(now + jiff::SignedDuration::try_from(s.lockout_for).unwrap_or_default());
            return true;
        }
        false
    }

    /// A successful login or an administrator's unlock clears the count.
    pub fn clear(&mut self) {
        *self = Lockout::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_and_an_id_are_throttled_separately() {
        let mut t = Throttle::new(GuardSettings::default());
        let start = Instant::now();
        // One address guessing many IDs: ten attempts, then it waits.
        for n in 0..10 {
            t.attempt(ip("192.0.2.1"), &format!("id{n}"), start)
                .unwrap();
        }
        match t.attempt(ip("192.0.2.1"), "other", start) {
            Err(Refusal::ThrottledAddress(wait)) => assert!(wait <= Duration::from_secs(6)),
            other => panic!("{other:?}"),
        }
        // Six seconds later one more attempt is allowed.
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(t.attempt(ip("192.0.2.1"), "other", Instant::now()).is_ok());
        // Many addresses guessing one ID: five attempts (any case), then that ID waits…
        for n in 0..5 {
            t.attempt(ip(&format!("198.51.100.{n}")), "Clerk", Instant::now())
                .unwrap();
        }
        assert!(matches!(
            t.attempt(ip("198.51.100.9"), "clerk", Instant::now()),
            Err(Refusal::ThrottledId(_))
        ));
        // …while other IDs are not affected.
        assert!(
            t.attempt(ip("198.51.100.9"), "manager", Instant::now())
                .is_ok()
        );
        tokio::time::advance(Duration::from_secs(12)).await;
        assert!(
            t.attempt(ip("198.51.100.9"), "clerk", Instant::now())
                .is_ok()
        );
    }

    #[test]
    fn ten_failures_lock_for_thirty_minutes_and_a_success_clears() {
        let s = GuardSettings::default();
        let now: Timestamp = "2026-12-03T10:00:00+09:00".parse().unwrap();
        let mut l = Lockout::default();
        for _ in 0..9 {
            assert!(!l.failed(now, &s));
        }
        assert!(!l.is_locked(now));
        assert!(l.failed(now, &s));
        assert!(l.is_locked(now));
        // More failures while locked do not extend it (nor announce it again).
        assert!(!l.failed(now, &s));
        let later = now + jiff::SignedDuration::from_mins(29);
        assert!(l.is_locked(later));
        let after = now + jiff::SignedDuration::from_mins(30);
        assert!(!l.is_locked(after));
        // After the lockout ran out, counting starts again.
        assert!(!l.failed(after, &s));
        assert_eq!(l.failures, 1);
        l.clear();
        assert_eq!(l, Lockout::default());
    }
}
