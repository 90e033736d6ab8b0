//! What the ledger reports through the `metrics` facade (a no-op until the embedding process
//! installs a recorder): transfers by outcome, counted once per request after retries, and
//! the state of the sealed chain as the sealer and the audit last saw it. docs/metrics.md
//! lists them with their meaning.

use chrono::{DateTime, Utc};

use crate::{Applied, InvariantReport, LedgerError, TransferKind, seal::ChainVerification};

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
    for outcome in ["applied", "replayed", "refused", "failed"] {
        metrics::counter!("ledger_transfers_total", "outcome" => outcome).increment(0);
    }
    for kind in ["transfer", "pending", "post", "void", "expire"] {
        metrics::counter!("ledger_applied_transfers_total", "kind" => kind).increment(0);
    }
}

/// Counts the answers to one submission of `requests` transfers.
pub(crate) fn count_transfers(
    requests: usize,
    results: &Result<Vec<Result<Applied, LedgerError>>, LedgerError>,
) {
    match results {
        Ok(results) => {
            for result in results {
                let outcome = match result {
                    Ok(Applied { replayed: true, .. }) => "replayed",
                    Ok(applied) => {
                        let kind = kind_label(applied.transfer.kind);
                        metrics::counter!("ledger_applied_transfers_total", "kind" => kind)
                            .increment(1);
                        "applied"
                    }
                    Err(error) if error.is_refusal() => "refused",
                    Err(_) => "failed",
                };
                metrics::counter!("ledger_transfers_total", "outcome" => outcome).increment(1);
            }
        }
        Err(error) => {
            let outcome = if error.is_refusal() {
                "refused"
            } else {
                "failed"
            };
            metrics::counter!("ledger_transfers_total", "outcome" => outcome)
                .increment(requests as u64);
        }
    }
}

/// Counts holds the expiry released.
pub(crate) fn count_expired_holds(expired: usize) {
    metrics::counter!("ledger_applied_transfers_total", "kind" => "expire")
        .increment(expired as u64);
}

fn kind_label(kind: TransferKind) -> &'static str {
    match kind {
        TransferKind::Transfer => "transfer",
        TransferKind::Pending => "pending",
        TransferKind::Post => "post",
        TransferKind::Void => "void",
        TransferKind::Expire => "expire",
    }
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
pub fn record_audit(invariants: &InvariantReport, chain: &ChainVerification) {
    metrics::gauge!("ledger_invariant_violations").set(invariants.violations.len() as f64);
    metrics::gauge!("ledger_chain_intact").set(if chain.is_valid() { 1.0 } else { 0.0 });
}
