//! Why a request is refused. The api-server maps each refusal to its problem document (its
//! `error` module): the status and kind are the server's, the detail is [`Refusal`]'s.

use std::time::Duration;

use ledger::{LedgerError, NftId, WalletId};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No bearer token where one is needed (401).
    #[error("a bearer token is required")]
    MissingToken,
    /// A bearer token that proves nothing (401), with why when that helps (a JWT's reason).
    #[error("the bearer token is not valid{}", .0.as_deref().map(|why| format!(": {why}")).unwrap_or_default())]
    InvalidToken(Option<String>),
    /// The caller may not do this (403); the text says why.
    #[error("{0}")]
    Forbidden(String),
    /// Another user's wallet, answered as a wallet that does not exist (404).
    #[error("no such wallet: {0}")]
    HiddenWallet(WalletId),
    /// Another user's NFT, answered as an NFT that does not exist (404).
    #[error("no such NFT: {0:?}")]
    HiddenNft(NftId),
    /// A transfer of nobody's wallet the user holds, answered as no such transfer (404).
    #[error("no such transfer")]
    HiddenTransfer,
    /// The path's `id` does not parse (400).
    #[error("the path is invalid")]
    InvalidPath,
    /// The caller is past its rate limit under `key` (429); `wait` until the next request.
    #[error("{key}: try again in {} ms", .wait.as_millis())]
    RateLimited { key: String, wait: Duration },
    /// Looking up who owns what the request names failed (a missing wallet is 404, a
    /// database that is away 503).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A route without a rule: a fault of the server, never of the caller (500).
    #[error("no access rule for {method} {route:?}")]
    NoRule {
        method: String,
        route: Option<String>,
    },
}

impl Refusal {
    pub(crate) fn forbidden(why: &str) -> Self {
        Refusal::Forbidden(why.to_owned())
    }
}
