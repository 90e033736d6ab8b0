//! The PostgreSQL implementation of [`Ledger`].

pub(crate) mod engine;
#[cfg(test)]
mod explain;
pub mod feed;
pub(crate) mod history;
#[cfg(test)]
mod history_bounds;
pub mod invariants;
pub mod issuance;
pub mod nfts;
pub mod rewards;
pub(crate) mod rows;
mod wallets;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use db_core::{Db, DirectPool, Ended, RetryPolicy, with_retry};
use sqlx::{AssertSqlSafe, PgConnection};

use crate::amount::Asset;
use crate::api::Ledger;
use crate::error::LedgerError;
use crate::ids::{NftId, TransferId, UserId, WalletId};
use crate::model::{
    Applied, BatchMode, FeedPage, InvariantReport, Issuance, MintNft, MoveNft, Nft, NftMovement,
    Position, Reward, RewardRequest, Statement, SystemWallet, Transfer, TransferRequest, Wallet,
};
use crate::seal::{self, Block, ChainVerification};
use rows::{TRANSFER_COLUMNS, TransferRow};

/// Runs `$body` (an expression using the connection `$connection`) in a transaction of its
/// own, retrying the whole transaction when that may succeed.
///
/// A macro rather than a function taking an async closure: the futures of `#[async_trait]`
/// methods must be `Send`, which the compiler cannot yet prove through a closure that borrows
/// its argument for any lifetime.
macro_rules! in_transaction {
    ($ledger:expr, |$connection:ident| $body:expr) => {
        with_retry(&$ledger.config.retry, || async {
            let mut transaction = $ledger.db.begin().await?;
            let $connection: &mut PgConnection = &mut transaction;
            let value = $body.await?;
            transaction.commit().await?;
            Ok(value)
        })
        .await
    };
}

/// Runs `$body` on a pooled connection (one read, or one self-contained statement) as one
/// [`db_core::Unit`], retrying when that may succeed.
macro_rules! on_connection {
    ($ledger:expr, |$connection:ident| $body:expr) => {
        on_connection!($ledger, $ledger.db.primary(), |$connection| $body)
    };
    ($ledger:expr, $pool:expr, |$connection:ident| $body:expr) => {
        with_retry(&$ledger.config.retry, || async {
            let mut unit = $ledger.db.unit($pool).await?;
            let $connection: &mut PgConnection = &mut unit;
            let value = $body.await?;
            unit.finish().await?;
            Ok::<_, LedgerError>(value)
        })
        .await
    };
}

pub use engine::MAX_BATCH;
pub use history::{CHECKPOINT_EVERY, MAX_PAGE};

/// Settings of the ledger. A binary embeds it in its own configuration (it deserialises,
/// every field optional) and calls [`LedgerConfig::validate`] before starting the ledger.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// The assets that exist (codes such as `FODI`): wallets, rewards and issuance of any other
    /// are refused with [`LedgerError::UnknownAsset`].
    pub assets: Vec<String>,
    /// Balance rows of each new system wallet. More shards let more transfers touch a system
    /// wallet at once; reading its balance sums them.
    pub system_wallet_shards: i16,
    /// Retries of serialisation failures and of races between identical requests.
    pub retry: RetryPolicy,
    /// Most transfers one sealed block covers.
    pub block_size: u32,
    /// Connections that submit transfers (see [`db_core::DirectPool`]: no ping on release).
    pub engine_connections: usize,
}

impl LedgerConfig {
    /// Refuses what the ledger cannot work with.
    pub fn validate(&self) -> Result<(), db_core::settings::InvalidSetting> {
        use db_core::settings::{InvalidSetting, at_least_one};
        if self.assets.is_empty() {
            return Err(InvalidSetting::new("assets", "name at least one asset"));
        }
        for code in &self.assets {
            Asset::new(code).map_err(|_| {
                InvalidSetting::new("assets", "2 to 16 of A-Z and 0-9, starting with a letter")
            })?;
        }
        if !(1..=64).contains(&self.system_wallet_shards) {
            return Err(InvalidSetting::new(
                "system_wallet_shards",
                "must be 1 to 64 (the schema's wallets_shard_count_range)",
            ));
        }
        at_least_one("block_size", u64::from(self.block_size))?;
        at_least_one("engine_connections", self.engine_connections as u64)?;
        self.retry.validate().map_err(|error| error.within("retry"))
    }
}

