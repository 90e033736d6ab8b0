//! Callers: who they are ([`Identity`]), what a service may do ([`Scope`]), and the checks of
//! what a request names that only the resource can answer ([`Caller`]).

use std::sync::Arc;

use ledger::{Ledger, NftId, SystemWallet, TransferId, UserId, WalletId, WalletOwner};
use serde::{Deserialize, Serialize};

use crate::owners::WalletOwners;
use crate::rules::Owner;
use crate::{Refusal, Request};

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
    /// The caller of the open development server: the service `local`, every scope.
    pub(crate) fn local() -> Self {
        Identity::Service {
            name: "local".into(),
            scopes: Scope::ALL.into(),
        }
    }

    /// Records [`Identity::name`] as the span's `caller` field (without building the name of
    /// a service: the span is the request's, recorded on every request).
    pub fn record_on(&self, span: &tracing::Span) {
        span.record("caller", tracing::field::display(self));
    }

    /// See [`Caller::name`].
    pub fn name(&self) -> String {
        self.to_string()
    }
}

/// The name: `anonymous`, the service's, or `user:<id>`.
impl std::fmt::Display for Identity {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Anonymous => formatter.write_str("anonymous"),
            Identity::Service { name, .. } => formatter.write_str(name),
            Identity::User(user) => write!(formatter, "user:{}", user.as_uuid()),
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

    /// `Ok` for a service, or the user `user` themselves; forbidden for another user.
    pub fn may_act_for(&self, user: UserId) -> Result<(), Refusal> {
        match &self.identity {
            Identity::User(own) if *own != user => {
                Err(Refusal::forbidden("a user may act only for themselves"))
            }
            _ => Ok(()),
        }
    }

    /// `Ok` when the caller may debit `wallet`: a user their own wallets only; a service any
    /// user wallet, the rewards pool and the fees wallet with the treasury scope only, and the
    /// issuer never (money is created by issuance alone).
    pub async fn may_debit(&self, owners: &WalletOwners, wallet: WalletId) -> Result<(), Refusal> {
        match (&self.identity, owners.owner(wallet).await?) {
            (Identity::User(own), WalletOwner::User(owner)) if *own == owner => Ok(()),
            (Identity::User(_), _) => Err(Refusal::HiddenWallet(wallet)),
            (_, WalletOwner::System(SystemWallet::Issuer)) => Err(Refusal::forbidden(
                "the issuer is debited only by issuance (POST /api/v1/ledger/issuance)",
            )),
            (_, WalletOwner::System(_)) if !self.has(Scope::Treasury) => Err(Refusal::forbidden(
                "debiting a system wallet needs the treasury scope",
            )),
            _ => Ok(()),
        }
    }

    /// For a user on a route whose path names a ledger resource (`owner`, the rule's): `Ok`
    /// when it is theirs, else the refusal of a resource that does not exist (its existence
    /// is not theirs to learn). Services, and routes whose body names the resource, pass.
    pub async fn owns(
        &self,
        owner: Owner,
        request: &impl Request,
        ledger: &dyn Ledger,
        owners: &WalletOwners,
    ) -> Result<(), Refusal> {
        let Identity::User(user) = self.identity else {
            return Ok(());
        };
        let id = || -> Result<uuid::Uuid, Refusal> {
            request
                .path_parameter("id")
                .and_then(|id| id.parse().ok())
                .ok_or(Refusal::InvalidPath)
        };
        let mine = WalletOwner::User(user);
        match owner {
            Owner::PathWallet => {
                let wallet = WalletId(id()?);
                if owners.owner(wallet).await? == mine {
                    Ok(())
                } else {
                    Err(Refusal::HiddenWallet(wallet))
                }
            }
            Owner::PathNft => {
                let nft = ledger.nft(NftId(id()?)).await?;
                if nft.owner == Some(user) {
                    Ok(())
                } else {
                    Err(Refusal::HiddenNft(nft.id))
                }
            }
            Owner::PathTransfer => {
                let transfer = ledger
                    .get_transfer(TransferId(id()?))
                    .await?
                    .ok_or(Refusal::HiddenTransfer)?;
                for side in [transfer.debit_wallet, transfer.credit_wallet] {
                    if owners.owner(side).await? == mine {
                        return Ok(());
                    }
                }
                Err(Refusal::HiddenTransfer)
            }
            Owner::PathUser(_) | Owner::QueryUser(_) | Owner::Body => Ok(()),
        }
    }
}
