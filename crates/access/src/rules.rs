//! The access table: one rule per route, the only place access is decided. docs/security.md
//! prints it ([`markdown`]); a test calls every operation of the OpenAPI document as every
//! kind of caller and holds the answers to it.

use std::collections::HashMap;

use crate::Scope;

/// What end users (JWT callers) may do on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Users {
    /// Never: 403.
    Never,
    /// Any signed-in user (what the route serves belongs to no one).
    Any,
    /// Only on what is theirs, as `Owner` finds it; anything else is 403, or 404 where the
    /// resource's existence is not theirs to learn.
    Own(Owner),
}

/// Where a route names whose resource it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A path parameter that is the user's id (403 for another).
    PathUser(&'static str),
    /// A query parameter that is the user's id (403 for another).
    QueryUser(&'static str),
    /// The wallet `{id}` (404 for another's).
    PathWallet,
    /// The NFT `{id}` (404 for another's).
    PathNft,
    /// The transfer `{id}`, debiting or crediting one of their wallets (404 otherwise).
    PathTransfer,
    /// The body: the handler checks it (the wallets a transfer debits, the user a wallet is
    /// opened for, the NFT's current owner).
    Body,
}

/// One route's rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    /// The route as the OpenAPI document names it.
    pub path: &'static str,
    /// The scope a service token needs; `None`: open to anyone, without a token.
    pub scope: Option<Scope>,
    pub users: Users,
}

const fn rule(method: &'static str, path: &'static str, scope: Scope, users: Users) -> Rule {
    Rule {
        method,
        path,
        scope: Some(scope),
        users,
    }
}

const fn open(method: &'static str, path: &'static str) -> Rule {
    Rule {
        method,
        path,
        scope: None,
        users: Users::Any,
    }
}

use Owner::{Body, PathNft, PathTransfer, PathUser, PathWallet, QueryUser};
use Scope::{Admin, AiWrite, AnalyticsWrite, LedgerWrite, Read, Rewards, Treasury, UsersWrite};
use Users::{Any, Never, Own};

