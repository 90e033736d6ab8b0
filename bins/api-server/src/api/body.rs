//! Request bodies: JSON read with a size limit and deserialised with the path of the first
//! bad field, so that a 400 names it (`transfers[2].amount: invalid type: integer, expected a
//! string`).

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The default of `server.max_body_bytes`: room for the largest batches the crates take
/// (10,000 transfers or analytics rows).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// `server.max_body_bytes`, for [`Body`]: the largest accepted request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body of type `T`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = request
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        let limit = request
            .app_data::<BodyLimit>()
            .map_or(MAX_BODY_BYTES, |limit| limit.0);
        let mut payload = payload.take();
        Box::pin(async move {
            if !json {
                return Err(ApiError::unsupported_media_type());
            }
            let mut bytes = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk
                    .map_err(|error| ApiError::unreadable_body().with_detail(error.to_string()))?;
                if bytes.len() + chunk.len() > limit {
                    return Err(
                        ApiError::body_too_large().with_detail(format!("at most {limit} bytes"))
                    );
                }
                bytes.extend_from_slice(&chunk);
            }
            let mut value: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|error| ApiError::malformed_json().with_detail(error.to_string()))?;
            integral_numbers_as_integers(&mut value);
            if let Some(path) = nul_in(&value, "") {
                // PostgreSQL stores no NUL character in text or JSON.
                return Err(ApiError::invalid_body_field()
                    .with_detail(format!("{path}: must not contain the NUL character")));
            }
            serde_path_to_error::deserialize(value)
                .map(Body)
                .map_err(|error| {
                    let path = error.path().to_string();
                    let inner = error.into_inner();
                    let detail = if path == "." {
                        inner.to_string()
                    } else {
                        format!("{path}: {inner}")
                    };
                    ApiError::invalid_body_field().with_detail(detail)
                })
        })
    }
}

/// Writes every number with an integral value as an integer (`90.0` as `90`): JSON has one
/// number type, and an integer field of the document accepts both spellings, as JSON Schema
/// does, while serde would refuse the first for an integer type.
fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            // Beyond 2^53 a float no longer names one integer; leave it as sent.
            if float.fract() == 0.0 && float.abs() < 9_007_199_254_740_992.0 {
                *number = serde_json::Number::from(float as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(integral_numbers_as_integers);
        }
        _ => {}
    }
}

/// The path of the first string or key holding a NUL character, if any.
fn nul_in(value: &serde_json::Value, path: &str) -> Option<String> {
    match value {
        serde_json::Value::String(text) if text.contains('\0') => Some(path_or_root(path)),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| nul_in(item, &format!("{path}[{index}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let here = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                Some(here)
            } else {
                nul_in(item, &here)
            }
        }),
        _ => None,
    }
}

fn path_or_root(path: &str) -> String {
    if path.is_empty() {
        ".".into()
    } else {
        path.to_owned()
    }
}
