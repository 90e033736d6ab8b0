//! Per-caller rate limits on writes and costly reads (`[limits]`), so that one token or one
//! signed-in user cannot take the ledger's connections from everyone else. A caller is keyed by
//! its name (a service's, or `user:<id>`); a caller past its limit is answered 429 with
//! `Retry-After`. Cheap reads are not limited. GCRA through the `governor` crate: a steady
//! rate with a burst of twice the rate.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::{Deserialize, Serialize};

use crate::rules::Rule;
use crate::{Caller, Identity, Refusal};

/// `[limits]`: requests per second per caller; 0 turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitConfig {
    /// Writes (anything but GET) per end user, and per anonymous caller.
    pub user_writes_per_second: u32,
    /// Costly reads (statements, balances at a time, proofs, exports, rollups) per end user,
    /// and per anonymous caller.
    pub user_costly_reads_per_second: u32,
    /// Writes per service token.
    pub service_writes_per_second: u32,
    /// Costly reads per service token.
    pub service_costly_reads_per_second: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            user_writes_per_second: 10,
            user_costly_reads_per_second: 5,
            service_writes_per_second: 0,
            service_costly_reads_per_second: 200,
        }
    }
}

/// Reads that cost more than an indexed lookup.
const COSTLY_READS: &[&str] = &[
    "/api/v1/ledger/wallets/{id}/statement",
    "/api/v1/ledger/wallets/{id}/balance",
    "/api/v1/ledger/transfers/{id}/proof",
    "/api/v1/ledger/blocks/verify",
    "/api/v1/ai/examples/export",
    "/api/v1/ai/users/{user}/facts/search",
    "/api/v1/analytics/events/counts",
    "/api/v1/analytics/metrics/{name}/buckets",
    "/api/v1/analytics/daily-stats",
];

/// What a rule costs: limited as a write, as a costly read, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    Write,
    CostlyRead,
    Read,
}

pub fn cost(rule: &Rule) -> Cost {
    if rule.method != "GET" {
        Cost::Write
    } else if COSTLY_READS.contains(&rule.path) {
        Cost::CostlyRead
    } else {
        Cost::Read
    }
}

type Limiter = Arc<DefaultKeyedRateLimiter<String>>;

/// Checks between two sweeps of callers whose limit is back to full (the keyed state would
/// otherwise keep a key for every user ever seen).
const SWEEP_EVERY: u64 = 10_000;

fn limiter(per_second: u32) -> Option<Limiter> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
    Some(Arc::new(governor::RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    )))
}

#[derive(Clone, Default)]
pub(crate) struct Limits {
    user_writes: Option<Limiter>,
    user_costly: Option<Limiter>,
    service_writes: Option<Limiter>,
    service_costly: Option<Limiter>,
    checks: Arc<std::sync::atomic::AtomicU64>,
}

impl Limits {
    pub(crate) fn new(settings: &LimitConfig) -> Self {
        Self {
            user_writes: limiter(settings.user_writes_per_second),
            user_costly: limiter(settings.user_costly_reads_per_second),
            service_writes: limiter(settings.service_writes_per_second),
            service_costly: limiter(settings.service_costly_reads_per_second),
            checks: Arc::default(),
        }
    }

    /// `Ok` when `caller` may make this request now; else the wait. `client`: the caller's
    /// address, which keys anonymous callers (asked only then: most requests need no limit).
    pub(crate) fn check(
        &self,
        caller: &Caller,
        rule: &Rule,
        client: impl FnOnce() -> Option<std::net::IpAddr>,
    ) -> Result<(), Refusal> {
        let service = matches!(caller.identity, Identity::Service { .. });
        let limiter = match (cost(rule), service) {
            (Cost::Read, _) => None,
            (Cost::Write, false) => self.user_writes.as_ref(),
            (Cost::CostlyRead, false) => self.user_costly.as_ref(),
            (Cost::Write, true) => self.service_writes.as_ref(),
            (Cost::CostlyRead, true) => self.service_costly.as_ref(),
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        let checks = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if checks % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        // Anonymous callers share a key per address.
        let key = match &caller.identity {
            Identity::Anonymous => match client() {
                Some(address) => format!("anonymous:{address}"),
                None => "anonymous:?".to_owned(),
            },
            _ => caller.name(),
        };
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Refusal::RateLimited { key, wait }
        })
    }
}
