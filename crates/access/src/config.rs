//! `[auth]`: who may call. Named service tokens with scopes, end users' JWTs, and what needs
//! neither. Without tokens and JWT key the server serves its own host only, open
//! (development); the server refuses to listen elsewhere so.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::jwt::JwtConfig;
use crate::tokens::ServiceToken;

/// A setting the policy cannot work with, named by its key (`auth.tokens`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: &str, reason: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `[[auth.tokens]]`: `name`, `sha256` (of the token; `api-server hash-token`), `scopes`.
    pub tokens: Vec<ServiceToken>,
    /// `[auth.jwt]`: end users' tokens, signed by the core backend.
    pub jwt: Option<JwtConfig>,
    /// Reads need a token (anonymous callers get 401). Health, readiness and the API's
    /// documents stay open.
    pub read_requires_token: bool,
    /// `/metrics` answers this host without a token; any other needs the `metrics` scope.
    /// `false`: every scrape needs the scope.
    pub metrics_open_on_loopback: bool,
    /// Replaced by `tokens`; present only to refuse with directions (see `validate`).
    #[serde(skip_serializing)]
    pub admin_tokens: Option<serde::de::IgnoredAny>,
    /// Replaced by `tokens`, as `admin_tokens`.
    #[serde(skip_serializing)]
    pub api_tokens: Option<serde::de::IgnoredAny>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            jwt: None,
            read_requires_token: true,
            metrics_open_on_loopback: true,
            admin_tokens: None,
            api_tokens: None,
        }
    }
}

impl AuthConfig {
    /// No credential configured: the open development server.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.jwt.is_none()
    }

    /// Refuses what would let the wrong callers in or could not tell callers apart. Keys are
    /// named from `auth`. (The key files and hashes are read by [`crate::Access::new`].)
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.admin_tokens.is_some() || self.api_tokens.is_some() {
            return Err(ConfigError::new(
                "auth",
                "admin_tokens and api_tokens were replaced by named tokens with scopes: for \
                 each token add [[auth.tokens]] with name = \"...\", sha256 = \
                 \"<api-server hash-token>\" and scopes (an admin token: every scope; an API \
                 token: \"read\", \"users:write\", \"ai:write\", \"ledger:write\", \"rewards\", \
                 \"analytics:write\"); see docs/security.md",
            ));
        }
        if self.jwt.is_some() && !self.read_requires_token {
            return Err(ConfigError::new(
                "auth.read_requires_token",
                "false with [auth.jwt]: anonymous reads would show every user what end users \
                 may see of themselves only",
            ));
        }
        let (mut names, mut hashes) = (HashSet::new(), HashSet::new());
        for token in &self.tokens {
            // `user:` and `anonymous` name other kinds of callers (idempotency keys and rate
            // limits are scoped by the name).
            let reserved = token.name.starts_with("user:") || token.name == "anonymous";
            if token.name.is_empty()
                || token.name.len() > 64
                || reserved
                || !names.insert(&token.name)
            {
                return Err(ConfigError::new(
                    "auth.tokens",
                    format!(
                        "name {:?} must be 1 to 64 characters, unique, and neither \
                         \"anonymous\" nor start with \"user:\"",
                        token.name
                    ),
                ));
            }
            if !hashes.insert(token.sha256.to_ascii_lowercase()) {
                return Err(ConfigError::new(
                    "auth.tokens",
                    format!("{:?} repeats another token's sha256", token.name),
                ));
            }
        }
        Ok(())
    }

    /// The configuration as `--print-config` shows it: the JWT secret replaced.
    #[must_use]
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        if let Some(jwt) = shown.jwt.as_mut() {
            jwt.hs256_secret = jwt.hs256_secret.as_ref().map(|_| "***".into());
        }
        shown
    }
}
