//! Checks of caller input before it reaches the database, so that bad input is a typed
//! [`AiError::InvalidField`] rather than a constraint violation (or, for a NUL character, an
//! encoding error PostgreSQL's `text` cannot store).

use crate::error::AiError;

/// `value` as a text column of at most `max_chars` characters, at least one unless `may_be_empty`.
pub(crate) fn text(
    field: &'static str,
    value: &str,
    max_chars: usize,
    may_be_empty: bool,
) -> Result<(), AiError> {
    let invalid = |reason: String| Err(AiError::InvalidField { field, reason });
    if value.contains('\0') {
        return invalid("contains a NUL character".into());
    }
    if !may_be_empty && value.is_empty() {
        return invalid("must not be empty".into());
    }
    let chars = value.chars().count();
    if chars > max_chars {
        return invalid(format!("{chars} characters, at most {max_chars} allowed"));
    }
    Ok(())
}

/// Free text (message content, prompts): any length, no NUL character.
pub(crate) fn content(field: &'static str, value: &str) -> Result<(), AiError> {
    text(field, value, usize::MAX, true)
}

/// A JSON object, as the schema's metadata columns require; `\u0000` inside it is refused too
/// (`jsonb` cannot store it).
pub(crate) fn metadata(field: &'static str, value: &serde_json::Value) -> Result<(), AiError> {
    if !value.is_object() {
        return Err(AiError::InvalidField {
            field,
            reason: "must be a JSON object".into(),
        });
    }
    json(field, value)
}

/// Any JSON value that `jsonb` can store: no NUL character in a string or a key.
pub(crate) fn json(field: &'static str, value: &serde_json::Value) -> Result<(), AiError> {
    let nul = |text: &str| text.contains('\0');
    let has_nul = match value {
        serde_json::Value::String(text) => nul(text),
        serde_json::Value::Array(items) => {
            return items.iter().try_for_each(|item| json(field, item));
        }
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                if nul(key) {
                    return Err(AiError::InvalidField {
                        field,
                        reason: "a key contains a NUL character".into(),
                    });
                }
                json(field, item)?;
            }
            false
        }
        _ => false,
    };
    if has_nul {
        return Err(AiError::InvalidField {
            field,
            reason: "a string contains a NUL character".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_bounds_and_nul() {
        assert!(text("key", "a", 3, false).is_ok());
        assert!(text("key", "", 3, false).is_err());
        assert!(text("key", "", 3, true).is_ok());
        assert!(text("key", "éééé", 3, false).is_err());
        assert!(text("key", "ééé", 3, false).is_ok());
        assert!(text("key", "a\0b", 3, false).is_err());
    }

    #[test]
    fn json_refuses_nul_anywhere() {
        assert!(metadata("m", &serde_json::json!({"a": [1, "x"]})).is_ok());
        assert!(metadata("m", &serde_json::json!([1])).is_err());
        assert!(metadata("m", &serde_json::json!({"a": ["x\u{0}"]})).is_err());
        assert!(metadata("m", &serde_json::json!({"a\u{0}": 1})).is_err());
        assert!(json("v", &serde_json::json!("\u{0}")).is_err());
    }
}
