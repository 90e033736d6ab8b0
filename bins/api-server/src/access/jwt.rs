//! End users' tokens: JWTs the core backend signs when a person signs in, `sub` their user
//! id (a UUID). Verified with the `jsonwebtoken` crate against the one configured key and
//! algorithm: HS256 with a shared secret, or RS256 / EdDSA with the backend's public key. The
//! issuer, audience and expiry are required and checked (with `leeway` for clock skew); a
//! token signed otherwise (`alg: none`, another algorithm, another key) is refused.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ledger::UserId;
use serde::{Deserialize, Serialize};

/// `[auth.jwt]`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
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
impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("JwtSettings")
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
    pub fn new(settings: &JwtSettings) -> anyhow::Result<Self> {
        let (algorithm, key) = match settings.algorithm.as_str() {
            "HS256" => {
                let secret = settings
                    .hs256_secret
                    .as_deref()
                    .context("auth.jwt: HS256 needs hs256_secret")?;
                anyhow::ensure!(
                    secret.len() >= 32,
                    "auth.jwt.hs256_secret: at least 32 bytes"
                );
                (
                    Algorithm::HS256,
                    DecodingKey::from_secret(secret.as_bytes())?,
                )
            }
            name @ ("RS256" | "EdDSA") => {
                let path = settings
                    .public_key_file
                    .as_ref()
                    .with_context(|| format!("auth.jwt: {name} needs public_key_file"))?;
                let pem = std::fs::read(path)
                    .with_context(|| format!("auth.jwt.public_key_file {}", path.display()))?;
                if name == "RS256" {
                    (Algorithm::RS256, DecodingKey::from_rsa_pem(&pem)?)
                } else {
                    (Algorithm::EdDSA, DecodingKey::from_ed_pem(&pem)?)
                }
            }
            other => anyhow::bail!("auth.jwt.algorithm {other:?}: HS256, RS256 or EdDSA"),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = settings.leeway.as_secs();
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
