//! Users of `public.users`.

use chrono::{DateTime, Utc};
use db_core::{Db, DbError};
use serde::{Deserialize, Serialize};

use crate::{Email, UserError, UserId};

/// Longest display name, in characters.
const MAX_DISPLAY_NAME: usize = 200;

/// Creating and reading users.
#[async_trait::async_trait]
pub trait Users: Send + Sync {
    /// Creates a user; [`UserError::EmailTaken`] when the address is in use.
    async fn create(&self, user: &NewUser) -> Result<User, UserError>;

    /// A user by id; [`UserError::NotFound`] when there is none.
    async fn get(&self, id: UserId) -> Result<User, UserError>;
}

/// A user to create.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// An e-mail address, unique among users (see [`Email`]).
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 320,
            pattern = r"^[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]+@[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff]+$"
        )
    )]
    pub email: String,
    /// 1 to 200 characters.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub display_name: Option<String>,
}

impl NewUser {
    fn validate(&self) -> Result<Email, UserError> {
        let email = Email::parse(&self.email)?;
        if self
            .display_name
            .as_ref()
            .is_some_and(|name| name.is_empty() || name.chars().count() > MAX_DISPLAY_NAME)
        {
            return Err(UserError::InvalidField {
                field: "display_name",
                reason: "1 to 200 characters",
            });
        }
        Ok(email)
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// [`Users`] on PostgreSQL.
#[derive(Clone)]
pub struct PgUsers {
    db: Db,
}

impl PgUsers {
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl Users for PgUsers {
    async fn create(&self, user: &NewUser) -> Result<User, UserError> {
        let email = user.validate()?;
        let mut unit = self.db.unit(self.db.primary()).await?;
        let created = sqlx::query_as(
            "INSERT INTO public.users (email, display_name) VALUES ($1, $2)
             RETURNING id, email, display_name, created_at",
        )
        .bind(email.as_str())
        .bind(&user.display_name)
        .fetch_one(&mut *unit)
        .await
        .map_err(|error| match DbError::from(error) {
            DbError::UniqueViolation { .. } => UserError::EmailTaken,
            other => other.into(),
        })?;
        unit.finish().await?;
        Ok(created)
    }

    async fn get(&self, id: UserId) -> Result<User, UserError> {
        let on_replica = self.db.reads_from_replica();
        let found = self.find(self.db.read(), id).await?;
        // Not on a replica may mean not there yet: a user just created reads from the primary.
        let found = match found {
            None if on_replica => self.find(self.db.primary(), id).await?,
            found => found,
        };
        found.ok_or(UserError::NotFound(id))
    }
}

impl PgUsers {
    /// User `id` as `pool` (one of `self.db`'s) has it.
    async fn find(&self, pool: &sqlx::PgPool, id: UserId) -> Result<Option<User>, UserError> {
        let mut unit = self.db.unit(pool).await?;
        let found = sqlx::query_as(
            "SELECT id, email, display_name, created_at FROM public.users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *unit)
        .await
        .map_err(DbError::from)?;
        unit.finish().await?;
        Ok(found)
    }
}