impl LedgerConfig {
    /// `Ok` for an asset this ledger holds (see [`LedgerConfig::assets`]).
    pub fn check_asset(&self, asset: &Asset) -> Result<(), LedgerError> {
        if self.assets.iter().any(|code| code == asset.code()) {
            Ok(())
        } else {
            Err(LedgerError::UnknownAsset {
                code: asset.code().to_owned(),
                configured: self.assets.join(", "),
            })
        }
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            assets: vec![Asset::fodi().code().to_owned()],
            system_wallet_shards: 16,
            retry: RetryPolicy::default(),
            block_size: 10_000,
            engine_connections: 16,
        }
    }
}

/// The ledger on PostgreSQL (schema `blockchain`, migrated by [`crate::migration_set`]).
#[derive(Debug, Clone)]
pub struct PgLedger {
    db: Db,
    /// Connections for submitting transfers: one statement each, the hottest path.
    engine: DirectPool,
    config: LedgerConfig,
}

impl PgLedger {
    pub fn new(db: Db, config: LedgerConfig) -> Self {
        let engine = DirectPool::on(&db, config.engine_connections, &[]);
        Self { db, engine, config }
    }

    /// The engine's own connections now (`ledger.engine_connections` at most).
    pub fn engine_usage(&self) -> db_core::PoolUsage {
        self.engine.usage()
    }

    /// Closes the ledger's own connections gracefully once their transfers are done (the
    /// [`Db`] pools are the owner's to close). Transfers submitted afterwards fail with
    /// [`db_core::DbError::PoolClosed`].
    pub async fn shutdown(&self) {
        self.engine.shutdown().await;
    }

    /// Submits on an engine connection: one statement, a transaction of its own.
    async fn submit_on_engine(
        &self,
        requests: &[TransferRequest],
        mode: BatchMode,
    ) -> Result<Vec<Result<Applied, LedgerError>>, LedgerError> {
        let results = with_retry(&self.config.retry, || async {
            let mut connection = self.engine.acquire().await?;
            let mut scope = connection.scope().await?;
            let results = engine::submit(&mut scope, requests, mode).await;
            // A statement the server answered, even with an error, leaves the connection
            // ready; anything else (a broken socket) closes it.
            let ended = Ended::of(&results, |error| match error {
                LedgerError::Db(error) => error.sqlstate().is_some(),
                _ => true,
            });
            if scope.end(ended).await? {
                connection.release();
            }
            results
        })
        .await;
        crate::metrics::count_transfers(requests.len(), &results);
        results
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// The ledger's writes on a connection of the caller, typically inside its transaction:
    /// they commit or roll back with the caller's own statements. No retries happen here; a
    /// retryable error ([`db_core::RetryableError`]) means: roll back and run it all again.
    pub fn on<'c>(&'c self, connection: &'c mut PgConnection) -> LedgerConn<'c> {
        LedgerConn {
            connection,
            config: &self.config,
        }
    }
}

/// The ledger's operations on one connection (see [`PgLedger::on`]): those of [`Ledger`]
/// except the integrity jobs (`check_invariants`, sealing, `verify_chain`), which need a
/// snapshot or a lock of their own. A refusal the engine decides (insufficient funds,
/// a closed wallet, ...) leaves the caller's transaction usable; an error the database raised
/// ([`LedgerError::Db`], or a foreign key turned into `UserNotFound`) has aborted it.
pub struct LedgerConn<'c> {
    connection: &'c mut PgConnection,
    config: &'c LedgerConfig,
}

