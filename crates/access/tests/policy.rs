//! The policy without a server: requests as the api-server describes them, admitted or
//! refused by the route table, the tokens, the JWT key and the rate limits.
// Helpers outside #[test] functions unwrap too: a test cannot proceed without what they make.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use access::jwt::JwtConfig;
use access::tokens::{ServiceToken, hash_token};
use access::{Access, AuthConfig, Identity, LimitConfig, Refusal, Scope, TrustedProxies};
use jsonwebtoken::{EncodingKey, Header};
use uuid::Uuid;

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

/// A request as a server sees it.
struct Seen {
    method: &'static str,
    route: &'static str,
    bearer: Option<String>,
    path: Vec<(&'static str, String)>,
    query: String,
    peer: IpAddr,
}

fn seen(method: &'static str, route: &'static str, bearer: Option<&str>) -> Seen {
    Seen {
        method,
        route,
        bearer: bearer.map(str::to_owned),
        path: Vec::new(),
        query: String::new(),
        peer: "203.0.113.9".parse().unwrap(),
    }
}

impl access::Request for Seen {
    fn method(&self) -> &str {
        self.method
    }
    fn route(&self) -> Option<String> {
        Some(self.route.to_owned())
    }
    fn bearer(&self) -> Option<&str> {
        self.bearer.as_deref()
    }
    fn path_parameter(&self, name: &str) -> Option<&str> {
        let found = self.path.iter().find(|(named, _)| *named == name);
        found.map(|(_, value)| value.as_str())
    }
    fn query(&self) -> &str {
        &self.query
    }
    fn peer(&self) -> Option<IpAddr> {
        Some(self.peer)
    }
    fn forwarded_for(&self) -> Vec<&[u8]> {
        Vec::new()
    }
}

fn policy(limits: &LimitConfig) -> Access {
    let auth = AuthConfig {
        tokens: vec![ServiceToken {
            name: "go-backend".into(),
            sha256: hash_token("backend-token"),
            scopes: vec![Scope::Read, Scope::LedgerWrite],
        }],
        jwt: Some(JwtConfig {
            issuer: "core".into(),
            audience: "api".into(),
            algorithm: "HS256".into(),
            hs256_secret: Some(SECRET.into()),
            public_key_file: None,
            leeway: std::time::Duration::from_secs(30),
        }),
        ..AuthConfig::default()
    };
    auth.validate().unwrap();
    Access::new(&auth, limits, TrustedProxies::default()).unwrap()
}

fn jwt_of(user: Uuid) -> String {
    let claims = serde_json::json!({
        "sub": user.to_string(), "iss": "core", "aud": "api",
        "exp": unix_now() + 600,
    });
    let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap()
}

fn unix_now() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_secs()
}

#[test]
fn services_need_the_rules_scope_and_anonymous_callers_a_token() {
    let access = policy(&LimitConfig::default());
    let read = seen("GET", "/api/v1/ledger/blocks", Some("backend-token"));
    let (caller, rule) = access.admit(&read).unwrap();
    assert!(matches!(&caller.identity, Identity::Service { name, .. } if &**name == "go-backend"));
    assert_eq!(rule.scope, Some(Scope::Read));

    let issue = seen("POST", "/api/v1/ledger/issuance", Some("backend-token"));
    assert!(
        matches!(access.admit(&issue), Err(Refusal::Forbidden(why)) if why.contains("treasury"))
    );
    let anonymous = seen("GET", "/api/v1/ledger/blocks", None);
    assert!(matches!(
        access.admit(&anonymous),
        Err(Refusal::MissingToken)
    ));
    let wrong = seen("GET", "/api/v1/ledger/blocks", Some("backend-tokeN"));
    assert!(matches!(
        access.admit(&wrong),
        Err(Refusal::InvalidToken(None))
    ));
    let health = seen("GET", "/health", None);
    assert!(access.admit(&health).is_ok(), "open routes need no token");
    let unknown = seen("GET", "/api/v1/nowhere", Some("backend-token"));
    assert!(matches!(
        access.admit(&unknown),
        Err(Refusal::NoRule { .. })
    ));
}

