//! Trust boundaries, tested from the attacker's side: every operation of the served document
//! called as every kind of caller against the access table; the ways money could be created
//! without issuance; end users' tokens refused one flaw at a time; ids no one can squat; holds
//! that lapse by themselves. Each refusal is checked in the answer and in the database.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use access::Scope;
use access::jwt::JwtConfig;
use access::rules::{self, Owner, Users};
use api_server::settings::Settings;
use db_core::sqlx;
use db_core::testing::TestDb;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use crate::ledger::Api;
use crate::{openapi_document, service, spawn, with_database};

const SECRET: &str = "the-core-backend-signs-with-this-32+";
const ISSUER: &str = "fodi-core";
const AUDIENCE: &str = "fodi-api";

/// The token of the service holding only `scope`.
fn token_of(scope: Scope) -> String {
    format!(
        "token-of-{}-0123456789abcdef",
        scope.name().replace(':', "-")
    )
}

/// The treasury's desk: it moves money as well as issuing it.
const DESK: &str = "token-of-the-treasury-desk-0123456789";

fn secured(db: &TestDb) -> Settings {
    let mut settings = with_database(db);
    settings.auth.tokens = Scope::ALL
        .iter()
        .map(|scope| service(scope.name(), &token_of(*scope), &[*scope]))
        .collect();
    settings.auth.tokens.push(service(
        "desk",
        DESK,
        &[Scope::LedgerWrite, Scope::Treasury],
    ));
    settings.auth.jwt = Some(JwtConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        algorithm: "HS256".into(),
        hs256_secret: Some(SECRET.into()),
        public_key_file: None,
        leeway: Duration::from_secs(5),
    });
    settings
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A user's JWT as the core backend would sign it, with `claims` changed as given.
fn jwt(user: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut claims = json!({ "sub": user, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600 });
    change(&mut claims);
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// What the tests below need in place: two users with wallets, the first funded.
struct World {
    api: Api,
    alice: String,
    bob: String,
    alice_wallet: String,
    bob_wallet: String,
}

impl World {
    async fn new(base: &str) -> Self {
        let api = Api::new(base).with_token(&token_of(Scope::UsersWrite));
        let (alice, bob) = (
            api.user(&format!("alice-{}@example.com", uuid::Uuid::new_v4()))
                .await,
            api.user(&format!("bob-{}@example.com", uuid::Uuid::new_v4()))
                .await,
        );
        let writer = Api::new(base).with_token(&token_of(Scope::LedgerWrite));
        let mut wallets = Vec::new();
        for user in [&alice, &bob] {
            let (status, wallet) = writer
                .post("/api/v1/ledger/wallets", json!({ "user_id": user }))
                .await;
            assert_eq!(status, 200, "{wallet}");
            wallets.push(wallet["id"].as_str().unwrap().to_owned());
        }
        let treasury = Api::new(base).with_token(&token_of(Scope::Treasury));
        let (status, issued) = treasury
            .post(
                "/api/v1/ledger/issuance",
                json!({ "to": wallets[0], "amount": "100" }),
            )
            .await;
        assert_eq!(status, 201, "{issued}");
        Self {
            api: Api::new(base),
            alice,
            bob,
            alice_wallet: wallets[0].clone(),
            bob_wallet: wallets[1].clone(),
        }
    }

    fn as_token(&self, token: &str) -> Api {
        Api::new(&self.api.base).with_token(token)
    }

    async fn balance(&self, wallet: &str) -> i64 {
        let reader = self.as_token(&token_of(Scope::Read));
        let (status, wallet) = reader
            .get(&format!("/api/v1/ledger/wallets/{wallet}"))
            .await;
        assert_eq!(status, 200, "{wallet}");
        crate::units(&wallet["posted"]) as i64
    }
}

/// The ledger of `db`, through the library.
async fn library(db: &TestDb) -> ledger::PgLedger {
    ledger::PgLedger::new(
        db_core::Db::connect_with(&db_core::DbConfig::default(), db.connect_options())
            .await
            .unwrap(),
        ledger::LedgerConfig::default(),
    )
}

async fn assert_invariants(db: &TestDb) {
    let report = ledger::Ledger::check_invariants(&library(db).await)
        .await
        .unwrap();
    assert!(report.is_ok(), "{:#?}", report.violations);
}

/// Every operation of the served document, as: anonymous, each service scope, a user on their
/// own resources, a user on someone else's. Each answer must be what the access table says;
/// an operation without a rule fails the test.
#[tokio::test]
async fn every_operation_answers_every_caller_as_the_access_table_says() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(secured(&db)).await;
    let world = World::new(&base).await;
    let minter = world.as_token(&token_of(Scope::LedgerWrite));
    let (status, nft) = minter
        .post(
            "/api/v1/ledger/nfts",
            json!({ "owner": world.alice, "collection": "badges" }),
        )
        .await;
    assert_eq!(status, 201, "{nft}");
    let nft = nft["id"].as_str().unwrap().to_owned();
    // A transfer between alice and carol: none of bob's business.
    let carol = world
        .as_token(&token_of(Scope::UsersWrite))
        .user("carol@example.com")
        .await;
    let (_, carol_wallet) = minter
        .post("/api/v1/ledger/wallets", json!({ "user_id": carol }))
        .await;
    let (status, moved) = world
        .as_token(&jwt(&world.alice, |_| {}))
        .post(
            "/api/v1/ledger/transfers",
            json!({ "debit": world.alice_wallet, "credit": carol_wallet["id"], "amount": "1" }),
        )
        .await;
    assert_eq!(status, 201, "a user pays from their own wallet: {moved}");
    assert_eq!(
        moved["transfer"]["submitted_by"],
        format!("user:{}", world.alice)
    );
    let transfer = moved["transfer"]["id"].as_str().unwrap().to_owned();

    let document = openapi_document(&base).await;
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            let rule = rules::rule_for(&method, Some(path))
                .unwrap_or_else(|| panic!("{method} {path} has no rule in the access table"));
            // The path and body name alice's resources.
            let family = if path.contains("/nfts/") {
                &nft
            } else if path.contains("/transfers/") {
                &transfer
            } else if path.contains("/wallets/") {
                &world.alice_wallet
            } else {
                &world.alice
            };
            let url = path
                .replace("{id}", family)
                .replace("{user}", &world.alice)
                .replace("{key}", "k")
                .replace("{name}", "backend")
                .replace("{action}", "restart");
            let url = match rule.users {
                Users::Own(Owner::QueryUser(parameter)) => {
                    format!("{url}?{parameter}={}", world.alice)
                }
                _ => url,
            };
            let body = match path.as_str() {
                "/api/v1/ledger/wallets" => json!({ "user_id": world.alice }),
                "/api/v1/ledger/transfers" => json!({
                    "debit": world.alice_wallet, "credit": world.bob_wallet, "amount": "0.000000001"
                }),
                "/api/v1/ledger/transfers/batch" => json!({ "mode": "linked", "transfers": [{
                    "debit": world.alice_wallet, "credit": world.bob_wallet, "amount": "0.000000001"
                }] }),
                "/api/v1/ledger/nfts/{id}/transfer" => {
                    json!({ "from": world.alice, "to": world.bob })
                }
                "/api/v1/ledger/nfts/{id}/burn" => json!({ "from": world.alice }),
                _ => json!({}),
            };
            let call = |token: Option<String>| {
                let api = match &token {
                    Some(token) => world.as_token(token),
                    None => Api::new(&base),
                };
                let (method, url, body) = (method.clone(), url.clone(), body.clone());
                async move {
                    let body = (method != "GET" && method != "DELETE").then_some(body);
                    api.send(&method, &url, body, None).await
                }
            };
            let admitted = |status: u16| status != 401 && status != 403;
            let label = format!("{method} {path}");

            let (status, answer) = call(None).await;
            match rule.scope {
                None => assert!(admitted(status), "{label} anonymous: {status} {answer}"),
                Some(_) => assert_eq!(status, 401, "{label} anonymous: {answer}"),
            }
            for scope in Scope::ALL {
                let (status, answer) = call(Some(token_of(scope))).await;
                let allowed = rule.scope.is_none_or(|needed| needed == scope);
                assert_eq!(
                    admitted(status),
                    allowed,
                    "{label} as {}: {status} {answer}",
                    scope.name()
                );
            }
            let (status, answer) = call(Some(jwt(&world.alice, |_| {}))).await;
            let own_allowed = rule.scope.is_none() || rule.users != Users::Never;
            assert_eq!(
                admitted(status),
                own_allowed,
                "{label} as the owner: {status} {answer}"
            );
            let (status, answer) = call(Some(jwt(&world.bob, |_| {}))).await;
            let expected = match (rule.scope, rule.users) {
                (None, _) | (_, Users::Any) => None,
                (_, Users::Never | Users::Own(Owner::PathUser(_) | Owner::QueryUser(_))) => {
                    Some(403)
                }
                (_, Users::Own(_)) if path == "/api/v1/ledger/wallets" => Some(403),
                (_, Users::Own(_)) => Some(404),
            };
            match expected {
                None => assert!(
                    admitted(status),
                    "{label} as another user: {status} {answer}"
                ),
                Some(expected) => assert_eq!(status, expected, "{label} as another user: {answer}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} operations in the document");
    assert_eq!(
        checked,
        rules::RULES.len() - 3,
        "every rule but /ws, /docs and the document's own route is an operation"
    );

    // What bob tried left nothing behind: no transfer of his, alice's NFT still hers.
    let bobs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM blockchain.fodi_transactions WHERE submitted_by = $1",
    )
    .bind(format!("user:{}", world.bob))
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(bobs, 0);
    assert_invariants(&db).await;
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// The replay that created money (a write token debiting the rewards pool), and every other
/// way around issuance, refused; issuance by the treasury then funds rewards.
#[tokio::test]
async fn only_the_treasury_creates_money_and_only_by_issuance() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(secured(&db)).await;
    let world = World::new(&base).await;
    let writer = world.as_token(&token_of(Scope::LedgerWrite));
    let rewards = world.as_token(&token_of(Scope::Rewards));
    let treasury = world.as_token(&token_of(Scope::Treasury));
    let desk = world.as_token(DESK);
    let ledger = library(&db).await;
    let system = |kind| {
        let ledger = &ledger;
        async move {
            ledger::Ledger::system_wallet(ledger, kind, &ledger::Asset::fodi())
                .await
                .unwrap()
                .id
                .to_string()
        }
    };
    let pool = system(ledger::SystemWallet::RewardsPool).await;
    let issuer = system(ledger::SystemWallet::Issuer).await;
    // With nothing issued to it, the pool pays nothing.
    let reward = |reference: &str, amount: &str| json!({ "user_id": world.bob, "reason": "order", "reference": reference, "amount": amount });
    let (status, refused) = rewards
        .post("/api/v1/ledger/rewards", reward("order:1", "1000000000"))
        .await;
    assert_eq!(
        (status, refused["type"].as_str()),
        (409, Some("/problems/insufficient-funds")),
        "{refused}"
    );

    let steal =
        |debit: &str| json!({ "debit": debit, "credit": world.bob_wallet, "amount": "1000000000" });
    for (who, debit) in [(&writer, &pool), (&writer, &issuer), (&desk, &issuer)] {
        let (status, refused) = who.post("/api/v1/ledger/transfers", steal(debit)).await;
        assert_eq!(status, 403, "{refused}");
        let batch = json!({ "mode": "independent", "transfers": [steal(debit)] });
        let (status, refused) = who.post("/api/v1/ledger/transfers/batch", batch).await;
        assert_eq!(status, 403, "{refused}");
    }
    let (status, refused) = desk.post("/api/v1/ledger/transfers", steal(&pool)).await;
    assert_eq!(
        (status, refused["type"].as_str()),
        (409, Some("/problems/insufficient-funds")),
        "the treasury may debit the pool, within its funds: {refused}"
    );
    let (status, _) = writer
        .post(
            "/api/v1/ledger/issuance",
            json!({ "to": "rewards_pool", "amount": "5" }),
        )
        .await;
    assert_eq!(status, 403);
    let (status, refused) = rewards
        .post(
            "/api/v1/ledger/rewards",
            json!({ "user_id": world.bob, "reason": "order", "reference": "x", "amount": "1", "asset": "GOLD" }),
        )
        .await;
    assert_eq!(
        (status, refused["type"].as_str()),
        (422, Some("/problems/unknown-asset")),
        "{refused}"
    );
    assert_eq!(
        world.balance(&world.bob_wallet).await,
        0,
        "nothing reached bob"
    );
    assert_eq!(world.balance(&pool).await, 0);

    let (status, issued) = treasury
        .post(
            "/api/v1/ledger/issuance",
            json!({ "to": "rewards_pool", "amount": "5", "reference": "budget:2026-12" }),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    assert_eq!(issued["transfer"]["submitted_by"], "treasury");
    let (status, paid) = rewards
        .post("/api/v1/ledger/rewards", reward("order:2", "5"))
        .await;
    assert_eq!(status, 200, "{paid}");
    let (status, refused) = rewards
        .post("/api/v1/ledger/rewards", reward("order:3", "0.000000001"))
        .await;
    assert_eq!(status, 409, "the pool is spent: {refused}");
    assert_eq!(world.balance(&world.bob_wallet).await, 5_000_000_000);
    let supply: i64 = sqlx::query_scalar(
        "SELECT -sum(b.posted)::bigint FROM blockchain.balances b
           JOIN blockchain.wallets w ON w.id = b.wallet_id WHERE w.kind = 'issuer'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(supply, 105_000_000_000, "what was issued, and nothing else");
    assert_invariants(&db).await;
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// Each flaw of an end user's token alone, on a read the user could otherwise make.
#[tokio::test]
async fn end_user_tokens_are_refused_for_any_flaw() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(secured(&db)).await;
    let world = World::new(&base).await;
    let path = format!("/api/v1/ledger/wallets/{}", world.alice_wallet);
    let (status, _) = world.as_token(&jwt(&world.alice, |_| {})).get(&path).await;
    assert_eq!(status, 200, "the well-formed token is accepted");

    let b64 = |value: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    let claims = json!({ "sub": world.alice, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600 });
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT" })),
        b64(&claims)
    );
    let other_key = jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(b"another-key-of-thirty-two-bytes-or-more").unwrap(),
    )
    .unwrap();
    let other_algorithm = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS512),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    let flawed: HashMap<&str, String> = HashMap::from([
        ("alg none", unsigned),
        ("another key", other_key),
        ("another algorithm", other_algorithm),
        (
            "expired",
            jwt(&world.alice, |claims| claims["exp"] = json!(now() - 60)),
        ),
        (
            "no expiry",
            jwt(&world.alice, |claims| {
                claims.as_object_mut().unwrap().remove("exp");
            }),
        ),
        (
            "another issuer",
            jwt(&world.alice, |claims| claims["iss"] = json!("someone")),
        ),
        (
            "another audience",
            jwt(&world.alice, |claims| claims["aud"] = json!("other-api")),
        ),
        ("sub not a user id", jwt("admin", |_| {})),
        ("tampered", {
            let token = jwt(&world.bob, |_| {});
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            parts[1] = b64(&claims);
            parts.join(".")
        }),
    ]);
    for (flaw, token) in &flawed {
        let (status, answer) = world.as_token(token).get(&path).await;
        assert_eq!(
            (status, answer["type"].as_str()),
            (401, Some("/problems/invalid-token")),
            "{flaw}: {answer}"
        );
    }
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// A reward's transfer id is derivable by anyone who knows (user, reason, reference); no
/// client can take it first, and two clients' idempotency keys never meet.
#[tokio::test]
async fn no_client_can_squat_an_id_the_ledger_derives() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(secured(&db)).await;
    let world = World::new(&base).await;
    let squatter = world.as_token(&token_of(Scope::LedgerWrite));
    let reward_id = ledger::reward_transfer_id(
        ledger::UserId(world.bob.parse().unwrap()),
        "order",
        "order:42",
    );
    let squat = json!({
        "id": reward_id.to_string(), "debit": world.alice_wallet, "credit": world.bob_wallet,
        "amount": "1"
    });
    let (status, refused) = squatter.post("/api/v1/ledger/transfers", squat).await;
    assert_eq!(
        (status, refused["type"].as_str()),
        (422, Some("/problems/invalid-field")),
        "{refused}"
    );
    // The same text as an Idempotency-Key names the squatter's own transfer, not that id.
    let transfer =
        json!({ "debit": world.alice_wallet, "credit": world.bob_wallet, "amount": "1" });
    let (status, applied) = squatter
        .send(
            "POST",
            "/api/v1/ledger/transfers",
            Some(transfer.clone()),
            Some(&reward_id.to_string()),
        )
        .await;
    assert_eq!(status, 201, "{applied}");
    assert_ne!(applied["transfer"]["id"], reward_id.to_string());
    // Another caller's same key is another transfer.
    let (status, other) = world
        .as_token(&jwt(&world.alice, |_| {}))
        .send(
            "POST",
            "/api/v1/ledger/transfers",
            Some(transfer),
            Some(&reward_id.to_string()),
        )
        .await;
    assert_eq!(status, 201, "{other}");
    assert_ne!(other["transfer"]["id"], applied["transfer"]["id"]);

    let treasury = world.as_token(&token_of(Scope::Treasury));
    let (status, _) = treasury
        .post(
            "/api/v1/ledger/issuance",
            json!({ "to": "rewards_pool", "amount": "3" }),
        )
        .await;
    assert_eq!(status, 201);
    let (status, paid) = world
        .as_token(&token_of(Scope::Rewards))
        .post(
            "/api/v1/ledger/rewards",
            json!({ "user_id": world.bob, "reason": "order", "reference": "order:42", "amount": "3" }),
        )
        .await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["id"], reward_id.to_string());
    assert_eq!(paid["replayed"], false);
    assert_invariants(&db).await;
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// A hold lapses by itself: its funds are available again within 2 s with no other call, and
/// posting or voiding it afterwards is refused as expired.
#[tokio::test]
async fn a_lapsed_hold_releases_its_funds_by_itself() {
    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = secured(&db);
    settings.jobs.hold_expiry = Duration::from_millis(100);
    let (base, handle, running) = spawn(settings).await;
    let world = World::new(&base).await;
    let alice = world.as_token(&jwt(&world.alice, |_| {}));
    let hold = json!({
        "debit": world.alice_wallet, "credit": world.bob_wallet, "amount": "60",
        "hold_timeout_ms": 200
    });
    let (status, held) = alice.post("/api/v1/ledger/transfers", hold).await;
    assert_eq!(status, 201, "{held}");
    let hold_id = held["transfer"]["id"].as_str().unwrap().to_owned();
    let reader = world.as_token(&token_of(Scope::Read));
    let available = || {
        let (reader, path) = (
            &reader,
            format!("/api/v1/ledger/wallets/{}", world.alice_wallet),
        );
        async move { crate::units(&reader.get(&path).await.1["available"]) as i64 }
    };
    assert_eq!(available().await, 40_000_000_000);
    let started = std::time::Instant::now();
    while available().await != 100_000_000_000 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the hold still reserves its funds"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let settler = world.as_token(&token_of(Scope::LedgerWrite));
    for action in ["post", "void"] {
        let (status, refused) = settler
            .post(
                &format!("/api/v1/ledger/transfers/{hold_id}/{action}"),
                json!({}),
            )
            .await;
        assert_eq!(
            (status, refused["type"].as_str()),
            (409, Some("/problems/pending-expired")),
            "{action}: {refused}"
        );
    }
    let (_, ready) = Api::new(&base).get("/ready").await;
    assert!(ready.to_string().contains("hold_expiry"), "{ready}");
    assert_eq!(world.balance(&world.bob_wallet).await, 0);
    assert_invariants(&db).await;
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// docs/security.md prints the access table the server applies.
#[test]
fn the_documented_access_table_is_the_one_applied() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/security.md"
    ))
    .unwrap();
    assert!(
        doc.contains(&rules::markdown()),
        "docs/security.md does not print the access table; it should contain:\n{}",
        rules::markdown()
    );
}

