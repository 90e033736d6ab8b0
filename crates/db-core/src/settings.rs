//! What every crate's configuration shares: the error a refused setting gives, and the checks
//! behind the crates' `validate()`.
//!
//! Each crate's config derives `Deserialize` (with its defaults) so that a binary embeds it in
//! its own settings instead of mirroring it field by field; `validate()` refuses what would
//! break later (an interval of zero is a busy loop, a pool of zero connections never answers),
//! naming the key relative to the config. The binary prefixes the section it embedded it in.

use std::time::Duration;

/// A setting the crate cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} {reason}")]
pub struct InvalidSetting {
    /// The key, dotted from the config's root (`cache.default_ttl`).
    pub key: String,
    pub reason: &'static str,
}

impl InvalidSetting {
    pub fn new(key: impl Into<String>, reason: &'static str) -> Self {
        Self {
            key: key.into(),
            reason,
        }
    }

    /// The same error with the key as seen from `section`, where the config is embedded.
    #[must_use]
    pub fn within(self, section: &str) -> Self {
        Self {
            key: format!("{section}.{}", self.key),
            ..self
        }
    }
}

/// Refuses a zero duration: an interval of zero is a busy loop, a timeout of zero refuses
/// every call, a retention of zero deletes everything.
pub fn positive_duration(key: &str, duration: Duration) -> Result<(), InvalidSetting> {
    if duration.is_zero() {
        return Err(InvalidSetting::new(key, "must be longer than zero"));
    }
    Ok(())
}

/// Refuses a zero count (connections, rows, days).
pub fn at_least_one(key: &str, count: u64) -> Result<(), InvalidSetting> {
    if count == 0 {
        return Err(InvalidSetting::new(key, "must be at least 1"));
    }
    Ok(())
}
