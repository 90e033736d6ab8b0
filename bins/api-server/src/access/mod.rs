//! Who may do what.
//!
//! A caller is anonymous, a named service (a bearer token whose SHA-256 is configured, with
//! scopes), or an end user (a JWT the core backend signed, `sub` their user id; see [`jwt`]).
//! Every route has one rule in [`rules::RULES`] (printed in docs/security.md): the scope a
//! service needs, and whether a user may call it on their own resources. The [`Caller`]
//! extractor applies the rule before the handler runs and checks what the path and query
//! name; handlers whose body names the resource check it with [`Caller::may_act_for`] and
//! [`Caller::may_debit`].
//!
//! Without any token or JWT key configured (a loopback-only development server, see
//! `Settings::check`) every caller is the service `local` with every scope. Token hashes are
//! compared in constant time; tokens are never logged, only the caller's name.

pub mod client;
pub mod jwt;
pub mod limits;
pub mod owners;
pub mod rules;
pub mod tokens;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use admin_api::auth::bearer;
use ledger::{Ledger, LedgerError, UserId, WalletId, WalletOwner};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::settings::AuthSettings;
use owners::WalletOwners;
use rules::{Owner, Rule, Users};

/// What a service token may do. A user (JWT) has none of these: what a user may do is the
/// rules' `users` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Scope {
    /// Every read of `/api/v1` and `/ws`.
    #[serde(rename = "read")]
    Read,
    /// Creating users (the core backend owns them in production).
    #[serde(rename = "users:write")]
    UsersWrite,
    /// The assistant's memory: conversations, facts, cache, examples, forgetting a user.
    #[serde(rename = "ai:write")]
    AiWrite,
    /// Wallets, transfers between them, holds, NFTs.
    #[serde(rename = "ledger:write")]
    LedgerWrite,
    /// Paying rewards from the rewards pool.
    #[serde(rename = "rewards")]
    Rewards,
    /// Issuing money, and debiting the rewards pool or the fees wallet.
    #[serde(rename = "treasury")]
    Treasury,
    /// Recording events and metrics.
    #[serde(rename = "analytics:write")]
    AnalyticsWrite,
    /// `/metrics` from a host other than this one.
    #[serde(rename = "metrics")]
    Metrics,
    /// Process control, chain verification.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::Read,
        Scope::UsersWrite,
        Scope::AiWrite,
        Scope::LedgerWrite,
        Scope::Rewards,
        Scope::Treasury,
        Scope::AnalyticsWrite,
        Scope::Metrics,
        Scope::Admin,
    ];

    /// The name configurations and docs use (`ledger:write`).
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::UsersWrite => "users:write",
            Scope::AiWrite => "ai:write",
            Scope::LedgerWrite => "ledger:write",
            Scope::Rewards => "rewards",
            Scope::Treasury => "treasury",
            Scope::AnalyticsWrite => "analytics:write",
            Scope::Metrics => "metrics",
            Scope::Admin => "admin",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    Service {
        name: Arc<str>,
        scopes: Arc<[Scope]>,
    },
    User(UserId),
}

impl Identity {
    /// See [`Caller::name`].
    pub fn name(&self) -> String {
        match self {
            Identity::Anonymous => "anonymous".into(),
            Identity::Service { name, .. } => name.to_string(),
            Identity::User(user) => format!("user:{}", user.as_uuid()),
        }
    }
}

/// The caller of a request, admitted by its route's rule.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
}

impl Caller {
    /// The name logged and recorded as a transfer's submitter: the service's name, or
    /// `user:<id>`.
    pub fn name(&self) -> String {
        self.identity.name()
    }

    pub fn has(&self, scope: Scope) -> bool {
        matches!(&self.identity, Identity::Service { scopes, .. } if scopes.contains(&scope))
    }

    /// `Ok` for a service, or the user `user` themselves; 403 for another user.
    pub fn may_act_for(&self, user: UserId) -> Result<(), ApiError> {
        match &self.identity {
            Identity::User(own) if *own != user => {
                Err(ApiError::forbidden().with_detail("a user may act only for themselves"))
            }
            _ => Ok(()),
        }
    }

