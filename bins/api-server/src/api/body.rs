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
            if let Err(path) = prepare(&mut value) {
                // PostgreSQL stores no NUL character in text or JSON.
                let path = if path.is_empty() {
                    ".".to_owned()
                } else {
                    path
                };
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

/// One walk over the body before it is deserialised: every number with an integral value is
/// written as an integer (`90.0` as `90`: JSON has one number type, and an integer field of
/// the document accepts both spellings, as JSON Schema does, while serde would refuse the
/// first for an integer type), and the first string or key holding a NUL character is
/// refused, with its path (`transfers[2].reason`; empty for the root). The path is built on
/// the way out, so a body without NUL allocates nothing here.
fn prepare(value: &mut serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    /// `head` then `tail`, a `.` between them unless `tail` is empty or an index.
    fn join(head: String, tail: &str) -> String {
        if tail.is_empty() || tail.starts_with('[') {
            head + tail
        } else {
            head + "." + tail
        }
    }
    match value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            // Beyond 2^53 a float no longer names one integer; leave it as sent.
            if float.fract() == 0.0 && float.abs() < 9_007_199_254_740_992.0 {
                *number = serde_json::Number::from(float as i64);
            }
            Ok(())
        }
        Value::String(text) if text.contains('\0') => Err(String::new()),
        Value::Array(items) => items.iter_mut().enumerate().try_for_each(|(index, item)| {
            prepare(item).map_err(|tail| join(format!("[{index}]"), &tail))
        }),
        Value::Object(fields) => fields.iter_mut().try_for_each(|(key, item)| {
            if key.contains('\0') {
                return Err(key.clone());
            }
            prepare(item).map_err(|tail| join(key.clone(), &tail))
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::prepare;

    #[test]
    fn integral_numbers_become_integers_and_a_nul_is_found_by_its_path() {
        let mut body = json!({ "n": 90.0, "x": 0.5, "items": [{ "m": 2.0 }] });
        assert_eq!(prepare(&mut body), Ok(()));
        assert_eq!(body, json!({ "n": 90, "x": 0.5, "items": [{ "m": 2 }] }));
        let mut nested = json!({ "transfers": [{}, {}, { "reason": "a\u{0}b" }] });
        assert_eq!(prepare(&mut nested).unwrap_err(), "transfers[2].reason");
        assert_eq!(prepare(&mut json!([["\u{0}"]])).unwrap_err(), "[0][0]");
        assert_eq!(prepare(&mut json!("\u{0}")).unwrap_err(), "");
    }
}
