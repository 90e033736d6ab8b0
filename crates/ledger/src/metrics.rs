//! What the ledger reports through the `metrics` facade (a no-op until the embedding process
//! installs a recorder): transfers by outcome, counted once per request after retries, and
//! the state of the sealed chain as the sealer and the audit last saw it. docs/metrics.md
//! lists them with their meaning.

use chrono::{DateTime, Utc};

use crate::{Applied, Audit, LedgerError, TransferKind};

/// Help texts of the ledger's metrics (Prometheus and `promtool` want them).
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        "ledger_transfers_total",
        "Transfer requests answered, by outcome: applied, replayed (an id applied before), refused (a rule of the ledger said no) or failed (the database did)"
    );
    describe_counter!(
        "ledger_applied_transfers_total",
        "Transfers applied (replays not counted), by kind: transfer, pending (a hold placed), post, void, expire (a hold lapsed)"
    );
    describe_gauge!(
        "ledger_block_height",
        "Height of the newest sealed block (-1 before the first)"
    );
    describe_gauge!(
        "ledger_seal_lag_seconds",
        metrics::Unit::Seconds,
        "Age of the oldest transfer not sealed into a block yet (0 when every transfer is sealed)"
    );
    describe_gauge!(
        "ledger_invariant_violations",
        "Violations the last invariant check found (0 when the ledger balances)"
    );
    describe_gauge!(
        "ledger_chain_intact",
        "1 when the last verification of the sealed chain found every block intact, 0 when not"
    );
    // Exported from the start at zero, so that rates by outcome exist before the first.
    for outcome in OUTCOMES {
        metrics::counter!("ledger_transfers_total", "outcome" => outcome).increment(0);
    }
    for kind in TransferKind::ALL {
        metrics::counter!("ledger_applied_transfers_total", "kind" => kind.as_str()).increment(0);
    }
}

/// The outcomes `ledger_transfers_total` counts.
const OUTCOMES: [&str; 4] = ["applied", "replayed", "refused", "failed"];

/// Counts the answers to one submission of `requests` transfers: tallied first, so that a
/// batch of a thousand touches each counter once.
pub(crate) fn count_transfers(
    requests: usize,
    results: &Result<Vec<Result<Applied, LedgerError>>, LedgerError>,
) {
    let mut outcomes = [0u64; OUTCOMES.len()];
    let mut kinds = [0u64; TransferKind::ALL.len()];
    let mut count = |outcome: &str, times: u64| {
        if let Some(at) = OUTCOMES.iter().position(|known| *known == outcome) {
            outcomes[at] += times;
        }
    };
    let failure = |error: &LedgerError| {
        if error.is_refusal() {
            "refused"
        } else {
            "failed"
        }
    };
    match results {
        Ok(results) => {
            for result in results {
                match result {
                    Ok(Applied { replayed: true, .. }) => count("replayed", 1),
                    Ok(applied) => {
                        count("applied", 1);
                        if let Some(at) = TransferKind::ALL
                            .iter()
                            .position(|kind| *kind == applied.transfer.kind)
                        {
                            kinds[at] += 1;
                        }
                    }
                    Err(error) => count(failure(error), 1),
                }
            }
        }
        Err(error) => count(failure(error), requests as u64),
    }
    for (outcome, count) in OUTCOMES.into_iter().zip(outcomes) {
        if count > 0 {
            metrics::counter!("ledger_transfers_total", "outcome" => outcome).increment(count);
        }
    }
    for (kind, count) in TransferKind::ALL.into_iter().zip(kinds) {
        if count > 0 {
            metrics::counter!("ledger_applied_transfers_total", "kind" => kind.as_str())
                .increment(count);
        }
    }
}

/// Counts holds the expiry released.
pub(crate) fn count_expired_holds(expired: usize) {
    let kind = TransferKind::Expire.as_str();
    metrics::counter!("ledger_applied_transfers_total", "kind" => kind).increment(expired as u64);
}

/// Where sealing stands: see [`crate::Ledger::seal_status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealStatus {
    /// The newest block's height; `None` before the first block.
    pub height: Option<i64>,
    /// When the oldest transfer after the newest block was made; `None` when there is none.
    pub oldest_unsealed_at: Option<DateTime<Utc>>,
}

impl SealStatus {
    /// Sets `ledger_block_height` and `ledger_seal_lag_seconds`.
    pub fn record(&self) {
        metrics::gauge!("ledger_block_height").set(self.height.unwrap_or(-1) as f64);
        let lag = self.oldest_unsealed_at.map_or(0.0, |at| {
            (Utc::now() - at).num_milliseconds().max(0) as f64 / 1_000.0
        });
        metrics::gauge!("ledger_seal_lag_seconds").set(lag);
    }
}

/// Sets `ledger_invariant_violations` and `ledger_chain_intact` from an audit's findings.
pub fn record_audit(audit: &Audit) {
    metrics::gauge!("ledger_invariant_violations").set(audit.invariants.violations.len() as f64);
    metrics::gauge!("ledger_chain_intact").set(if audit.chain.is_valid() { 1.0 } else { 0.0 });
}
