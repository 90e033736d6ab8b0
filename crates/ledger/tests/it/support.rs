//! A ledger on a fresh database, with helpers to make users and funded wallets.

use db_core::migrate::core_set;
use db_core::testing::TestDb;
use ledger::{
    Amount, Asset, Issuance, Ledger, LedgerConfig, PgLedger, SystemWallet, TransferRequest, UserId,
    Wallet,
};

pub struct Fixture {
    pub db: TestDb,
    pub ledger: PgLedger,
    pub issuer: Wallet,
}

impl Fixture {
    /// A ledger of two assets, FODI and GEM.
    pub async fn new() -> Self {
        Self::with_config(LedgerConfig {
            assets: vec!["FODI".into(), "GEM".into()],
            ..LedgerConfig::default()
        })
        .await
    }

    pub async fn with_config(config: LedgerConfig) -> Self {
        let db = TestDb::new(vec![core_set(), ledger::migration_set()]).await;
        let ledger = PgLedger::new(db.db(), config);
        let issuer = ledger
            .system_wallet(SystemWallet::Issuer, &Asset::fodi())
            .await
            .unwrap();
        Self { db, ledger, issuer }
    }

    /// A new user of the core backend.
    pub async fn user(&self) -> UserId {
        self.db.user().await
    }

    /// A new user's FODI wallet holding `units`, minted from the issuer.
    pub async fn funded(&self, units: i64) -> Wallet {
        let user = self.user().await;
        let wallet = self
            .ledger
            .open_user_wallet(user, &Asset::fodi())
            .await
            .unwrap();
        if units > 0 {
            self.ledger
                .transfer(TransferRequest::transfer(
                    self.issuer.id,
                    wallet.id,
                    Amount::new(units).unwrap(),
                ))
                .await
                .unwrap();
        }
        self.ledger.wallet(wallet.id).await.unwrap()
    }

    /// The FODI rewards pool, with `units` more issued to it.
    pub async fn funded_pool(&self, units: i64) -> Wallet {
        let pool = self
            .ledger
            .system_wallet(SystemWallet::RewardsPool, &Asset::fodi())
            .await
            .unwrap();
        self.ledger
            .issue(Issuance::new(pool.id, Amount::new(units).unwrap()))
            .await
            .unwrap();
        self.ledger.wallet(pool.id).await.unwrap()
    }

    pub async fn balance(&self, wallet: &Wallet) -> i64 {
        self.ledger.wallet(wallet.id).await.unwrap().posted
    }

    /// Fails the test with the violations if any invariant does not hold.
    pub async fn assert_invariants(&self) {
        let report = self.ledger.check_invariants().await.unwrap();
        assert!(
            report.is_ok(),
            "ledger invariants violated: {:#?}",
            report.violations
        );
    }
}

pub fn units(units: i64) -> Amount {
    Amount::new(units).unwrap()
}
