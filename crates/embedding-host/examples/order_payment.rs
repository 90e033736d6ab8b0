//! An embedding host places orders: each order row (`shop.orders`, the host's own table) and
//! the ledger transfer that pays it are written in one transaction of the host's, so they
//! commit together, and when the ledger refuses the payment (insufficient funds) they roll
//! back together: no order row is left without its payment, nor a payment without its order.
//!
//! ```sh
//! cargo run -p embedding-host --example order_payment
//! ```
//!
//! The database: `DATABASE_URL` when set (migrated in place; every run makes new users and
//! orders), otherwise a fresh, empty database from `db_core::testing::TestDb` (on the server
//! of `TEST_DATABASE_URL`, or the shared local test cluster), dropped at the end. Either way
//! the host migrates it itself, the crates' sets beside its own, as `docs/embedding.md` says.
//! Prints what it did; exits non-zero if an order and its payment ever disagree.
#![allow(clippy::print_stdout)] // An example reports on stdout what it did.

use ai_store::prelude::*;
use ai_store::{AiConfig, PgAiStore, Ttl};
use analytics::{Event, Recorder, RecorderConfig};
use core_store::{NewUser, PgUsers, Users};
use db_core::migrate::{Migrator, UpOptions};
use db_core::sqlx;
use db_core::testing::TestDb;
use db_core::{Db, DbConfig, DbError, RetryPolicy, RetryableError, UserId, with_retry};
use ledger::prelude::*;
use ledger::{
    Amount, Applied, Asset, Issuance, LedgerConfig, LedgerError, PgLedger, TransferId,
    TransferRequest, WalletId,
};
use serde_json::json;
use uuid::Uuid;

/// What can stop an order, as a host's own error type would say it.
#[derive(Debug, thiserror::Error)]
enum OrderError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for OrderError {
    fn from(error: sqlx::Error) -> Self {
        Self::Db(DbError::from(error))
    }
}

/// Lets `with_retry` run the whole transaction again when that may succeed: a serialisation
/// failure, a deadlock, a lost connection, or two submits of one transfer id that met.
impl RetryableError for OrderError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Ledger(error) => error.is_retryable(),
            Self::Db(error) => error.is_retryable(),
        }
    }
}

/// An order to place: who pays whom how much.
struct Order {
    id: Uuid,
    customer: UserId,
    from: WalletId,
    to: WalletId,
    total: Amount,
}

enum Placed {
    /// The order row and its payment committed together.
    Paid(Applied),
    /// The ledger refused the payment; the transaction, order row included, was rolled back.
    Refused {
        refusal: LedgerError,
        /// Whether the transaction still answered after the refusal (it was not aborted).
        usable_after_refusal: bool,
    },
}

