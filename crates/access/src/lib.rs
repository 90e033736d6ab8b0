//! Who may call the FODI API and what they may do, decided apart from any HTTP framework.
//!
//! A caller is anonymous, a named service (a bearer token whose SHA-256 is configured, with
//! [`Scope`]s; see [`tokens`]), or an end user (a JWT the core backend signed, `sub` their
//! user id; see [`jwt`]). Every route has one rule in [`rules::RULES`] (printed in
//! docs/security.md): the scope a service needs, and whether a user may call it on their own
//! resources. [`Access::admit`] applies a route's rule and the caller's rate limit
//! ([`limits`]) to what a server reads of a request (the [`Request`] trait; the api-server
//! implements it over actix-web's request); [`Caller::owns`] checks what the path names in
//! the ledger, and [`Caller::may_act_for`] and [`Caller::may_debit`] what a body names.
//! Refusals are [`Refusal`]s: most are the caller's (401, 403, 429, or the 404 of a resource
//! that is not theirs to know of); a lookup that failed or a route without a rule is not.
//!
//! Without any token or JWT key configured (a loopback-only development server) every caller
//! is the service `local` with every scope. Token hashes are compared in constant time;
//! tokens are never logged, only the caller's name.
//!
//! Architecture invariant: no HTTP crate and no configuration loading; the database is reached
//! only through the ledger's [`ledger::Ledger`] trait (who owns a wallet, an NFT, a transfer).

pub mod config;
pub mod jwt;
pub mod limits;
pub mod owners;
pub mod proxies;
pub mod rules;
pub mod tokens;

mod caller;
mod refusal;

use std::net::IpAddr;
use std::sync::Arc;

pub use caller::{Caller, Identity, Scope};
pub use config::AuthConfig;
pub use limits::LimitConfig;
pub use owners::WalletOwners;
pub use proxies::TrustedProxies;
pub use refusal::Refusal;
pub use rules::{Owner, Rule, Users};

/// What the policy reads of a request.
pub trait Request {
    /// `GET`, `POST`, ...
    fn method(&self) -> &str;
    /// The route that matched, as the OpenAPI document writes it
    /// (`/api/v1/ledger/wallets/{id}`); `None` when none did.
    fn route(&self) -> Option<String>;
    /// The token of an `Authorization: Bearer` header.
    fn bearer(&self) -> Option<&str>;
    /// A parameter of the matched route's path (`id` of `/wallets/{id}`).
    fn path_parameter(&self, name: &str) -> Option<&str>;
    /// The query string, without `?`.
    fn query(&self) -> &str;
    /// The address of the connection's other end.
    fn peer(&self) -> Option<IpAddr>;
    /// The values of every `X-Forwarded-For` header, in order.
    fn forwarded_for(&self) -> Vec<&[u8]>;
}

/// The configured credentials, limits and proxies: the whole policy.
#[derive(Clone)]
pub struct Access {
    tokens: tokens::ServiceTokens,
    jwt: Option<Arc<jwt::JwtVerifier>>,
    read_requires_token: bool,
    metrics_open_on_loopback: bool,
    limits: limits::Limits,
    proxies: TrustedProxies,
    /// Every caller of the open development server (built once, not per request).
    local: Identity,
}

impl Access {
    pub fn new(
        auth: &AuthConfig,
        limits: &LimitConfig,
        proxies: TrustedProxies,
    ) -> Result<Self, config::ConfigError> {
        Ok(Self {
            tokens: tokens::ServiceTokens::new(&auth.tokens)?,
            jwt: auth
                .jwt
                .as_ref()
                .map(jwt::JwtVerifier::new)
                .transpose()?
                .map(Arc::new),
            read_requires_token: auth.read_requires_token,
            metrics_open_on_loopback: auth.metrics_open_on_loopback,
            limits: limits::Limits::new(limits),
            proxies,
            local: Identity::local(),
        })
    }

