//! The pools' gauges: set when a host's `/metrics` is scraped ([`record_db`], [`record_pool`]),
//! so that they are current without a task of their own; [`describe_metrics`] gives their help
//! texts. docs/metrics.md lists them.

use crate::{Db, PoolUsage};

/// Help texts of the pool gauges.
pub fn describe_metrics() {
    use metrics::describe_gauge;
    describe_gauge!(
        "fodi_db_pool_connections",
        "Connections of a pool, by pool and state (in_use, idle)"
    );
    describe_gauge!(
        "fodi_db_pool_max_connections",
        "The most connections a pool may open, by pool"
    );
    describe_gauge!(
        "fodi_db_replica_in_use",
        "1 while a pool's lag-tolerant reads go to the replica, 0 while they go to the primary (replica down or behind database.replica_max_lag)"
    );
    describe_gauge!(
        "fodi_db_replica_lag_seconds",
        metrics::Unit::Seconds,
        "How far the replica was behind the primary at its last check, by pool (NaN when unknown)"
    );
}

/// Sets the gauges of `db`'s pools under `name`: its primary's, and its replica's as
/// `<name>_replica` with whether reads go there and how far behind it is.
pub fn record_db(name: &str, db: &Db) {
    record_pool(name, db.usage());
    if let Some(usage) = db.replica_usage() {
        record_pool(&format!("{name}_replica"), usage);
        let pool = name.to_owned();
        metrics::gauge!("fodi_db_replica_in_use", "pool" => pool.clone())
            .set(if db.reads_from_replica() { 1.0 } else { 0.0 });
        // Unknown (down, or beyond the samples): NaN, which no threshold matches.
        let lag = db.replica_lag().map_or(f64::NAN, |lag| lag.as_secs_f64());
        metrics::gauge!("fodi_db_replica_lag_seconds", "pool" => pool).set(lag);
    }
}

/// Sets the gauges of one pool (a crate's private pool: the ledger's engine, the AI cache's
/// statements) under `name`.
pub fn record_pool(name: &str, usage: PoolUsage) {
    let pool = name.to_owned();
    metrics::gauge!("fodi_db_pool_connections", "pool" => pool.clone(), "state" => "in_use")
        .set(usage.in_use as f64);
    metrics::gauge!("fodi_db_pool_connections", "pool" => pool.clone(), "state" => "idle")
        .set(usage.idle as f64);
    metrics::gauge!("fodi_db_pool_max_connections", "pool" => pool).set(usage.max as f64);
}