    /// `Ok` when the caller may debit `wallet`: a user their own wallets only; a service any
    /// user wallet, the rewards pool and the fees wallet with the treasury scope only, and the
    /// issuer never (money is created by `/issuance` alone).
    pub async fn may_debit(&self, owners: &WalletOwners, wallet: WalletId) -> Result<(), ApiError> {
        match (&self.identity, owners.owner(wallet).await?) {
            (Identity::User(own), WalletOwner::User(owner)) if *own == owner => Ok(()),
            (Identity::User(_), _) => Err(not_yours(wallet)),
            (_, WalletOwner::System(ledger::SystemWallet::Issuer)) => Err(ApiError::forbidden()
                .with_detail(
                    "the issuer is debited only by issuance (POST /api/v1/ledger/issuance)",
                )),
            (_, WalletOwner::System(_)) if !self.has(Scope::Treasury) => Err(ApiError::forbidden()
                .with_detail("debiting a system wallet needs the treasury scope")),
            _ => Ok(()),
        }
    }
}

/// A resource of another user, answered as if it did not exist: its existence is not the
/// caller's to learn.
fn not_yours(wallet: WalletId) -> ApiError {
    ApiError::from(LedgerError::WalletNotFound(wallet))
}

/// The configured credentials.
#[derive(Clone)]
pub struct Access {
    tokens: tokens::ServiceTokens,
    jwt: Option<Arc<jwt::JwtVerifier>>,
    read_requires_token: bool,
    metrics_open_on_loopback: bool,
    limits: limits::Limits,
    proxies: client::TrustedProxies,
}

impl Access {
    pub fn new(
        settings: &AuthSettings,
        limits: &limits::LimitSettings,
        proxies: client::TrustedProxies,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            tokens: tokens::ServiceTokens::new(&settings.tokens)?,
            jwt: settings
                .jwt
                .as_ref()
                .map(jwt::JwtVerifier::new)
                .transpose()?
                .map(Arc::new),
            read_requires_token: settings.read_requires_token,
            metrics_open_on_loopback: settings.metrics_open_on_loopback,
            limits: limits::Limits::new(limits),
            proxies,
        })
    }

    /// No credentials configured: the development server, open to its own host.
    fn open(&self) -> bool {
        self.tokens.is_empty() && self.jwt.is_none()
    }

    /// Who sent `request`: anonymous without a bearer token, else the service or user it
    /// proves; 401 for a token that proves nothing.
    pub fn identify(&self, request: &HttpRequest) -> Result<Identity, ApiError> {
        if self.open() {
            return Ok(Identity::Service {
                name: "local".into(),
                scopes: Scope::ALL.into(),
            });
        }
        let Some(offered) = bearer(request) else {
            return Ok(Identity::Anonymous);
        };
        if let Some(identity) = self.tokens.identify(offered) {
            return Ok(identity);
        }
        match &self.jwt {
            Some(verifier) if jwt::looks_like_jwt(offered) => verifier
                .verify(offered)
                .map(Identity::User)
                .map_err(|reason| ApiError::invalid_token().with_detail(reason)),
            _ => Err(ApiError::invalid_token()),
        }
    }

    /// The caller of a routed `request`, admitted by its route's rule and within its rate
    /// limit; else the 401, 403, 404 or 429 to answer. (Ownership of what the path names in the
    /// ledger is checked by the [`Caller`] extractor, which can wait for the database.)
    pub fn admit_routed(&self, request: &HttpRequest) -> Result<(Caller, &'static Rule), ApiError> {
        let rule = rules::rule_for(
            request.method().as_str(),
            request.match_pattern().as_deref(),
        )
        .ok_or_else(|| {
            ApiError::internal(&format!(
                "no access rule for {} {:?}",
                request.method(),
                request.match_pattern()
            ))
        })?;
        let caller = self.admit(request, rule)?;
        let client = self.proxies.client_ip(request).map(|ip| ip.to_string());
        self.limits.check(&caller, rule, client.as_deref())?;
        Ok((caller, rule))
    }

    /// The caller of `request` if `rule` admits them (path and query ownership checked); else
    /// the 401, 403 or 404 to answer.
    fn admit(&self, request: &HttpRequest, rule: &Rule) -> Result<Caller, ApiError> {
        let identity = self.identify(request)?;
        record_caller(&identity);
        let caller = Caller { identity };
        let Some(scope) = rule.scope else {
            return Ok(caller);
        };
        match &caller.identity {
            Identity::Anonymous if scope == Scope::Read && !self.read_requires_token => Ok(caller),
            Identity::Anonymous => Err(ApiError::missing_token()),
            Identity::Service { .. } if caller.has(scope) => Ok(caller),
            Identity::Service { .. } => Err(ApiError::forbidden()
                .with_detail(format!("this token lacks the {} scope", scope.name()))),
            Identity::User(user) => match rule.users {
                Users::Never => {
                    Err(ApiError::forbidden().with_detail("end users may not use this route"))
                }
                Users::Any => Ok(caller),
                Users::Own(Owner::PathUser(parameter)) => {
                    let named = request.match_info().get(parameter).unwrap_or_default();
                    if named.parse() == Ok(user.as_uuid()) {
                        Ok(caller)
                    } else {
                        Err(ApiError::forbidden().with_detail("a user may act only for themselves"))
                    }
                }
                Users::Own(Owner::QueryUser(parameter)) => {
                    let named =
                        web::Query::<std::collections::HashMap<String, String>>::from_query(
                            request.query_string(),
                        )
                        .ok()
                        .and_then(|query| query.get(parameter).cloned());
                    match named {
                        Some(named) if named.parse() == Ok(user.as_uuid()) => Ok(caller),
                        _ => Err(ApiError::forbidden()
                            .with_detail(format!("{parameter} must be the caller's own id"))),
                    }
                }
                // Checked once the resource is read (the extractor, or the handler).
                Users::Own(_) => Ok(caller),
            },
        }
    }
}