#[test]
fn users_act_only_on_what_the_path_or_query_names_as_theirs() {
    let access = policy(&LimitConfig::default());
    let (me, other) = (Uuid::new_v4(), Uuid::new_v4());
    let token = jwt_of(me);
    let facts = |user: Uuid| {
        let mut request = seen("GET", "/api/v1/ai/users/{user}/facts", Some(&token));
        request.path.push(("user", user.to_string()));
        request
    };
    let (caller, _) = access.admit(&facts(me)).unwrap();
    assert_eq!(caller.name(), format!("user:{me}"));
    assert!(matches!(
        access.admit(&facts(other)),
        Err(Refusal::Forbidden(_))
    ));

    let rewards = |query: String| {
        let mut request = seen("GET", "/api/v1/ledger/rewards", Some(&token));
        request.query = query;
        request
    };
    assert!(access.admit(&rewards(format!("limit=5&user={me}"))).is_ok());
    assert!(access.admit(&rewards(format!("user={other}"))).is_err());
    assert!(
        access.admit(&rewards("limit=5".into())).is_err(),
        "the query must name them"
    );

    let issue = seen("POST", "/api/v1/ledger/issuance", Some(&token));
    assert!(matches!(access.admit(&issue), Err(Refusal::Forbidden(_))));
    let forged = format!("{}x", &token[..token.len() - 1]);
    let refused = access.admit(&seen("GET", "/api/v1/ledger/blocks", Some(&forged)));
    assert!(matches!(refused, Err(Refusal::InvalidToken(Some(why))) if why.contains("JWT")));
}

#[test]
fn a_caller_past_its_limit_is_told_how_long_to_wait() {
    let access = policy(&LimitConfig {
        user_writes_per_second: 1,
        ..LimitConfig::default()
    });
    let token = jwt_of(Uuid::new_v4());
    let transfer = seen("POST", "/api/v1/ledger/transfers", Some(&token));
    // A burst of twice the rate, then a wait.
    assert!(access.admit(&transfer).is_ok());
    assert!(access.admit(&transfer).is_ok());
    match access.admit(&transfer) {
        Err(Refusal::RateLimited { key, wait }) => {
            assert!(key.starts_with("user:"));
            assert!(wait > std::time::Duration::ZERO);
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
    // Another user's budget is their own; reads are not limited.
    let someone = jwt_of(Uuid::new_v4());
    assert!(
        access
            .admit(&seen("POST", "/api/v1/ledger/transfers", Some(&someone)))
            .is_ok()
    );
    assert!(
        access
            .admit(&seen("GET", "/api/v1/ledger/blocks", Some(&token)))
            .is_ok()
    );
}

#[test]
fn without_credentials_every_caller_is_the_local_service() {
    let access = Access::new(
        &AuthConfig::default(),
        &LimitConfig::default(),
        TrustedProxies::default(),
    )
    .unwrap();
    assert!(access.is_open());
    let (caller, _) = access
        .admit(&seen("POST", "/api/v1/ledger/issuance", None))
        .unwrap();
    assert!(caller.has(Scope::Treasury));
}

#[test]
fn configurations_that_cannot_tell_callers_apart_are_refused() {
    let token = |name: &str, secret: &str| ServiceToken {
        name: name.into(),
        sha256: hash_token(secret),
        scopes: vec![Scope::Read],
    };
    for tokens in [
        vec![token("a", "x"), token("a", "y")],
        vec![token("a", "x"), token("b", "x")],
        vec![token("user:a", "x")],
        vec![token("anonymous", "x")],
        vec![token("", "x")],
    ] {
        let auth = AuthConfig {
            tokens,
            ..AuthConfig::default()
        };
        assert!(auth.validate().is_err());
    }
    let short_key = AuthConfig {
        jwt: Some(JwtConfig {
            issuer: "core".into(),
            audience: "api".into(),
            algorithm: "HS256".into(),
            hs256_secret: Some("short".into()),
            public_key_file: None,
            leeway: std::time::Duration::from_secs(30),
        }),
        ..AuthConfig::default()
    };
    let refused = Access::new(
        &short_key,
        &LimitConfig::default(),
        TrustedProxies::default(),
    );
    assert!(matches!(refused, Err(error) if error.key == "auth.jwt.hs256_secret"));
}
