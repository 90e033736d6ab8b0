//! Schema `public`, the core backend's, as far as this platform writes it: users (an
//! [`Email`] that parses, a display name), so that the api-server can run standalone. In
//! production the Go backend owns `public`; a deployment without the `core` migration set
//! does not serve these routes at all.
//!
//! Start at the [`Users`] trait and its implementation [`PgUsers`]. The `core` migration set
//! itself is embedded by `db-core` ([`migration_set`] returns it), because every data crate's
//! foreign keys reference `public.users` and their tests need it without depending on this
//! crate.
//!
//! Architecture invariant: the only Rust code that writes schema `public`; depends on
//! `db-core` only, never on HTTP or another domain crate.

mod email;
mod error;
mod users;

pub use db_core::UserId;
pub use email::{EMAIL_PATTERN, Email, MAX_EMAIL_CHARS};
pub use error::UserError;
pub use users::{NewUser, PgUsers, User, Users};

/// The `core` migration set (schema `public`), applied before every other set.
pub fn migration_set() -> db_core::migrate::MigrationSet {
    db_core::migrate::core_set()
}