/// One transaction: the order row, then its payment. The payment's transfer id is the order's
/// id and the insert skips an existing row, so running it all again (after a lost commit
/// acknowledgement, say) neither duplicates the order nor pays twice.
async fn place_order(db: &Db, ledger: &PgLedger, order: &Order) -> Result<Placed, OrderError> {
    with_retry(&RetryPolicy::default(), || async move {
        let mut transaction = db.begin().await?;
        sqlx::query(
            "INSERT INTO shop.orders (id, customer_id, total_units, payment_id)
             VALUES ($1, $2, $3, $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(order.id)
        .bind(order.customer.as_uuid())
        .bind(order.total.units())
        .execute(&mut *transaction)
        .await?;
        let payment = TransferRequest::transfer(order.from, order.to, order.total)
            .with_id(TransferId(order.id))
            .with_reason("shop_order")
            .with_reference(order.id.to_string());
        match ledger.on(&mut transaction).transfer(&payment).await {
            Ok(applied) => {
                transaction.commit().await?;
                Ok(Placed::Paid(applied))
            }
            Err(refusal @ LedgerError::InsufficientFunds { .. }) => {
                // The engine answered with a refusal rather than raising an error, so the
                // transaction still works: the order row is still visible inside it.
                let usable_after_refusal =
                    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM shop.orders WHERE id = $1")
                        .bind(order.id)
                        .fetch_one(&mut *transaction)
                        .await
                        .is_ok_and(|rows| rows == 1);
                transaction.rollback().await?;
                Ok(Placed::Refused {
                    refusal,
                    usable_after_refusal,
                })
            }
            // Dropping the transaction rolls it back; with_retry decides whether to rerun it.
            Err(error) => Err(error.into()),
        }
    })
    .await
}

/// What the database holds for an order: its row, and its payment's transfer.
async fn stored(db: &Db, ledger: &PgLedger, order: &Order) -> anyhow::Result<(bool, bool)> {
    let mut unit = db.unit(db.primary()).await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM shop.orders WHERE id = $1")
        .bind(order.id)
        .fetch_one(&mut *unit)
        .await?;
    unit.finish().await?;
    let payment = ledger.get_transfer(TransferId(order.id)).await?;
    Ok((rows == 1, payment.is_some()))
}

async fn balance(ledger: &PgLedger, wallet: WalletId) -> anyhow::Result<i64> {
    Ok(ledger.wallet(wallet).await?.posted)
}

fn fodi(units: i64) -> String {
    ledger::amount::format_units(units)
}

async fn run(db: &Db) -> anyhow::Result<()> {
    // 1. The crates' sets beside the host's own, in dependency order, under the migration lock.
    let migrator = Migrator::new(vec![
        core_store::migration_set(),
        ai_store::migration_set(),
        ledger::migration_set(),
        analytics::migration_set(),
        embedding_host::migration_set(),
    ])?;
    // A session of its own: the migration lock is held across transactions.
    let mut connection = db.session_pool().acquire().await?;
    let report = migrator.up(&mut connection, UpOptions::default()).await?;
    drop(connection);
    let order_of_sets: Vec<&str> = migrator.sets().iter().map(|set| set.name()).collect();
    println!(
        "migrated sets {}: {} migrations applied now",
        order_of_sets.join(", "),
        report.applied_count()
    );

    // 2. Start-up, in order.
    let ai = PgAiStore::start(db.clone(), AiConfig::default()).await?;
    let ledger = PgLedger::new(db.clone(), LedgerConfig::default());
    let recorder = Recorder::start(db, RecorderConfig::default());

    // 3. A customer with 100 FODI, and the shop's wallet.
    let users = PgUsers::new(db.clone());
    let run_id = Uuid::now_v7();
    let customer = users
        .create(&NewUser {
            email: format!("customer-{run_id}@example.com"),
            display_name: Some("Customer".into()),
        })
        .await?;
    let merchant = users
        .create(&NewUser {
            email: format!("shop-{run_id}@example.com"),
            display_name: Some("Shop".into()),
        })
        .await?;
    let customer_wallet = ledger.open_user_wallet(customer.id, &Asset::fodi()).await?;
    let shop_wallet = ledger.open_user_wallet(merchant.id, &Asset::fodi()).await?;
    // Money comes into being by issuance alone (the treasury's operation).
    ledger
        .issue(Issuance::new(customer_wallet.id, Amount::tokens(100)?))
        .await?;
    println!(
        "customer {} holds {} FODI",
        customer.id,
        fodi(balance(&ledger, customer_wallet.id).await?)
    );

    // 4. An order the customer can pay: order row and payment commit together.
    let affordable = Order {
        id: Uuid::now_v7(),
        customer: customer.id,
        from: customer_wallet.id,
        to: shop_wallet.id,
        total: Amount::tokens(30)?,
    };
    match place_order(db, &ledger, &affordable).await? {
        Placed::Paid(applied) => println!(
            "order {} paid: {} FODI by transfer {} (replayed: {}), committed with the order row",
            affordable.id,
            fodi(applied.transfer.amount.units()),
            applied.transfer.id,
            applied.replayed
        ),
        Placed::Refused { refusal, .. } => {
            anyhow::bail!("order {} was refused: {refusal}", affordable.id)
        }
    }
    let (row, payment) = stored(db, &ledger, &affordable).await?;
    anyhow::ensure!(
        row && payment,
        "paid order {}: order row present {row}, payment present {payment}",
        affordable.id
    );
    anyhow::ensure!(balance(&ledger, customer_wallet.id).await? == Amount::tokens(70)?.units());
    anyhow::ensure!(balance(&ledger, shop_wallet.id).await? == Amount::tokens(30)?.units());

    // 5. An order the customer cannot pay: the refusal rolls the order row back with it.
    let too_dear = Order {
        id: Uuid::now_v7(),
        total: Amount::tokens(500)?,
        ..affordable
    };
    match place_order(db, &ledger, &too_dear).await? {
        Placed::Refused {
            refusal,
            usable_after_refusal,
        } => {
            println!("order {} refused: {refusal}", too_dear.id);
            println!(
                "  after the refusal the transaction was {}; rolled back",
                if usable_after_refusal {
                    "still usable (its order row visible in it)"
                } else {
                    "aborted"
                }
            );
            anyhow::ensure!(
                usable_after_refusal,
                "a refused transfer aborted the caller's transaction"
            );
        }
        Placed::Paid(applied) => anyhow::bail!(
            "order {} was paid with {} units the customer does not have",
            too_dear.id,
            applied.transfer.amount.units()
        ),
    }
    let (row, payment) = stored(db, &ledger, &too_dear).await?;
    anyhow::ensure!(
        !row && !payment,
        "refused order {}: order row left {row}, payment left {payment}",
        too_dear.id
    );
    anyhow::ensure!(balance(&ledger, customer_wallet.id).await? == Amount::tokens(70)?.units());
    println!(
        "  no order row and no transfer left; the customer still holds {} FODI",
        fodi(balance(&ledger, customer_wallet.id).await?)
    );

    // 6. The other crates of the host, and the ledger's own check.
    ai.cache()
        .set(
            customer.id,
            "last_order",
            &json!({"order": affordable.id}),
            Ttl::Default,
        )
        .await?;
    recorder
        .record_event(
            Event::new("order_placed")
                .user(customer.id.as_uuid())
                .properties(json!({"total_units": affordable.total.units()})),
        )
        .await?;
    let report = ledger.check_invariants().await?;
    anyhow::ensure!(
        report.is_ok(),
        "ledger invariants violated: {:?}",
        report.violations
    );
    println!("ledger invariants hold");

    // 7. Shutdown, in order; the caller closes the Db last.
    let recorded = recorder.close().await;
    let hits = ai.shutdown().await?;
    ledger.shutdown().await;
    println!(
        "stopped: recorder wrote {} rows (lost {}), cache wrote {hits} hit counts, ledger connections closed",
        recorded.written, recorded.lost
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty());
    let (db, test_db) = match url {
        Some(url) => (Db::connect(&DbConfig::with_url(url)).await?, None),
        None => {
            let test_db = TestDb::empty().await;
            let db = Db::connect(&DbConfig::with_url(test_db.url())).await?;
            (db, Some(test_db))
        }
    };
    let outcome = run(&db).await;
    db.close().await;
    if let Some(test_db) = test_db {
        test_db.close().await;
    }
    outcome
}