impl Access {
    /// `/metrics`: open to this host when so configured, else the `metrics` scope.
    pub fn admit_metrics(&self, request: &HttpRequest) -> Result<(), ApiError> {
        // Behind a proxy on this host, the client is whoever the proxy reports (when it is
        // one of `server.trusted_proxies`), not the proxy.
        let local = self.proxies.is_this_host(request);
        if self.open() || (local && self.metrics_open_on_loopback) {
            return Ok(());
        }
        let identity = self.identify(request)?;
        record_caller(&identity);
        match identity {
            Identity::Anonymous => Err(ApiError::missing_token()),
            Identity::Service { ref scopes, .. } if scopes.contains(&Scope::Metrics) => Ok(()),
            _ => Err(ApiError::forbidden().with_detail("/metrics needs the metrics scope")),
        }
    }
}

/// The caller's name on the request's span, so the request's log line carries it.
fn record_caller(identity: &Identity) {
    tracing::Span::current().record("caller", identity.name().as_str());
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let access = request
                .app_data::<web::Data<Access>>()
                .ok_or_else(|| ApiError::internal(&"no access rules configured"))?;
            let (caller, rule) = access.admit_routed(&request)?;
            if let (Identity::User(user), Users::Own(owner)) = (&caller.identity, rule.users) {
                owns_path_resource(&request, *user, owner).await?;
            }
            Ok(caller)
        })
    }
}

/// For a user on a route whose path names a ledger resource: `Ok` when it is theirs, else
/// the 404 of a resource that does not exist.
async fn owns_path_resource(
    request: &HttpRequest,
    user: UserId,
    owner: Owner,
) -> Result<(), ApiError> {
    let id = || -> Result<uuid::Uuid, ApiError> {
        request
            .match_info()
            .get("id")
            .and_then(|id| id.parse().ok())
            .ok_or_else(ApiError::invalid_path)
    };
    let ledger = || {
        request
            .app_data::<web::Data<dyn Ledger>>()
            .cloned()
            .ok_or_else(|| ApiError::internal(&"no ledger"))
    };
    let owners = request
        .app_data::<web::Data<WalletOwners>>()
        .cloned()
        .ok_or_else(|| ApiError::internal(&"no wallet owners"));
    match owner {
        Owner::PathWallet => {
            let wallet = WalletId(id()?);
            if owners?.owner(wallet).await? == WalletOwner::User(user) {
                Ok(())
            } else {
                Err(not_yours(wallet))
            }
        }
        Owner::PathNft => {
            let nft = ledger()?.nft(ledger::NftId(id()?)).await?;
            if nft.owner == Some(user) {
                Ok(())
            } else {
                Err(ApiError::from(LedgerError::NftNotFound(nft.id)))
            }
        }
        Owner::PathTransfer => {
            let owners = owners?;
            let transfer = ledger()?
                .get_transfer(ledger::TransferId(id()?))
                .await?
                .ok_or_else(ApiError::transfer_not_found)?;
            for side in [transfer.debit_wallet, transfer.credit_wallet] {
                if owners.owner(side).await? == WalletOwner::User(user) {
                    return Ok(());
                }
            }
            Err(ApiError::transfer_not_found())
        }
        Owner::PathUser(_) | Owner::QueryUser(_) | Owner::Body => Ok(()),
    }
}
