//! `/api/v1/users`: the minimal identity needed to run standalone (in production the core
//! backend owns `public.users`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use admin_api::Problem;
use chrono::{DateTime, Utc};
use db_core::{Db, DbError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::{CanRead, CanWrite};
use crate::api::body::Body;
use crate::api::errors;
use crate::openapi::ProblemDocument;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/api/v1/users", web::post().to(create))
        .route("/api/v1/users/{id}", web::get().to(get));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub email: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

type UserRow = (Uuid, String, Option<String>, DateTime<Utc>);

impl From<UserRow> for User {
    fn from((id, email, display_name, created_at): UserRow) -> Self {
        Self {
            id,
            email,
            display_name,
            created_at,
        }
    }
}

/// The schema's rule (`users_email_format`): one `@` between two non-empty parts, no spaces.
fn valid_email(email: &str) -> bool {
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && email.len() <= 320
        && !email.chars().any(char::is_whitespace)
}

fn invalid(field: &str, reason: &str) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-field",
        "A field is invalid",
    )
    .with_detail(format!("{field}: {reason}"))
}

/// Create a user
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = User), (status = 409, description = "e-mail taken", body = ProblemDocument, content_type = "application/problem+json"), (status = 422, body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn create(
    _: CanWrite,
    db: web::Data<Db>,
    Body(user): Body<NewUser>,
) -> Result<HttpResponse, Problem> {
    let email = user.email.trim();
    if !valid_email(email) {
        return Err(invalid("email", "must be an e-mail address"));
    }
    if user
        .display_name
        .as_ref()
        .is_some_and(|name| name.is_empty() || name.chars().count() > 200)
    {
        return Err(invalid("display_name", "1 to 200 characters"));
    }
    let created: Result<UserRow, _> = db_core::sqlx::query_as(
        "INSERT INTO users (email, display_name) VALUES ($1, $2)
         RETURNING id, email, display_name, created_at",
    )
    .bind(email)
    .bind(&user.display_name)
    .fetch_one(db.primary())
    .await;
    match created.map_err(DbError::from) {
        Ok(user) => Ok(HttpResponse::Created().json(User::from(user))),
        Err(DbError::UniqueViolation { .. }) => Err(Problem::new(
            StatusCode::CONFLICT,
            "email-taken",
            "A user with that e-mail exists",
        )),
        Err(error) => Err(errors::database(&error)),
    }
}

/// A user
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path)),
    responses((status = 200, body = User), (status = 404, body = ProblemDocument, content_type = "application/problem+json")))]
pub async fn get(
    _: CanRead,
    db: web::Data<Db>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, Problem> {
    let user: Option<UserRow> = db_core::sqlx::query_as(
        "SELECT id, email, display_name, created_at FROM users WHERE id = $1",
    )
    .bind(*id)
    .fetch_optional(db.read())
    .await
    .map_err(|error| errors::database(&DbError::from(error)))?;
    user.map(|user| HttpResponse::Ok().json(User::from(user)))
        .ok_or_else(|| Problem::new(StatusCode::NOT_FOUND, "user-not-found", "No such user"))
}
