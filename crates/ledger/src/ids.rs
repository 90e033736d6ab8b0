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
    /// The transfer an idempotency key names (an HTTP `Idempotency-Key`): the key itself when
    /// it is a UUID, else a UUIDv5 of its text, so that the same key always names the same
    /// transfer. A key is 1 to 255 characters, white space around it ignored.
    pub fn from_idempotency_key(key: &str) -> Result<Self, crate::LedgerError> {
        let key = key.trim();
        if key.is_empty() || key.len() > 255 {
            return Err(crate::LedgerError::InvalidField {
                field: "idempotency_key",
                reason: "must be 1 to 255 characters".into(),
            });
        }
        Ok(Self(uuid::Uuid::parse_str(key).unwrap_or_else(|_| {
            uuid::Uuid::new_v5(&namespaces::IDEMPOTENCY_KEY, key.as_bytes())
        })))
    }
}

/// Namespaces of the ids this crate derives (UUIDv5), so that the same fact always yields the
/// same id: a reward for `(user, reason, reference)`, the expiry of a pending transfer, a
/// transfer named by an idempotency key.
pub(crate) mod namespaces {
    use uuid::Uuid;

    pub const REWARD: Uuid = Uuid::from_u128(0x6f0d_1a9e_52c4_4b4f_9a57_3c1e_7f20_0001);
    pub const EXPIRY: Uuid = Uuid::from_u128(0x6f0d_1a9e_52c4_4b4f_9a57_3c1e_7f20_0002);
    /// The namespace the api-server used before the ledger owned the rule: the same keys
    /// still name the same transfers.
    pub const IDEMPOTENCY_KEY: Uuid = Uuid::from_u128(0x6f64_695f_6c65_6467_6572_5f69_6b65_7931);
}

#[cfg(test)]
mod tests {
    use super::TransferId;

    #[test]
    fn an_idempotency_key_names_one_transfer() {
        let uuid = "0193a5c4-7a2e-7c61-9f0e-3d5b2a1c4e8f";
        assert_eq!(
            TransferId::from_idempotency_key(uuid).unwrap().to_string(),
            uuid
        );
        let once = TransferId::from_idempotency_key("order-42/payment").unwrap();
        assert_eq!(
            TransferId::from_idempotency_key(" order-42/payment ").unwrap(),
            once
        );
        assert_ne!(
            TransferId::from_idempotency_key("order-43/payment").unwrap(),
            once
        );
        for refused in ["", "   ", &"k".repeat(256)] {
            assert!(
                TransferId::from_idempotency_key(refused).is_err(),
                "{refused:?}"
            );
        }
    }
}
