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

/// Namespaces of the ids this crate derives (UUIDv5), so that the same fact always yields the
/// same id: a reward for `(user, reason, reference)`, the expiry of a pending transfer.
pub(crate) mod namespaces {
    use uuid::Uuid;

    pub const REWARD: Uuid = Uuid::from_u128(0x6f0d_1a9e_52c4_4b4f_9a57_3c1e_7f20_0001);
    pub const EXPIRY: Uuid = Uuid::from_u128(0x6f0d_1a9e_52c4_4b4f_9a57_3c1e_7f20_0002);
}