impl LedgerConn<'_> {
    pub async fn open_user_wallet(
        &mut self,
        user: UserId,
        asset: &Asset,
    ) -> Result<Wallet, LedgerError> {
        self.config.check_asset(asset)?;
        wallets::open_user_wallet(self.connection, user, asset).await
    }

    pub async fn system_wallet(
        &mut self,
        kind: SystemWallet,
        asset: &Asset,
    ) -> Result<Wallet, LedgerError> {
        self.config.check_asset(asset)?;
        wallets::system_wallet(
            self.connection,
            kind,
            asset,
            self.config.system_wallet_shards,
        )
        .await
    }

    pub async fn wallet(&mut self, id: WalletId) -> Result<Wallet, LedgerError> {
        wallets::wallet(self.connection, id).await
    }

    pub async fn transfer(&mut self, request: &TransferRequest) -> Result<Applied, LedgerError> {
        single(
            self.submit(std::slice::from_ref(request), BatchMode::Linked)
                .await?,
        )
    }

    pub async fn submit(
        &mut self,
        requests: &[TransferRequest],
        mode: BatchMode,
    ) -> Result<Vec<Result<Applied, LedgerError>>, LedgerError> {
        // Not counted: the caller's transaction may still roll back.
        engine::submit(self.connection, requests, mode).await
    }

    pub async fn pay_reward(&mut self, request: &RewardRequest) -> Result<Reward, LedgerError> {
        self.config.check_asset(&request.asset)?;
        rewards::pay(self.connection, request, self.config.system_wallet_shards).await
    }

    /// See [`Ledger::issue`].
    pub async fn issue(&mut self, request: &Issuance) -> Result<Applied, LedgerError> {
        issuance::issue(self.connection, request, self.config).await
    }

    pub async fn mint_nft(&mut self, request: &MintNft) -> Result<Nft, LedgerError> {
        nfts::mint(self.connection, request).await
    }

    pub async fn move_nft(&mut self, request: &MoveNft) -> Result<Nft, LedgerError> {
        nfts::move_nft(self.connection, request).await
    }

    /// Saves a change-feed position together with the caller's own work.
    pub async fn save_feed_cursor(
        &mut self,
        consumer: &str,
        position: Position,
    ) -> Result<(), LedgerError> {
        feed::save_cursor(self.connection, consumer, position).await
    }

    pub async fn user_wallets(&mut self, user: UserId) -> Result<Vec<Wallet>, LedgerError> {
        wallets::user_wallets(self.connection, user).await
    }

    /// See [`Ledger::set_min_balance`]; the balance row stays locked until the caller's
    /// transaction ends.
    pub async fn set_min_balance(
        &mut self,
        wallet: WalletId,
        min_balance: Option<i64>,
    ) -> Result<Wallet, LedgerError> {
        wallets::set_min_balance(self.connection, wallet, min_balance).await
    }

    /// See [`Ledger::close_wallet`]; the balance rows stay locked until the caller's
    /// transaction ends.
    pub async fn close_wallet(&mut self, wallet: WalletId) -> Result<Wallet, LedgerError> {
        wallets::close_wallet(self.connection, wallet).await
    }

    /// A transfer as the caller's transaction sees it (its own uncommitted ones included).
    pub async fn get_transfer(&mut self, id: TransferId) -> Result<Option<Transfer>, LedgerError> {
        transfer_by_id(self.connection, id).await
    }

    pub async fn expire_holds(&mut self, limit: u32) -> Result<usize, LedgerError> {
        expire_due_holds(self.connection, limit).await
    }

    pub async fn statement(
        &mut self,
        wallet: WalletId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Statement, LedgerError> {
        history::statement(self.connection, wallet, before, limit).await
    }

    pub async fn balance_at(
        &mut self,
        wallet: WalletId,
        at: DateTime<Utc>,
    ) -> Result<i64, LedgerError> {
        history::balance_at(self.connection, wallet, at).await
    }

    pub async fn rewards_of(
        &mut self,
        user: UserId,
        limit: u32,
    ) -> Result<Vec<Reward>, LedgerError> {
        rewards::rewards_of(self.connection, user, limit).await
    }

    pub async fn nft(&mut self, id: NftId) -> Result<Nft, LedgerError> {
        nfts::nft(self.connection, id).await
    }

    pub async fn nfts_of(&mut self, owner: UserId) -> Result<Vec<Nft>, LedgerError> {
        nfts::nfts_of(self.connection, owner).await
    }

    pub async fn nft_history(&mut self, id: NftId) -> Result<Vec<NftMovement>, LedgerError> {
        nfts::history(self.connection, id).await
    }

    /// See [`Ledger::changes_after`]. A position is final only below the oldest transaction
    /// that writes anywhere in the cluster, the caller's own included: read, process and
    /// [`save_feed_cursor`](Self::save_feed_cursor) in one short transaction.
    pub async fn changes_after(
        &mut self,
        after: Position,
        limit: u32,
    ) -> Result<FeedPage, LedgerError> {
        feed::changes_after(self.connection, after, limit).await
    }

    pub async fn feed_head(&mut self) -> Result<Position, LedgerError> {
        feed::head(self.connection).await
    }

    pub async fn feed_cursor(&mut self, consumer: &str) -> Result<Position, LedgerError> {
        feed::cursor(self.connection, consumer).await
    }

    pub async fn blocks(
        &mut self,
        from_height: i64,
        limit: u32,
    ) -> Result<Vec<Block>, LedgerError> {
        seal::blocks(self.connection, from_height, limit).await
    }
}

