//! `/api/v1/users`: the minimal identity needed to run standalone, over the [`Users`] trait
//! (in production the core backend owns `public.users`).

use actix_web::{HttpResponse, web};
use core_store::{NewUser, User, UserId, Users};
use uuid::Uuid;

use crate::admission::Caller;
use crate::api::body::Body;
use crate::error::ApiResult;

pub fn configure(config: &mut web::ServiceConfig) {
    // A scope, as every family's: see `api::ledger::configure`.
    config.service(
        web::scope("/api/v1/users")
            .route("", web::post().to(create))
            .route("/{id}", web::get().to(get))
            .default_service(web::to(crate::api::not_found)),
    );
}

/// Create a user
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = User), (status = 409, description = "e-mail taken", body = http_problem::Problem, content_type = "application/problem+json")))]
pub async fn create(
    _: Caller,
    users: web::Data<dyn Users>,
    Body(user): Body<NewUser>,
) -> ApiResult {
    let created = users.create(&user).await?;
    Ok(HttpResponse::Created().json(created))
}

/// A user
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path)),
    responses((status = 200, body = User)))]
pub async fn get(_: Caller, users: web::Data<dyn Users>, id: web::Path<Uuid>) -> ApiResult {
    let user = users.get(UserId(*id)).await?;
    Ok(HttpResponse::Ok().json(user))
}
