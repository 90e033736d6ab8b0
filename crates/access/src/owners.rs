//! Who owns a wallet, cached: a wallet's owner never changes, and checking it must not cost
//! every transfer a query.

use std::sync::Arc;

use ledger::{Ledger, LedgerError, WalletId, WalletOwner};

/// Most wallets' owners kept.
const CAPACITY: u64 = 1_000_000;

#[derive(Clone)]
pub struct WalletOwners {
    ledger: Arc<dyn Ledger>,
    cache: moka::future::Cache<WalletId, WalletOwner>,
}

impl WalletOwners {
    pub fn new(ledger: Arc<dyn Ledger>) -> Self {
        Self {
            ledger,
            cache: moka::future::Cache::new(CAPACITY),
        }
    }

    /// The owner of `wallet`; [`LedgerError::WalletNotFound`] when there is no such wallet.
    pub async fn owner(&self, wallet: WalletId) -> Result<WalletOwner, LedgerError> {
        if let Some(owner) = self.cache.get(&wallet).await {
            return Ok(owner);
        }
        let owner = self.ledger.wallet(wallet).await?.owner;
        self.cache.insert(wallet, owner).await;
        Ok(owner)
    }
}
