//! Typed identifiers for the data crates: a UUID wrapped so that one kind of id cannot be
//! passed where another belongs.

/// Declares `pub struct $name(pub Uuid)` with what a row id needs: new ids are UUIDv7
/// (time-ordered, so inserts stay at the right edge of a primary-key index), conversions from
/// and to `Uuid`, `Display`, serde as a bare UUID string, and sqlx encoding as `uuid`.
///
/// The calling crate depends on `serde`, `sqlx` and `uuid` itself (the derives name them), and
/// derives `utoipa::ToSchema` when it has a feature `openapi` that brings `utoipa`.
#[macro_export]
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize, sqlx::Type,
        )]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A new, time-ordered (v7) id.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<uuid::Uuid> for $name {
            fn from(id: uuid::Uuid) -> Self {
                Self(id)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A user of the core backend (`public.users.id`): the one user id every crate speaks, so a
    /// ledger wallet's owner and an AI conversation's user are the same type.
    UserId
);
