//! Named service tokens. The configuration holds each token's SHA-256, never the token: a
//! leaked configuration file grants nothing. `api-server hash-token` prints the hash of a
//! token read from standard input.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::{Identity, Scope};

/// One `[[auth.tokens]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceToken {
    /// Who holds it: logged with every request, recorded on every transfer it submits.
    pub name: String,
    /// The token's SHA-256, 64 hex digits (`api-server hash-token`).
    pub sha256: String,
    pub scopes: Vec<Scope>,
}

/// The SHA-256 of `token`, as `[[auth.tokens]] sha256` takes it.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

#[derive(Clone, Default)]
pub(crate) struct ServiceTokens {
    tokens: Arc<[(Vec<u8>, Identity)]>,
}

impl ServiceTokens {
    pub(crate) fn new(configured: &[ServiceToken]) -> Result<Self, ConfigError> {
        let mut tokens = Vec::new();
        for token in configured {
            let hash = <[u8; 32] as hex::FromHex>::from_hex(&token.sha256).map_err(|_| {
                ConfigError::new(
                    "auth.tokens",
                    format!(
                        "{:?}: sha256 must be 64 hex digits (api-server hash-token)",
                        token.name
                    ),
                )
            })?;
            tokens.push((
                hash.to_vec(),
                Identity::Service {
                    name: token.name.as_str().into(),
                    scopes: token.scopes.clone().into(),
                },
            ));
        }
        Ok(Self {
            tokens: tokens.into(),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The service whose token `offered` is. Every configured hash is compared, in constant
    /// time, so the time taken does not tell which one matched or how closely.
    pub(crate) fn identify(&self, offered: &str) -> Option<Identity> {
        let offered = Sha256::digest(offered.as_bytes());
        let mut found = None;
        for (hash, identity) in self.tokens.iter() {
            if constant_time_eq::constant_time_eq(hash, &offered) {
                found = Some(identity.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_known_by_its_hash_alone() {
        let configured = [ServiceToken {
            name: "go-backend".into(),
            sha256: hash_token("s3cret-token-of-the-backend"),
            scopes: vec![Scope::Read],
        }];
        let tokens = ServiceTokens::new(&configured).unwrap();
        assert!(matches!(
            tokens.identify("s3cret-token-of-the-backend"),
            Some(Identity::Service { name, .. }) if &*name == "go-backend"
        ));
        assert_eq!(tokens.identify("s3cret-token-of-the-backenD"), None);
        assert_eq!(tokens.identify(&configured[0].sha256), None);
        let wrong = ServiceToken {
            sha256: "abc".into(),
            ..configured[0].clone()
        };
        assert!(ServiceTokens::new(&[wrong]).is_err());
    }
}