pub(crate) fn single(
    mut results: Vec<Result<Applied, LedgerError>>,
) -> Result<Applied, LedgerError> {
    match (results.pop(), results.is_empty()) {
        (Some(result), true) => result,
        _ => Err(LedgerError::UnexpectedResult(
            "expected exactly one result".into(),
        )),
    }
}

#[async_trait]
impl Ledger for PgLedger {
    async fn open_user_wallet(&self, user: UserId, asset: &Asset) -> Result<Wallet, LedgerError> {
        self.config.check_asset(asset)?;
        on_connection!(self, |connection| wallets::open_user_wallet(
            connection, user, asset
        ))
    }

    async fn system_wallet(
        &self,
        kind: SystemWallet,
        asset: &Asset,
    ) -> Result<Wallet, LedgerError> {
        self.config.check_asset(asset)?;
        let shards = self.config.system_wallet_shards;
        in_transaction!(self, |connection| wallets::system_wallet(
            connection, kind, asset, shards
        ))
    }

    async fn wallet(&self, id: WalletId) -> Result<Wallet, LedgerError> {
        on_connection!(self, |connection| wallets::wallet(connection, id))
    }

    async fn user_wallets(&self, user: UserId) -> Result<Vec<Wallet>, LedgerError> {
        on_connection!(self, |connection| wallets::user_wallets(connection, user))
    }

    async fn set_min_balance(
        &self,
        wallet: WalletId,
        min_balance: Option<i64>,
    ) -> Result<Wallet, LedgerError> {
        in_transaction!(self, |connection| wallets::set_min_balance(
            connection,
            wallet,
            min_balance
        ))
    }

    async fn close_wallet(&self, wallet: WalletId) -> Result<Wallet, LedgerError> {
        in_transaction!(self, |connection| wallets::close_wallet(connection, wallet))
    }

    async fn transfer(&self, request: TransferRequest) -> Result<Applied, LedgerError> {
        single(
            self.submit_on_engine(std::slice::from_ref(&request), BatchMode::Linked)
                .await?,
        )
    }

    async fn submit(
        &self,
        requests: Vec<TransferRequest>,
        mode: BatchMode,
    ) -> Result<Vec<Result<Applied, LedgerError>>, LedgerError> {
        self.submit_on_engine(&requests, mode).await
    }

    async fn issue(&self, request: Issuance) -> Result<Applied, LedgerError> {
        let config = &self.config;
        in_transaction!(self, |connection| issuance::issue(
            connection, &request, config
        ))
    }

    async fn get_transfer(&self, id: TransferId) -> Result<Option<Transfer>, LedgerError> {
        on_connection!(self, |connection| transfer_by_id(connection, id))
    }

    async fn expire_holds(&self, limit: u32) -> Result<usize, LedgerError> {
        let expired = on_connection!(self, |connection| expire_due_holds(connection, limit))?;
        crate::metrics::count_expired_holds(expired);
        Ok(expired)
    }

    async fn settle_history(&self, max_seqs: u32) -> Result<u64, LedgerError> {
        /// Steps of one call, each a unit of its own.
        const STEPS: u32 = 10;
        let mut settled = 0;
        for _ in 0..STEPS {
            let step = on_connection!(self, |connection| history::settle_step(
                connection, max_seqs
            ))?;
            if step == 0 {
                break;
            }
            settled += step;
        }
        Ok(settled)
    }

