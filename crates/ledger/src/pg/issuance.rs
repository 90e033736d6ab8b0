//! Issuance: the one way money comes into being. The asset's issuer, the only unbounded
//! wallet, pays a wallet (typically the rewards pool); everything else only moves what was
//! issued. A sharded target has its free funds spread over its shards afterwards, so that
//! each shard, bounded on its own, can spend its part.

use sqlx::PgConnection;

use super::{LedgerConfig, engine, single, wallets};
use crate::error::LedgerError;
use crate::model::{Applied, Issuance, SystemWallet, TransferRequest, WalletOwner};

/// The reason every issuance transfer carries.
pub const ISSUANCE_REASON: &str = "issuance";

/// Issues `request`, or replays it; several statements, so `connection` should be in a
/// transaction.
pub(crate) async fn issue(
    connection: &mut PgConnection,
    request: &Issuance,
    config: &LedgerConfig,
) -> Result<Applied, LedgerError> {
    let issuer_shards = config.system_wallet_shards;
    let target = wallets::wallet(connection, request.to).await?;
    config.check_asset(&target.asset)?;
    if target.owner == WalletOwner::System(SystemWallet::Issuer) {
        return Err(LedgerError::InvalidField {
            field: "to",
            reason: "the issuer cannot issue to itself".into(),
        });
    }
    let issuer = wallets::system_wallet_id(
        connection,
        SystemWallet::Issuer,
        &target.asset,
        issuer_shards,
    )
    .await?;
    let mut transfer = TransferRequest::transfer(issuer, target.id, request.amount)
        .with_id(request.id)
        .with_reason(ISSUANCE_REASON);
    if let Some(reference) = &request.reference {
        transfer = transfer.with_reference(reference.clone());
    }
    if let Some(submitter) = &request.submitted_by {
        transfer = transfer.submitted_by(submitter.clone());
    }
    // Onto shard 0, whose lock the spreading below takes first: concurrent issuances to one
    // wallet then queue on one row instead of each holding a shard the other needs.
    let shard = (target.shard_count > 1).then_some(0);
    let applied = single(engine::submit_on_shard(connection, &[transfer], shard).await?)?;
    if !applied.replayed && target.shard_count > 1 {
        sqlx::query("SELECT blockchain.rebalance_shards($1)")
            .bind(target.id.as_uuid())
            .execute(connection)
            .await?;
    }
    Ok(applied)
}
