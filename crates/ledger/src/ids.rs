//! Identifiers: UUIDs wrapped so a wallet id cannot be passed where a transfer id belongs.
//!
//! New ids are UUIDv7 (time-ordered), which keeps inserts at the right edge of the primary
//! key indexes. Clients may choose their own transfer ids: that is what makes a retried
//! request recognisable.

use db_core::uuid_id;

uuid_id!(
    /// A wallet: one owner (a user or a system role) and one asset.
    WalletId
);
uuid_id!(
    /// A transfer, chosen by the client: the same id is never applied twice.
    TransferId
);
uuid_id!(
    /// A non-fungible token.
    NftId
);
uuid_id!(
    /// One movement of an NFT (mint, transfer or burn), chosen by the client.
    NftTransferId
);
/// A user of the core backend (`public.users.id`).
pub use db_core::UserId;

impl TransferId {
    /// The transfer an idempotency key names for one caller (an HTTP `Idempotency-Key` sent
    /// by the service or user named `caller`): a UUIDv5 of both, so that the same key from
    /// the same caller always names the same transfer, and two callers' keys never collide.
    /// A key is 1 to 255 characters, white space around it ignored.
    pub fn from_idempotency_key(caller: &str, key: &str) -> Result<Self, crate::LedgerError> {
        let key = key.trim();
        if key.is_empty() || key.len() > 255 {
            return Err(crate::LedgerError::InvalidField {
                field: "idempotency_key",
                reason: "must be 1 to 255 characters".into(),
            });
        }
        // The caller's length first, so ("a", "b:c") and ("a:b", "c") cannot collide.
        let scoped = format!("{}:{caller}:{key}", caller.len());
        Ok(Self(uuid::Uuid::new_v5(
            &namespaces::IDEMPOTENCY_KEY,
            scoped.as_bytes(),
        )))
    }

    /// Whether the id is of the kind the ledger derives (UUIDv5: rewards, hold expiries,
    /// idempotency keys). A client choosing such an id could claim one the ledger will need
    /// (a reward's, before it is paid), so a service exposed to clients refuses them.
    pub fn is_derived(&self) -> bool {
        self.0.get_version_num() == 5
    }

    /// An id a client chose, refused when it is of the kind the ledger derives (see
    /// [`is_derived`](Self::is_derived)): what a service exposed to clients accepts as a
    /// transfer's id.
    pub fn chosen(id: uuid::Uuid) -> Result<Self, crate::LedgerError> {
        let id = Self(id);
        if id.is_derived() {
            return Err(crate::LedgerError::InvalidField {
                field: "id",
                reason:
                    "version-5 UUIDs are reserved for ids the ledger derives; choose a v4 or v7"
                        .into(),
            });
        }
        Ok(id)
    }
}

/// Namespaces of the ids this crate derives (UUIDv5), so that the same fact always yields the
/// same id: a reward for `(user, reason, reference)`, the expiry of a pending transfer, a
/// transfer named by an idempotency key.
pub(crate) mod namespaces {
    use uuid::Uuid;

    pub const REWARD: Uuid = Uuid::from_u128(0x6f0d_1a9e_52c4_4b4f_9a57_3c1e_7f20_0001);
    pub const EXPIRY: Uuid = Uuid::from_u128(0x6f0d_1a9e_52c4_4b4f_9a57_3c1e_7f20_0002);
    pub const IDEMPOTENCY_KEY: Uuid = Uuid::from_u128(0x6f64_695f_6c65_6467_6572_5f69_6b65_7931);
}

#[cfg(test)]
mod tests {
    use super::TransferId;

    #[test]
    fn an_idempotency_key_names_one_transfer_per_caller() {
        let once = TransferId::from_idempotency_key("go-backend", "order-42/payment").unwrap();
        assert!(once.is_derived());
        assert_eq!(
            TransferId::from_idempotency_key("go-backend", " order-42/payment ").unwrap(),
            once
        );
        assert_ne!(
            TransferId::from_idempotency_key("go-backend", "order-43/payment").unwrap(),
            once
        );
        assert_ne!(
            TransferId::from_idempotency_key("other", "order-42/payment").unwrap(),
            once
        );
        // A UUID key is a key like any other: it names the caller's transfer, not that id.
        let uuid = "0193a5c4-7a2e-7c61-9f0e-3d5b2a1c4e8f";
        assert_ne!(
            TransferId::from_idempotency_key("go-backend", uuid)
                .unwrap()
                .to_string(),
            uuid
        );
        for refused in ["", "   ", &"k".repeat(256)] {
            assert!(
                TransferId::from_idempotency_key("go-backend", refused).is_err(),
                "{refused:?}"
            );
        }
        assert!(!TransferId::new().is_derived());
    }

    #[test]
    fn a_client_may_not_choose_an_id_the_ledger_derives() {
        let derived = TransferId::from_idempotency_key("go-backend", "k").unwrap();
        assert!(matches!(
            TransferId::chosen(derived.0),
            Err(crate::LedgerError::InvalidField { field: "id", .. })
        ));
        let random = uuid::Uuid::new_v4();
        assert_eq!(TransferId::chosen(random).unwrap(), TransferId(random));
        let ordered = uuid::Uuid::now_v7();
        assert_eq!(TransferId::chosen(ordered).unwrap(), TransferId(ordered));
    }
}
