//! Every domain error as a problem document with a stable `type` (`/problems/<kind>`): 4xx for
//! what the caller can change, 503 while the database is unavailable, and a bare 500 (details
//! logged, never sent) for the rest.

use actix_web::http::StatusCode;
use admin_api::Problem;
use db_core::DbError;
use ledger::LedgerError;

fn problem(status: StatusCode, kind: &str, title: &str, detail: String) -> Problem {
    Problem::new(status, kind, title).with_detail(detail)
}

/// What the schema's check constraints are named after, behind `<table>_<column>_`.
const CHECK_RULES: [&str; 10] = [
    "_not_negative",
    "_positive",
    "_length",
    "_format",
    "_known",
    "_range",
    "_object",
    "_iso",
    "_given",
    "_code",
];

/// The column a check constraint guards, from its name: the schema names a column's checks
/// `<table>_<column>_<rule>` (`users_email_format`). `None` for checks over a whole row
/// (`fodi_transactions_well_formed`), which name no field of the caller's.
fn checked_column<'a>(table: &str, constraint: &'a str) -> Option<&'a str> {
    let rest = constraint.strip_prefix(table)?.strip_prefix('_')?;
    CHECK_RULES
        .iter()
        .find_map(|rule| rest.strip_suffix(rule))
        .filter(|column| !column.is_empty())
}

/// Database failures: unavailable (retry later) or internal (logged, not described).
pub fn database(error: &DbError) -> Problem {
    match error {
        DbError::PoolTimedOut
        | DbError::PoolClosed
        | DbError::ConnectionLost { .. }
        | DbError::Unreachable { .. }
        | DbError::SerializationFailure { .. }
        | DbError::Deadlock { .. }
        | DbError::StatementTimeout { .. }
        | DbError::LockNotAvailable { .. } => {
            tracing::warn!(%error, "database unavailable");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                "The database is unavailable; try again",
            )
        }
        // A table's CHECK refused a value: the caller's input, which the handler's own
        // validation did not catch.
        DbError::CheckViolation { constraint, source } => {
            tracing::info!(%error, "refused by a check");
            let refused = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-field",
                "A field is invalid",
            );
            let table = source
                .as_database_error()
                .and_then(|error| {
                    error.try_downcast_ref::<db_core::sqlx::postgres::PgDatabaseError>()
                })
                .and_then(|error| error.table());
            match table.and_then(|table| checked_column(table, constraint)) {
                Some(column) => refused.with_detail(format!("{column}: out of the allowed values")),
                // A check over the whole row names no field; its name stays in the log.
                None => refused,
            }
        }
        // Class 22, data exceptions: a value the caller sent cannot be stored as it is (a NUL
        // character in a path segment, a number out of a column's range, ...).
        error
            if error
                .sqlstate()
                .is_some_and(|state| state.starts_with("22")) =>
        {
            tracing::info!(%error, "refused data");
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-data",
                "A value cannot be stored as given",
            )
        }
        _ => internal(error),
    }
}

/// A failure the caller cannot act on: logged with its cause, answered without it.
pub fn internal(error: &dyn std::fmt::Display) -> Problem {
    tracing::error!(%error, "request failed");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "The request failed on the server",
    )
}

