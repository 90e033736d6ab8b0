//! Identifiers: UUIDs wrapped so a conversation id cannot be passed where a user id belongs.

use db_core::uuid_id;

/// A user of the core backend (`public.users.id`): every row of schema `ai` belongs to one.
pub use db_core::UserId;
uuid_id!(
    /// A conversation between a user and the assistant.
    ConversationId
);
uuid_id!(
    /// A remembered fact about a user.
    FactId
);
uuid_id!(
    /// A recorded learning example.
    ExampleId
);