/// A user fetches the proof of their transfer once it is sealed and checks it with the CLI
/// against a block hash read before; a proof changed in one byte is refused.
#[tokio::test]
async fn a_user_checks_their_transfer_against_a_pinned_block() {
    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = secured(&db);
    settings.jobs.ledger_sealer = Duration::from_millis(100);
    let (base, handle, running) = spawn(settings).await;
    let world = World::new(&base).await;
    let alice = world.as_token(&jwt(&world.alice, |_| {}));
    let (status, paid) = alice
        .post(
            "/api/v1/ledger/transfers",
            json!({ "debit": world.alice_wallet, "credit": world.bob_wallet, "amount": "2" }),
        )
        .await;
    assert_eq!(status, 201, "{paid}");
    let id = paid["transfer"]["id"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let proof = loop {
        let (status, proof) = alice
            .get(&format!("/api/v1/ledger/transfers/{id}/proof"))
            .await;
        match status {
            200 => break proof,
            409 if started.elapsed() < Duration::from_secs(10) => {
                assert_eq!(proof["type"], "/problems/transfer-not-sealed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => panic!("{status} {proof}"),
        }
    };
    // The hash a user pinned: the transfer's block, as the block list shows it.
    let (status, blocks) = alice.get("/api/v1/ledger/blocks").await;
    assert_eq!(status, 200, "{blocks}");
    let pinned = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|block| block["height"] == proof["block_height"])
        .unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let check = |proof: &Value| {
        let file = dir.path().join("proof.json");
        std::fs::write(&file, proof.to_string()).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_api-server"))
            .args(["verify-proof", file.to_str().unwrap(), "--pinned", &pinned])
            .output()
            .unwrap()
    };
    let held = check(&proof);
    assert!(
        held.status.success(),
        "{}",
        String::from_utf8_lossy(&held.stderr)
    );
    let mut changed = proof.clone();
    let encoding = changed["leaf_encoding"].as_str().unwrap().to_owned();
    let flipped = if encoding.ends_with('0') { "1" } else { "0" };
    changed["leaf_encoding"] = json!(format!("{}{flipped}", &encoding[..encoding.len() - 1]));
    let refused = check(&changed);
    assert!(!refused.status.success(), "a changed proof was accepted");
    // Bob, credited by it, may check it too.
    let (status, _) = world
        .as_token(&jwt(&world.bob, |_| {}))
        .get(&format!("/api/v1/ledger/transfers/{id}/proof"))
        .await;
    assert_eq!(status, 200, "bob is credited: it is his transfer too");
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// An end user past their write limit is answered 429 with Retry-After, and nothing of the
/// refused requests is applied; a service token without a limit is not slowed.
#[tokio::test]
async fn a_user_past_the_write_limit_is_told_when_to_retry() {
    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = secured(&db);
    settings.limits.user_writes_per_second = 2;
    let (base, handle, running) = spawn(settings).await;
    let world = World::new(&base).await;
    let client = reqwest::Client::new();
    let transfer = json!({
        "debit": world.alice_wallet, "credit": world.bob_wallet, "amount": "0.000000001"
    });
    let send = |token: String| {
        let request = client
            .post(format!("{base}/api/v1/ledger/transfers"))
            .bearer_auth(token)
            .json(&transfer);
        async move { request.send().await.unwrap() }
    };
    let (mut applied, mut limited) = (0, 0);
    for _ in 0..10 {
        let answer = send(jwt(&world.alice, |_| {})).await;
        match answer.status().as_u16() {
            201 => applied += 1,
            429 => {
                limited += 1;
                let wait: u64 = answer.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=2).contains(&wait), "Retry-After {wait}");
                let problem: Value = answer.json().await.unwrap();
                assert_eq!(problem["type"], "/problems/rate-limited");
            }
            other => panic!("{other}: {}", answer.text().await.unwrap()),
        }
    }
    assert!(limited >= 5, "{applied} applied, {limited} limited");
    for _ in 0..10 {
        let answer = send(token_of(Scope::LedgerWrite)).await;
        assert_eq!(
            answer.status(),
            201,
            "services have no write limit by default"
        );
    }
    let alices: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM blockchain.fodi_transactions WHERE submitted_by = $1",
    )
    .bind(format!("user:{}", world.alice))
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(alices, applied, "a refused request applied nothing");
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// An end user follows the transfers of their own wallets only: naming another's wallet, or
/// the processes, is refused; unfiltered, the stream carries their transfers and no one else's.
#[tokio::test]
async fn a_user_follows_only_their_own_wallets_live() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(secured(&db)).await;
    let world = World::new(&base).await;
    let connect = |query: String| {
        let mut request = format!("{}/ws?{query}", base.replace("http://", "ws://"))
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "Authorization",
            format!("Bearer {}", jwt(&world.alice, |_| {}))
                .parse()
                .unwrap(),
        );
        tokio_tungstenite::connect_async(request)
    };
    for refused in [
        format!("topics=transfers&wallets={}", world.bob_wallet),
        "topics=processes".to_owned(),
    ] {
        match connect(refused.clone()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{refused}");
            }
            other => panic!("{refused}: {other:?}"),
        }
    }
    let (mut socket, _) = connect("topics=transfers".into()).await.unwrap();
    // Give the hub a moment to register the subscription before the transfers commit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let writer = world.as_token(&token_of(Scope::LedgerWrite));
    let carol = world
        .as_token(&token_of(Scope::UsersWrite))
        .user("live-carol@example.com")
        .await;
    let (_, carol_wallet) = writer
        .post("/api/v1/ledger/wallets", json!({ "user_id": carol }))
        .await;
    let bob_wallet = &world.bob_wallet;
    world
        .as_token(&token_of(Scope::Treasury))
        .post(
            "/api/v1/ledger/issuance",
            json!({ "to": bob_wallet, "amount": "3" }),
        )
        .await;
    let (status, others) = writer
        .post(
            "/api/v1/ledger/transfers",
            json!({ "debit": bob_wallet, "credit": carol_wallet["id"], "amount": "1" }),
        )
        .await;
    assert_eq!(status, 201, "{others}");
    let (status, hers) = writer
        .post(
            "/api/v1/ledger/transfers",
            json!({ "debit": world.alice_wallet, "credit": carol_wallet["id"], "amount": "1" }),
        )
        .await;
    assert_eq!(status, 201, "{hers}");
    // Her earlier transfers may arrive first (the issuance of `World::new`); of the two above,
    // the first she sees must be hers, bob's to carol being none of her business.
    let (hers, others) = (&hers["transfer"]["id"], &others["transfer"]["id"]);
    let frame = crate::live::next_frame(&mut socket, |frame| {
        frame["type"] == "transfer"
            && (frame["transfer"]["id"] == *hers || frame["transfer"]["id"] == *others)
    })
    .await;
    assert_eq!(
        frame["transfer"]["id"], *hers,
        "alice was shown bob's transfer"
    );
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// A client cannot pick the address its rate limit counts under by sending X-Forwarded-For,
/// nor pass for this host on `/metrics`; a listed proxy's X-Forwarded-For names the client.
#[tokio::test]
async fn forwarded_addresses_count_only_from_configured_proxies() {
    let db = TestDb::new(api_server::all_sets()).await;
    let statement = |base: &str| {
        format!(
            "{base}/api/v1/ledger/wallets/{}/statement",
            uuid::Uuid::now_v7()
        )
    };
    let client = reqwest::Client::new();
    // Six anonymous costly reads, each claiming another address: (answered, limited).
    let burst = |url: String| {
        let client = client.clone();
        async move {
            let mut limited = 0;
            for i in 0..6 {
                let answer = client
                    .get(&url)
                    .header("x-forwarded-for", format!("198.51.100.{i}"))
                    .send()
                    .await
                    .unwrap();
                match answer.status().as_u16() {
                    429 => limited += 1,
                    404 => {}
                    other => panic!("{other}: {}", answer.text().await.unwrap()),
                }
            }
            limited
        }
    };

    let mut settings = secured(&db);
    settings.auth.jwt = None;
    settings.auth.read_requires_token = false;
    settings.limits.user_costly_reads_per_second = 1;
    let (base, handle, running) = spawn(settings.clone()).await;
    assert!(
        burst(statement(&base)).await >= 3,
        "forged addresses share the peer's limit"
    );
    handle.stop(true).await;
    running.await.unwrap().unwrap();

    settings.server.trusted_proxies = vec!["127.0.0.1".into()];
    let (base, handle, running) = spawn(settings).await;
    assert_eq!(
        burst(statement(&base)).await,
        0,
        "through a listed proxy, each client has its own limit"
    );
    // Through the proxy on this host, a client elsewhere is not this host.
    let from_elsewhere = client
        .get(format!("{base}/metrics"))
        .header("x-forwarded-for", "203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_eq!(from_elsewhere.status(), 401);
    let local = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(local.status(), 200);
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// Each part of the server acts as its schema's group role, and the ledger's role cannot
/// move money around the engine. Checked on the pools the server really uses, with the
/// statements an injection or a bug would make; the database is checked afterwards.
#[tokio::test]
async fn each_part_of_the_server_has_its_schemas_rights_and_no_more() {
    let db = TestDb::new(api_server::all_sets()).await;
    // The run-time login as deployed: a member of the group roles, nothing else.
    sqlx::raw_sql(api_server::pools::ROLES_SQL)
        .execute(db.pool())
        .await
        .unwrap();
    let mut settings = secured(&db);
    let as_app = db
        .url()
        .replacen("postgres://postgres@", "postgres://fodi_app@", 1);
    assert_ne!(
        as_app,
        db.url(),
        "the test cluster's URL names its superuser"
    );
    settings.database.url = Some(as_app);
    settings.server.port = 0;
    let application = api_server::Application::build(settings).await.unwrap();
    let pools = application.pools().clone();
    let base = format!("http://127.0.0.1:{}", application.port());
    let handle = application.stop_handle();
    let running = tokio::spawn(application.run_until_stopped());

    for (pool, role) in [
        (&pools.core, "fodi_core"),
        (&pools.ai, "fodi_ai"),
        (&pools.ledger, "fodi_ledger"),
        (&pools.analytics, "fodi_analytics"),
        (&pools.readonly, "fodi_readonly"),
    ] {
        let acting: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(pool.primary())
            .await
            .unwrap();
        assert_eq!(acting, role);
    }

    // Money through the API still moves, through the engine.
    let world = World::new(&base).await;
    let refused = |pool: &db_core::Db, sql: &'static str| {
        let pool = pool.primary().clone();
        async move {
            let error = sqlx::query(sql).execute(&pool).await.unwrap_err();
            let code = error
                .as_database_error()
                .and_then(|error| error.code())
                .map(|code| code.into_owned());
            assert_eq!(code.as_deref(), Some("42501"), "{sql}: {error}");
        }
    };
    let posted_before: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(posted), 0)::bigint FROM blockchain.balances")
            .fetch_one(db.pool())
            .await
            .unwrap();
    refused(
        &pools.ledger,
        "UPDATE blockchain.balances SET posted = posted + 1000000",
    )
    .await;
    refused(
        &pools.ledger,
        "INSERT INTO blockchain.fodi_transactions (id, kind, debit_wallet_id, credit_wallet_id, amount)
         SELECT gen_random_uuid(), 'transfer', w.id, w.id, 1 FROM blockchain.wallets w LIMIT 1",
    )
    .await;
    refused(
        &pools.ledger,
        "INSERT INTO blockchain.balances (wallet_id, shard, asset, shard_count, min_balance, posted)
         SELECT id, 99, asset, 1, 0, 1000000 FROM blockchain.wallets LIMIT 1",
    )
    .await;
    refused(&pools.ledger, "DELETE FROM blockchain.pending_holds").await;
    refused(
        &pools.ai,
        "INSERT INTO blockchain.wallets (id, asset, kind) VALUES (gen_random_uuid(), 'FODI', 'user')",
    )
    .await;
    refused(
        &pools.ai,
        "INSERT INTO analytics.events (kind, time) VALUES ('x', now())",
    )
    .await;
    refused(&pools.analytics, "DELETE FROM ai.cache_entries").await;
    refused(&pools.analytics, "DELETE FROM public.users").await;
    refused(&pools.readonly, "DELETE FROM public.users").await;
    let posted_after: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(posted), 0)::bigint FROM blockchain.balances")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(posted_after, posted_before, "nothing moved");
    assert_eq!(
        reqwest::get(format!("{base}/ready"))
            .await
            .unwrap()
            .status(),
        200,
        "readiness reads the migration history as fodi_readonly"
    );
    let (status, moved) = world
        .as_token(&token_of(Scope::LedgerWrite))
        .post(
            "/api/v1/ledger/transfers",
            json!({ "debit": world.alice_wallet, "credit": world.bob_wallet, "amount": "0.000000001" }),
        )
        .await;
    assert_eq!(status, 201, "through the engine, as fodi_ledger: {moved}");
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}