pub fn ledger(error: &LedgerError) -> Problem {
    use LedgerError as E;
    let detail = error.to_string();
    let unprocessable = |kind, title| {
        problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            kind,
            title,
            detail.clone(),
        )
    };
    let not_found = |kind, title| problem(StatusCode::NOT_FOUND, kind, title, detail.clone());
    let conflict = |kind, title| problem(StatusCode::CONFLICT, kind, title, detail.clone());
    match error {
        E::InvalidAmount { .. } => unprocessable("invalid-amount", "The amount must be positive"),
        E::AmountOutOfRange => unprocessable("amount-out-of-range", "The amount is out of range"),
        E::InvalidDecimal { .. } => {
            unprocessable("invalid-amount", "The amount is not a decimal number")
        }
        E::InvalidAsset { .. } => unprocessable("invalid-asset", "The asset code is invalid"),
        E::InvalidField { .. } => unprocessable("invalid-field", "A field is invalid"),
        E::BatchSize { .. } => unprocessable("batch-size", "The batch size is out of range"),
        E::SameWallet => unprocessable("same-wallet", "A transfer needs two different wallets"),
        E::LimitNotAllowed { .. } | E::LimitAboveBalance { .. } => {
            unprocessable("limit-refused", "The limit is refused")
        }
        E::WalletNotFound(_) => not_found("wallet-not-found", "No such wallet"),
        E::UserNotFound(_) => not_found("user-not-found", "No such user"),
        E::PendingNotFound(_) => not_found("pending-not-found", "No such pending transfer"),
        E::NftNotFound(_) => not_found("nft-not-found", "No such NFT"),
        E::WalletClosed(_) => conflict("wallet-closed", "The wallet is closed"),
        E::WalletNotEmpty { .. } => conflict("wallet-not-empty", "The wallet is not empty"),
        E::AssetMismatch { .. } => conflict("asset-mismatch", "The wallets hold different assets"),
        E::InsufficientFunds { .. } => conflict("insufficient-funds", "Insufficient funds"),
        E::Overflow { .. } => conflict("balance-overflow", "The balance would overflow"),
        E::IdConflict { .. } => conflict(
            "idempotency-conflict",
            "The transfer id was used before with other fields",
        ),
        E::PendingAlreadyResolved(_) => conflict(
            "pending-resolved",
            "The pending transfer is already resolved",
        ),
        E::PendingExpired(_) => conflict("pending-expired", "The pending transfer has expired"),
        E::PendingNotExpired(_) => conflict(
            "pending-not-expired",
            "The pending transfer has not expired",
        ),
        E::AmountExceedsPending { .. } => conflict(
            "amount-exceeds-pending",
            "The amount exceeds the pending transfer",
        ),
        E::LinkedEventFailed => conflict(
            "linked-transfer-failed",
            "Not applied: another transfer of the linked batch failed",
        ),
        E::RewardConflict { .. } => conflict(
            "reward-conflict",
            "The reward was paid before with other terms",
        ),
        E::NftNotOwned { .. } => conflict("nft-not-owned", "The NFT is not owned by that user"),
        E::NftBurned(_) => conflict("nft-burned", "The NFT has been burned"),
        E::NftConflict(_) => conflict(
            "nft-conflict",
            "The NFT id was used before with other fields",
        ),
        E::Db(error) => database(error),
        E::UnexpectedResult(_) => internal(error),
    }
}

#[cfg(test)]
mod tests {
    use super::checked_column;

    #[test]
    fn a_column_check_names_its_column_and_a_row_check_nothing() {
        assert_eq!(checked_column("users", "users_email_format"), Some("email"));
        assert_eq!(
            checked_column(
                "conversation_messages",
                "conversation_messages_token_count_not_negative"
            ),
            Some("token_count")
        );
        assert_eq!(
            checked_column("wallets", "wallets_asset_code"),
            Some("asset")
        );
        assert_eq!(
            checked_column("fodi_transactions", "fodi_transactions_well_formed"),
            None
        );
        assert_eq!(checked_column("balances", "users_email_format"), None);
    }

    /// Every check of the migrations names a column, or nothing: a check whose name broke the
    /// convention would send the caller a wrong field.
    #[test]
    fn the_schema_s_checks_follow_the_naming_the_problem_documents_rely_on() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
        let mut sql = String::new();
        for set in std::fs::read_dir(dir).unwrap() {
            for file in std::fs::read_dir(set.unwrap().path()).unwrap() {
                sql.push_str(&std::fs::read_to_string(file.unwrap().path()).unwrap());
            }
        }
        let tables: Vec<&str> = sql
            .split("CREATE TABLE ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next())
            .map(|name| name.rsplit('.').next().unwrap_or(name))
            .collect();
        let columns: Vec<&str> = sql
            .lines()
            .filter_map(|line| line.strip_prefix("    "))
            .filter_map(|definition| definition.split_whitespace().next())
            .collect();
        let mut named = 0;
        for rest in sql.split("CONSTRAINT ").skip(1) {
            let mut words = rest.split_whitespace();
            let (Some(constraint), Some("CHECK")) = (words.next(), words.next()) else {
                continue;
            };
            // The longest table name the constraint starts with (`conversation_messages`
            // before `conversations`).
            let table = tables
                .iter()
                .filter(|table| constraint.starts_with(&format!("{table}_")))
                .max_by_key(|table| table.len())
                .unwrap_or_else(|| panic!("{constraint}: no table of that name"));
            if let Some(column) = checked_column(table, constraint) {
                named += 1;
                // The field as callers know it: the column, or the column without its unit or
                // scope (`price` for `price_cents`, `key` for `cache_key`).
                let guards_a_column = columns.iter().any(|name| {
                    *name == column
                        || name.starts_with(&format!("{column}_"))
                        || name.ends_with(&format!("_{column}"))
                });
                assert!(guards_a_column, "{constraint}: no column {column}");
            }
        }
        assert!(named > 30, "{named} checks named a column");
    }
}