    /// No credentials configured: the development server, open to its own host.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.jwt.is_none()
    }

    /// Who sent `request`: anonymous without a bearer token, else the service or user it
    /// proves; [`Refusal::InvalidToken`] for a token that proves nothing. The caller's name is
    /// recorded on the current span as `caller`.
    pub fn identify(&self, request: &impl Request) -> Result<Identity, Refusal> {
        let identity = self.identity_of(request.bearer())?;
        identity.record_on(&tracing::Span::current());
        Ok(identity)
    }

    fn identity_of(&self, offered: Option<&str>) -> Result<Identity, Refusal> {
        if self.is_open() {
            return Ok(self.local.clone());
        }
        let Some(offered) = offered else {
            return Ok(Identity::Anonymous);
        };
        if let Some(identity) = self.tokens.identify(offered) {
            return Ok(identity);
        }
        match &self.jwt {
            Some(verifier) if jwt::looks_like_jwt(offered) => verifier
                .verify(offered)
                .map(Identity::User)
                .map_err(|reason| Refusal::InvalidToken(Some(reason))),
            _ => Err(Refusal::InvalidToken(None)),
        }
    }

    /// The caller of a routed `request`, admitted by its route's rule (what the path and the
    /// query name checked) and within its rate limit, with the rule; else the refusal. What
    /// the path names in the ledger is checked by [`Caller::owns`], which waits for the
    /// database.
    pub fn admit(&self, request: &impl Request) -> Result<(Caller, &'static Rule), Refusal> {
        let route = request.route();
        let rule =
            rules::rule_for(request.method(), route.as_deref()).ok_or_else(|| Refusal::NoRule {
                method: request.method().to_owned(),
                route,
            })?;
        let caller = self.admit_by(request, rule)?;
        let client = || {
            self.proxies
                .client_ip(request.peer(), &request.forwarded_for())
        };
        self.limits.check(&caller, rule, client)?;
        Ok((caller, rule))
    }

    fn admit_by(&self, request: &impl Request, rule: &Rule) -> Result<Caller, Refusal> {
        let caller = Caller {
            identity: self.identify(request)?,
        };
        let Some(scope) = rule.scope else {
            return Ok(caller);
        };
        match &caller.identity {
            Identity::Anonymous if scope == Scope::Read && !self.read_requires_token => Ok(caller),
            Identity::Anonymous => Err(Refusal::MissingToken),
            Identity::Service { .. } if caller.has(scope) => Ok(caller),
            Identity::Service { .. } => Err(Refusal::Forbidden(format!(
                "this token lacks the {} scope",
                scope.name()
            ))),
            Identity::User(user) => match rule.users {
                Users::Never => Err(Refusal::forbidden("end users may not use this route")),
                Users::Any => Ok(caller),
                Users::Own(Owner::PathUser(parameter)) => {
                    let named = request.path_parameter(parameter).unwrap_or_default();
                    if named.parse() == Ok(user.as_uuid()) {
                        Ok(caller)
                    } else {
                        Err(Refusal::forbidden("a user may act only for themselves"))
                    }
                }
                Users::Own(Owner::QueryUser(parameter)) => {
                    let named = form_urlencoded::parse(request.query().as_bytes())
                        .find(|(name, _)| name == parameter)
                        .map(|(_, value)| value);
                    match named {
                        Some(named) if named.parse() == Ok(user.as_uuid()) => Ok(caller),
                        _ => Err(Refusal::Forbidden(format!(
                            "{parameter} must be the caller's own id"
                        ))),
                    }
                }
                // Checked once the resource is read (`Caller::owns`, or the handler).
                Users::Own(_) => Ok(caller),
            },
        }
    }

    /// `/metrics`: open to this host when so configured, else the `metrics` scope.
    pub fn admit_metrics(&self, request: &impl Request) -> Result<(), Refusal> {
        // Behind a proxy on this host, the client is whoever the proxy reports (when it is
        // one of the trusted proxies), not the proxy.
        let local = self
            .proxies
            .is_this_host(request.peer(), &request.forwarded_for());
        if self.is_open() || (local && self.metrics_open_on_loopback) {
            return Ok(());
        }
        match self.identify(request)? {
            Identity::Anonymous => Err(Refusal::MissingToken),
            Identity::Service { ref scopes, .. } if scopes.contains(&Scope::Metrics) => Ok(()),
            _ => Err(Refusal::forbidden("/metrics needs the metrics scope")),
        }
    }
}