    async fn statement(
        &self,
        wallet: WalletId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Statement, LedgerError> {
        // On the primary: a page must show the caller's own transfers, and the next page must
        // continue it (a deeper page's entries may be only milliseconds older than the first's).
        on_connection!(self, |connection| history::statement(
            connection, wallet, before, limit
        ))
    }

    async fn balance_at(&self, wallet: WalletId, at: DateTime<Utc>) -> Result<i64, LedgerError> {
        // A moment the replica surely holds (older than its bound) is read there.
        let age = (Utc::now() - at).to_std().unwrap_or_default();
        let pool = self.db.read_as_of(age);
        let read = on_connection!(self, pool, |connection| {
            history::balance_at(connection, wallet, at)
        });
        match read {
            // The replica holds the moment, but a wallet opened since may not have reached it.
            Err(LedgerError::WalletNotFound(_)) if !std::ptr::eq(pool, self.db.primary()) => {
                on_connection!(self, |connection| history::balance_at(
                    connection, wallet, at
                ))
            }
            read => read,
        }
    }

    async fn pay_reward(&self, request: RewardRequest) -> Result<Reward, LedgerError> {
        self.config.check_asset(&request.asset)?;
        let shards = self.config.system_wallet_shards;
        in_transaction!(self, |connection| rewards::pay(
            connection, &request, shards
        ))
    }

    async fn rewards_of(&self, user: UserId, limit: u32) -> Result<Vec<Reward>, LedgerError> {
        on_connection!(self, |connection| rewards::rewards_of(
            connection, user, limit
        ))
    }

    async fn mint_nft(&self, request: MintNft) -> Result<Nft, LedgerError> {
        in_transaction!(self, |connection| nfts::mint(connection, &request))
    }

    async fn move_nft(&self, request: MoveNft) -> Result<Nft, LedgerError> {
        in_transaction!(self, |connection| nfts::move_nft(connection, &request))
    }

    async fn nft(&self, id: NftId) -> Result<Nft, LedgerError> {
        on_connection!(self, |connection| nfts::nft(connection, id))
    }

    async fn nfts_of(&self, owner: UserId) -> Result<Vec<Nft>, LedgerError> {
        on_connection!(self, |connection| nfts::nfts_of(connection, owner))
    }

    async fn nft_history(&self, id: NftId) -> Result<Vec<NftMovement>, LedgerError> {
        on_connection!(self, |connection| nfts::history(connection, id))
    }

    async fn check_invariants(&self) -> Result<InvariantReport, LedgerError> {
        // Each of these three sets its snapshot's isolation first: a transaction of its own.
        in_transaction!(self, |connection| invariants::check(connection))
    }

    async fn seal_status(&self) -> Result<crate::SealStatus, LedgerError> {
        on_connection!(self, |connection| seal::status(connection))
    }

    async fn seal_next_block(&self) -> Result<Option<Block>, LedgerError> {
        let block_size = self.config.block_size;
        on_connection!(self, |connection| seal::seal_next(connection, block_size))
    }

    async fn blocks(&self, from_height: i64, limit: u32) -> Result<Vec<Block>, LedgerError> {
        on_connection!(self, |connection| seal::blocks(
            connection,
            from_height,
            limit
        ))
    }

    async fn inclusion_proof(
        &self,
        id: TransferId,
        pinned_height: Option<i64>,
    ) -> Result<Option<seal::proof::InclusionProof>, LedgerError> {
        in_transaction!(self, |connection| seal::inclusion_proof(
            connection,
            id,
            pinned_height
        ))
    }

    async fn verify_blocks(
        &self,
        from_height: i64,
        to_height: Option<i64>,
    ) -> Result<ChainVerification, LedgerError> {
        in_transaction!(self, |connection| seal::verify(
            connection,
            from_height,
            to_height
        ))
    }

    async fn changes_after(&self, after: Position, limit: u32) -> Result<FeedPage, LedgerError> {
        on_connection!(self, |connection| feed::changes_after(
            connection, after, limit
        ))
    }

    async fn feed_head(&self) -> Result<Position, LedgerError> {
        on_connection!(self, |connection| feed::head(connection))
    }

    async fn feed_cursor(&self, consumer: &str) -> Result<Position, LedgerError> {
        on_connection!(self, |connection| feed::cursor(connection, consumer))
    }

    async fn save_feed_cursor(
        &self,
        consumer: &str,
        position: Position,
    ) -> Result<(), LedgerError> {
        on_connection!(self, |connection| feed::save_cursor(
            connection, consumer, position
        ))
    }
}

async fn transfer_by_id(
    connection: &mut PgConnection,
    id: TransferId,
) -> Result<Option<Transfer>, LedgerError> {
    let row: Option<TransferRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {TRANSFER_COLUMNS} FROM blockchain.fodi_transactions t WHERE t.id = $1"
    )))
    .bind(id.as_uuid())
    .fetch_optional(connection)
    .await?;
    row.map(Transfer::try_from).transpose()
}

/// Expires up to `limit` holds whose time has come. Each expiry has an id derived from its
/// hold, so concurrent sweepers cannot expire a hold twice (nor would the engine let them).
async fn expire_due_holds(connection: &mut PgConnection, limit: u32) -> Result<usize, LedgerError> {
    let due: Vec<uuid::Uuid> = sqlx::query_scalar(DUE_HOLDS_SQL)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&mut *connection)
        .await?;
    let due: Vec<TransferId> = due.into_iter().map(TransferId).collect();
    engine::expire_holds(connection, &due).await
}

/// Holds whose time has come, oldest first ($1 limit).
pub(crate) const DUE_HOLDS_SQL: &str = "SELECT pending_id FROM blockchain.pending_holds WHERE expires_at <= now() ORDER BY expires_at LIMIT $1";