/// Every route's rule. `/metrics` is not here: it is open to this host and needs the
/// `metrics` scope from any other (see `observability`).
pub const RULES: &[Rule] = &[
    open("GET", "/health"),
    open("GET", "/ready"),
    open("GET", "/docs"),
    open("GET", "/api-docs/openapi.json"),
    rule("GET", "/ws", Read, Own(Body)),
    // users
    rule("POST", "/api/v1/users", UsersWrite, Never),
    rule("GET", "/api/v1/users/{id}", Read, Own(PathUser("id"))),
    // ledger: wallets
    rule("POST", "/api/v1/ledger/wallets", LedgerWrite, Own(Body)),
    rule("GET", "/api/v1/ledger/wallets/{id}", Read, Own(PathWallet)),
    rule(
        "GET",
        "/api/v1/ledger/wallets/{id}/statement",
        Read,
        Own(PathWallet),
    ),
    rule(
        "GET",
        "/api/v1/ledger/wallets/{id}/balance",
        Read,
        Own(PathWallet),
    ),
    // ledger: transfers and money
    rule("POST", "/api/v1/ledger/transfers", LedgerWrite, Own(Body)),
    rule(
        "POST",
        "/api/v1/ledger/transfers/batch",
        LedgerWrite,
        Own(Body),
    ),
    rule(
        "GET",
        "/api/v1/ledger/transfers/{id}",
        Read,
        Own(PathTransfer),
    ),
    rule(
        "GET",
        "/api/v1/ledger/transfers/{id}/proof",
        Read,
        Own(PathTransfer),
    ),
    rule(
        "POST",
        "/api/v1/ledger/transfers/{id}/post",
        LedgerWrite,
        Never,
    ),
    rule(
        "POST",
        "/api/v1/ledger/transfers/{id}/void",
        LedgerWrite,
        Never,
    ),
    rule("POST", "/api/v1/ledger/issuance", Treasury, Never),
    rule("POST", "/api/v1/ledger/rewards", Rewards, Never),
    rule(
        "GET",
        "/api/v1/ledger/rewards",
        Read,
        Own(QueryUser("user")),
    ),
    // ledger: NFTs
    rule("POST", "/api/v1/ledger/nfts", LedgerWrite, Never),
    rule("GET", "/api/v1/ledger/nfts", Read, Own(QueryUser("owner"))),
    rule("GET", "/api/v1/ledger/nfts/{id}", Read, Own(PathNft)),
    rule(
        "POST",
        "/api/v1/ledger/nfts/{id}/transfer",
        LedgerWrite,
        Own(PathNft),
    ),
    rule(
        "POST",
        "/api/v1/ledger/nfts/{id}/burn",
        LedgerWrite,
        Own(PathNft),
    ),
    // ledger: blocks
    rule("GET", "/api/v1/ledger/blocks", Read, Any),
    rule("GET", "/api/v1/ledger/blocks/verify", Admin, Never),
    // the assistant's memory
    rule("GET", "/api/v1/ai/examples/export", Read, Never),
    rule("DELETE", "/api/v1/ai/users/{user}", AiWrite, Never),
    rule(
        "GET",
        "/api/v1/ai/users/{user}/cache/{key}",
        Read,
        Own(PathUser("user")),
    ),
    rule("PUT", "/api/v1/ai/users/{user}/cache/{key}", AiWrite, Never),
    rule(
        "DELETE",
        "/api/v1/ai/users/{user}/cache/{key}",
        AiWrite,
        Never,
    ),
    rule(
        "GET",
        "/api/v1/ai/users/{user}/conversations",
        Read,
        Own(PathUser("user")),
    ),
    rule(
        "POST",
        "/api/v1/ai/users/{user}/conversations",
        AiWrite,
        Never,
    ),
    rule(
        "GET",
        "/api/v1/ai/users/{user}/conversations/{id}",
        Read,
        Own(PathUser("user")),
    ),
    rule(
        "DELETE",
        "/api/v1/ai/users/{user}/conversations/{id}",
        AiWrite,
        Never,
    ),
    rule(
        "GET",
        "/api/v1/ai/users/{user}/conversations/{id}/messages",
        Read,
        Own(PathUser("user")),
    ),
    rule(
        "POST",
        "/api/v1/ai/users/{user}/conversations/{id}/messages",
        AiWrite,
        Never,
    ),
    rule(
        "GET",
        "/api/v1/ai/users/{user}/conversations/{id}/window",
        Read,
        Own(PathUser("user")),
    ),
    rule("POST", "/api/v1/ai/users/{user}/examples", AiWrite, Never),
    rule(
        "GET",
        "/api/v1/ai/users/{user}/facts",
        Read,
        Own(PathUser("user")),
    ),
    rule(
        "GET",
        "/api/v1/ai/users/{user}/facts/search",
        Read,
        Own(PathUser("user")),
    ),
    rule(
        "GET",
        "/api/v1/ai/users/{user}/facts/{key}",
        Read,
        Own(PathUser("user")),
    ),
    rule("PUT", "/api/v1/ai/users/{user}/facts/{key}", AiWrite, Never),
    // analytics
    rule("POST", "/api/v1/analytics/events", AnalyticsWrite, Never),
    rule("GET", "/api/v1/analytics/events/counts", Read, Never),
    rule("POST", "/api/v1/analytics/metrics", AnalyticsWrite, Never),
    rule(
        "GET",
        "/api/v1/analytics/metrics/{name}/buckets",
        Read,
        Never,
    ),
    rule("GET", "/api/v1/analytics/daily-stats", Read, Never),
    // process administration
    rule("GET", "/api/v1/admin/processes", Admin, Never),
    rule("GET", "/api/v1/admin/processes/{name}", Admin, Never),
    rule("GET", "/api/v1/admin/processes/{name}/logs", Admin, Never),
    rule("POST", "/api/v1/admin/processes/{name}/start", Admin, Never),
    rule("POST", "/api/v1/admin/processes/{name}/stop", Admin, Never),
    rule(
        "POST",
        "/api/v1/admin/processes/{name}/restart",
        Admin,
        Never,
    ),
    rule("GET", "/api/v1/admin/backend/status", Admin, Never),
    rule("POST", "/api/v1/admin/backend/{action}", Admin, Never),
];

/// The rule of a routed request (`pattern`: actix's match pattern, in OpenAPI's form).
pub fn rule_for(method: &str, pattern: Option<&str>) -> Option<&'static Rule> {
    // Looked up on every request: a map rather than a walk through the table.
    static BY_ROUTE: std::sync::LazyLock<HashMap<(&str, &str), &Rule>> =
        std::sync::LazyLock::new(|| {
            let rules = RULES.iter();
            rules.map(|rule| ((rule.method, rule.path), rule)).collect()
        });
    BY_ROUTE.get(&(method, pattern?)).copied()
}

/// The table as docs/security.md prints it.
pub fn markdown() -> String {
    let mut table =
        String::from("| Method | Route | Service scope | End users |\n| --- | --- | --- | --- |\n");
    for rule in RULES {
        let scope = rule.scope.map_or("open (no token)".to_owned(), |scope| {
            format!("`{}`", scope.name())
        });
        let users = match (rule.scope, rule.users) {
            (None, _) => "yes".to_owned(),
            (_, Users::Never) => "no".to_owned(),
            (_, Users::Any) => "yes".to_owned(),
            (_, Users::Own(owner)) => match owner {
                Owner::PathUser(parameter) => format!("own (`{{{parameter}}}` is theirs)"),
                Owner::QueryUser(parameter) => format!("own (`?{parameter}=` is theirs)"),
                Owner::PathWallet => "own wallet (else 404)".to_owned(),
                Owner::PathNft => "own NFT (else 404)".to_owned(),
                Owner::PathTransfer => "own transfer (else 404)".to_owned(),
                Owner::Body => "own (the body names theirs)".to_owned(),
            },
        };
        table.push_str(&format!(
            "| {} | `{}` | {scope} | {users} |\n",
            rule.method, rule.path
        ));
    }
    table
}
