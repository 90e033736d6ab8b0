//! Request bodies: JSON read with a size limit and deserialised with the path of the first
//! bad field, so that a 400 names it (`transfers[2].amount: invalid type: integer, expected a
//! string`).

use std::future::Future;
use std::pin::Pin;

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use admin_api::Problem;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A JSON body of type `T`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = Problem;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Problem>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = request
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        let mut payload = payload.take();
        Box::pin(async move {
            if !json {
                return Err(Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    "The body must be application/json",
                ));
            }
            let mut bytes = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|error| {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "unreadable-body",
                        "The body could not be read",
                    )
                    .with_detail(error.to_string())
                })?;
                if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body-too-large",
                        "The body is too large",
                    )
                    .with_detail(format!("at most {MAX_BODY_BYTES} bytes")));
                }
                bytes.extend_from_slice(&chunk);
            }
            let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
            serde_path_to_error::deserialize(&mut deserializer)
                .map(Body)
                .map_err(|error| {
                    let path = error.path().to_string();
                    let inner = error.into_inner();
                    let (kind, title) = if inner.is_syntax() || inner.is_eof() {
                        ("malformed-json", "The body is not valid JSON")
                    } else {
                        ("invalid-field", "A field of the body is invalid")
                    };
                    let detail = if path == "." {
                        inner.to_string()
                    } else {
                        format!("{path}: {inner}")
                    };
                    Problem::new(StatusCode::BAD_REQUEST, kind, title).with_detail(detail)
                })
        })
    }
}
