//! End users' tokens: JWTs the core backend signs when a person signs in, `sub` their user
//! id (a UUID). Verified with the `jsonwebtoken` crate against the one configured key and
//! algorithm: HS256 with a shared secret, or RS256 / EdDSA with the backend's public key. The
//! issuer, audience and expiry are required and checked (with `leeway` for clock skew); a
//! token signed otherwise (`alg: none`, another algorithm, another key) is refused.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ledger::UserId;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `[auth.jwt]`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The `iss` every token must carry (the core backend's name).
    pub issuer: String,
    /// The `aud` every token must carry (this API's name).
    pub audience: String,
    /// `HS256`, `RS256` or `EdDSA`.
    pub algorithm: String,
    /// HS256: the shared secret, at least 32 bytes.
    #[serde(default)]
    pub hs256_secret: Option<String>,
    /// RS256 or EdDSA: the backend's public key, PEM.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(with = "humantime_serde", default = "default_leeway")]
    pub leeway: Duration,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

/// Shows everything but the secret.
impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("JwtConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithm", &self.algorithm)
            .field("hs256_secret", &self.hs256_secret.as_ref().map(|_| "***"))
            .field("public_key_file", &self.public_key_file)
            .field("leeway", &self.leeway)
            .finish()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> Result<Self, ConfigError> {
        let invalid =
            |key: &str, reason: String| ConfigError::new(&format!("auth.jwt.{key}"), reason);
        let (algorithm, key) = match config.algorithm.as_str() {
            "HS256" => {
                let secret = config
                    .hs256_secret
                    .as_deref()
                    .ok_or_else(|| invalid("hs256_secret", "HS256 needs it".into()))?;
                if secret.len() < 32 {
                    return Err(invalid("hs256_secret", "at least 32 bytes".into()));
                }
                let key = DecodingKey::from_secret(secret.as_bytes())
                    .map_err(|error| invalid("hs256_secret", error.to_string()))?;
                (Algorithm::HS256, key)
            }
            name @ ("RS256" | "EdDSA") => {
                let path = config
                    .public_key_file
                    .as_ref()
                    .ok_or_else(|| invalid("public_key_file", format!("{name} needs it")))?;
                let unreadable = |error: &dyn std::fmt::Display| {
                    invalid("public_key_file", format!("{}: {error}", path.display()))
                };
                let pem = std::fs::read(path).map_err(|error| unreadable(&error))?;
                let key = if name == "RS256" {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ed_pem(&pem)
                };
                let algorithm = if name == "RS256" {
                    Algorithm::RS256
                } else {
                    Algorithm::EdDSA
                };
                (algorithm, key.map_err(|error| unreadable(&error))?)
            }
            other => {
                return Err(invalid(
                    "algorithm",
                    format!("{other:?}: HS256, RS256 or EdDSA"),
                ));
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = config.leeway.as_secs();
        Ok(Self { key, validation })
    }

    /// The user a token speaks for; else why it is refused (sent as the 401's detail).
    pub fn verify(&self, token: &str) -> Result<UserId, String> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|error| format!("JWT refused: {error}"))?;
        data.claims
            .sub
            .parse()
            .map(UserId)
            .map_err(|_| "JWT refused: sub is not a user id".to_owned())
    }
}

/// Three base64url parts: a JWT rather than a service token.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}
