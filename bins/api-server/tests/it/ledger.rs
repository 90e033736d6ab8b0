//! The ledger and users over HTTP: a whole flow (rewards, transfers with idempotent retries,
//! holds, batches, NFTs, blocks), problem documents for bad input, and write tokens.

use std::time::Duration;

use db_core::sqlx;
use db_core::testing::TestDb;
use serde_json::{Value, json};

use crate::{documented_fields, fields, spawn, spawn_binary, terminate, units, with_database};

pub(crate) struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub token: Option<String>,
}

impl Api {
    /// A client of the server at `base`, sending no token.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            client: reqwest::Client::new(),
            token: None,
        }
    }

    /// The same client, sending `token` as its bearer token.
    pub fn with_token(self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self
        }
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "POST" => self.client.post(url),
            "PUT" => self.client.put(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.get(url),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        if status >= 400 {
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{method} {path}"
            );
        }
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, Some(body), None).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("PUT", path, Some(body), None).await
    }

    pub async fn user(&self, email: &str) -> String {
        let (status, user) = self.post("/api/v1/users", json!({ "email": email })).await;
        assert_eq!(status, 201, "{user}");
        user["id"].as_str().unwrap().to_owned()
    }

    /// Issues `amount` tokens to the rewards pool (the treasury's operation).
    pub async fn fund_pool(&self, amount: &str) {
        let (status, issued) = self
            .post(
                "/api/v1/ledger/issuance",
                json!({ "to": "rewards_pool", "amount": amount }),
            )
            .await;
        assert_eq!(status, 201, "{issued}");
    }

    /// A new user's wallet paid `tokens` from the rewards pool (funded beforehand).
    pub async fn funded_wallet(&self, email: &str, tokens: &str) -> (String, String) {
        let user = self.user(email).await;
        let wallet = self.wallet(&user).await;
        let reward =
            json!({ "user_id": user, "reason": "seed", "reference": "r", "amount": tokens });
        let (status, paid) = self.post("/api/v1/ledger/rewards", reward).await;
        assert_eq!(status, 200, "{paid}");
        (user, wallet)
    }

    async fn wallet(&self, user: &str) -> String {
        let (status, wallet) = self
            .post("/api/v1/ledger/wallets", json!({ "user_id": user }))
            .await;
        assert_eq!(status, 200, "{wallet}");
        wallet["id"].as_str().unwrap().to_owned()
    }
}

const TOKEN: u64 = 1_000_000_000;

/// The balances (in tokens) of `wallets` wallets that started with `start` each, once the
/// transfers the `clients` applied (`(from, to, amount)` by wallet index) have moved it; and
/// how many they applied.
pub(crate) async fn expected_balances(
    clients: Vec<tokio::task::JoinHandle<Vec<(usize, usize, i64)>>>,
    wallets: usize,
    start: i64,
) -> (std::collections::HashMap<usize, i64>, usize) {
    let mut expected: std::collections::HashMap<usize, i64> =
        (0..wallets).map(|wallet| (wallet, start)).collect();
    let mut count = 0;
    for client in clients {
        for (from, to, amount) in client.await.unwrap() {
            *expected.get_mut(&from).unwrap() -= amount;
            *expected.get_mut(&to).unwrap() += amount;
            count += 1;
        }
    }
    (expected, count)
}

#[tokio::test]
async fn a_ledger_flow_over_http() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(with_database(&db)).await;
    let api = Api::new(&base);
    let (alice, bob) = (
        api.user("alice@example.com").await,
        api.user("bob@example.com").await,
    );
    let (status, again) = api
        .post("/api/v1/users", json!({ "email": "alice@example.com" }))
        .await;
    assert_eq!(
        (status, again["type"].as_str()),
        (409, Some("/problems/email-taken"))
    );
    let (alice_wallet, bob_wallet) = (api.wallet(&alice).await, api.wallet(&bob).await);

    // Funds come as a reward from the rewards pool (funded by issuance), once per (user,
    // reason, reference).
    api.fund_pool("1000").await;
    let reward =
        json!({ "user_id": alice, "reason": "signup", "reference": "welcome", "amount": "100" });
    let (status, paid) = api.post("/api/v1/ledger/rewards", reward.clone()).await;
    assert_eq!(status, 200, "{paid}");
    let (status, _) = api.post("/api/v1/ledger/rewards", reward).await;
    assert_eq!(
        status, 200,
        "paying the same reward again pays nothing more"
    );
    let (_, wallet) = api
        .get(&format!("/api/v1/ledger/wallets/{alice_wallet}"))
        .await;
    assert_eq!(units(&wallet["posted"]), 100 * TOKEN);
    assert_eq!(units(&wallet["available"]), 100 * TOKEN);

    // A transfer, retried with its Idempotency-Key: applied once.
    let transfer = json!({ "debit": alice_wallet, "credit": bob_wallet, "amount": "12.5", "reason": "dinner" });
    let (status, first) = api
        .send(
            "POST",
            "/api/v1/ledger/transfers",
            Some(transfer.clone()),
            Some("order-1"),
        )
        .await;
    assert_eq!(
        (status, first["replayed"].as_bool()),
        (201, Some(false)),
        "{first}"
    );
    let (status, retry) = api
        .send(
            "POST",
            "/api/v1/ledger/transfers",
            Some(transfer.clone()),
            Some("order-1"),
        )
        .await;
    assert_eq!((status, retry["replayed"].as_bool()), (200, Some(true)));
    assert_eq!(retry["transfer"]["id"], first["transfer"]["id"]);
    let mut changed = transfer.clone();
    changed["amount"] = json!("13");
    let (status, conflict) = api
        .send(
            "POST",
            "/api/v1/ledger/transfers",
            Some(changed),
            Some("order-1"),
        )
        .await;
    assert_eq!(
        (status, conflict["type"].as_str()),
        (409, Some("/problems/idempotency-conflict"))
    );
    let (_, bob_view) = api
        .get(&format!("/api/v1/ledger/wallets/{bob_wallet}"))
        .await;
    assert_eq!(units(&bob_view["posted"]), 12 * TOKEN + TOKEN / 2);
    // The document describes these answers field for field.
    let (_, document) = api.get("/api-docs/openapi.json").await;
    let schema = |name: &str| documented_fields(&document, name);
    assert_eq!(fields(&first["transfer"]), schema("Transfer"));
    assert_eq!(fields(&first), schema("Applied"));
    assert_eq!(fields(&bob_view), schema("WalletView"));
    let id = first["transfer"]["id"].as_str().unwrap();
    let (status, stored) = api.get(&format!("/api/v1/ledger/transfers/{id}")).await;
    assert_eq!((status, stored["reason"].as_str()), (200, Some("dinner")));

    // A hold, posted in part; a void of it afterwards is refused.
    let hold = json!({ "debit": alice_wallet, "credit": bob_wallet, "amount": "10", "hold_timeout_ms": 60_000 });
    let (status, held) = api.post("/api/v1/ledger/transfers", hold).await;
    assert_eq!(status, 201, "{held}");
    let pending = held["transfer"]["id"].as_str().unwrap();
    let (status, posted) = api
        .post(
            &format!("/api/v1/ledger/transfers/{pending}/post"),
            json!({ "amount": "4" }),
        )
        .await;
    assert_eq!(status, 201, "{posted}");
    let (status, refused) = api
        .post(
            &format!("/api/v1/ledger/transfers/{pending}/void"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, refused["type"].as_str()),
        (409, Some("/problems/pending-resolved"))
    );

    // A linked batch with one impossible transfer applies nothing.
    let (status, batch) = api
        .post(
            "/api/v1/ledger/transfers/batch",
            json!({ "mode": "linked", "transfers": [
                { "debit": alice_wallet, "credit": bob_wallet, "amount": "1" },
                { "debit": bob_wallet, "credit": alice_wallet, "amount": "1000000" },
            ]}),
        )
        .await;
    assert_eq!(
        (status, batch["applied"].as_u64()),
        (200, Some(0)),
        "{batch}"
    );
    assert_eq!(
        batch["results"][1]["error"]["type"],
        "/problems/insufficient-funds"
    );
    assert_eq!(
        batch["results"][0]["error"]["type"],
        "/problems/linked-transfer-failed"
    );

    let (status, statement) = api
        .get(&format!(
            "/api/v1/ledger/wallets/{alice_wallet}/statement?limit=10"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        statement["entries"].as_array().unwrap().len(),
        4,
        "{statement}"
    );
    let (status, balance) = api
        .get(&format!("/api/v1/ledger/wallets/{bob_wallet}/balance"))
        .await;
    assert_eq!(
        (status, units(&balance["posted"])),
        (200, 16 * TOKEN + TOKEN / 2)
    );
    assert_eq!(fields(&statement), schema("Statement"));
    assert_eq!(fields(&statement["entries"][0]), schema("StatementEntry"));
    assert_eq!(fields(&balance), schema("BalanceAt"));
    assert_eq!(fields(&batch), schema("BatchOutcome"));

    // A hold voided: nothing moves, and it can no longer be posted.
    let hold = json!({ "debit": alice_wallet, "credit": bob_wallet, "amount": "3", "hold_timeout_ms": 60_000 });
    let (status, held) = api.post("/api/v1/ledger/transfers", hold).await;
    assert_eq!(status, 201, "{held}");
    let pending = held["transfer"]["id"].as_str().unwrap();
    let void = format!("/api/v1/ledger/transfers/{pending}/void");
    let (status, voided) = api.post(&void, json!({})).await;
    assert_eq!(status, 201, "{voided}");
    let (status, refused) = api
        .post(
            &format!("/api/v1/ledger/transfers/{pending}/post"),
            json!({ "amount": "3" }),
        )
        .await;
    assert_eq!(
        (status, refused["type"].as_str()),
        (409, Some("/problems/pending-resolved"))
    );
    let (_, bob_view) = api
        .get(&format!("/api/v1/ledger/wallets/{bob_wallet}"))
        .await;
    assert_eq!(
        units(&bob_view["posted"]),
        16 * TOKEN + TOKEN / 2,
        "{bob_view}"
    );

    // NFTs: minted, transferred, burned.
    let (status, nft) = api
        .post(
            "/api/v1/ledger/nfts",
            json!({ "owner": alice, "collection": "badges" }),
        )
        .await;
    assert_eq!(status, 201, "{nft}");
    assert_eq!(fields(&nft), schema("Nft"));
    let nft_id = nft["id"].as_str().unwrap();
    let (status, moved) = api
        .post(
            &format!("/api/v1/ledger/nfts/{nft_id}/transfer"),
            json!({ "from": alice, "to": bob }),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(fields(&moved), schema("Nft"));
    let (status, wrong) = api
        .post(
            &format!("/api/v1/ledger/nfts/{nft_id}/burn"),
            json!({ "from": alice }),
        )
        .await;
    assert_eq!(
        (status, wrong["type"].as_str()),
        (409, Some("/problems/nft-not-owned"))
    );
    let (_, bobs) = api.get(&format!("/api/v1/ledger/nfts?owner={bob}")).await;
    assert_eq!(bobs.as_array().unwrap().len(), 1);
    let (status, _) = api
        .post(
            &format!("/api/v1/ledger/nfts/{nft_id}/burn"),
            json!({ "from": bob }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, history) = api.get(&format!("/api/v1/ledger/nfts/{nft_id}")).await;
    assert_eq!(history["history"].as_array().unwrap().len(), 3, "{history}");
    assert_eq!(fields(&history), schema("NftWithHistory"));
    assert_eq!(fields(&history["history"][0]), schema("NftMovement"));

    let (status, rewards) = api
        .get(&format!("/api/v1/ledger/rewards?user={alice}"))
        .await;
    assert_eq!((status, rewards.as_array().unwrap().len()), (200, 1));
    assert_eq!(fields(&rewards[0]), schema("Reward"));
    let (status, verification) = api.get("/api/v1/ledger/blocks/verify").await;
    assert_eq!((status, verification["valid"].as_bool()), (200, Some(true)));
    assert_eq!(fields(&verification), schema("ChainVerification"));
    assert_eq!(fields(&verification["verification"]), schema("ChainCheck"));
    // The sealer seals every second, once the transfers are final (the test cluster is
    // shared, so that can take a moment).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let block = loop {
        let (status, blocks) = api.get("/api/v1/ledger/blocks?limit=5").await;
        assert_eq!(status, 200);
        if let Some(block) = blocks.as_array().unwrap().first() {
            break block.clone();
        }
        assert!(std::time::Instant::now() < deadline, "nothing sealed");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(fields(&block), schema("Block"));

    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_input_gets_a_problem_document_never_a_500() {
    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = with_database(&db);
    settings.server.max_body_bytes = 64 * 1024;
    let (base, handle, running) = spawn(settings).await;
    let api = Api::new(&base);
    let alice = api.user("carol@example.com").await;
    let wallet = api.wallet(&alice).await;
    let other = api.wallet(&api.user("dave@example.com").await).await;
    let transfer = |amount: Value| json!({ "debit": wallet, "credit": other, "amount": amount });

    let raw = |body: &'static str, content_type: &'static str| {
        let (client, base) = (api.client.clone(), base.clone());
        async move {
            let response = client
                .post(format!("{base}/api/v1/ledger/transfers"))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, problem) = raw("{\"debit\": ", "application/json").await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("/problems/malformed-json"))
    );
    let (status, _) = raw("{}", "text/plain").await;
    assert_eq!(status, 415);

    let (status, problem) = api
        .post("/api/v1/ledger/transfers", transfer(json!(5)))
        .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("/problems/invalid-field"))
    );
    assert!(
        problem["detail"].as_str().unwrap().starts_with("amount"),
        "{problem}"
    );
    let (status, problem) = api
        .post("/api/v1/ledger/transfers", transfer(json!("-1")))
        .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (422, Some("/problems/invalid-amount")),
        "{problem}"
    );
    let (status, problem) = api
        .post("/api/v1/ledger/transfers", transfer(json!("99999999999")))
        .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (422, Some("/problems/amount-out-of-range")),
        "{problem}"
    );
    let (status, problem) = api
        .post("/api/v1/ledger/transfers", transfer(json!("1")))
        .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (409, Some("/problems/insufficient-funds"))
    );
    let mut unknown = transfer(json!("1"));
    unknown["credit"] = json!(uuid::Uuid::new_v4());
    let (status, problem) = api.post("/api/v1/ledger/transfers", unknown).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (404, Some("/problems/wallet-not-found")),
        "{problem}"
    );
    let mut extra = transfer(json!("1"));
    extra["colour"] = json!("blue");
    let (status, _) = api.post("/api/v1/ledger/transfers", extra).await;
    assert_eq!(status, 400, "unknown fields are refused");

    let (status, problem) = api.get("/api/v1/ledger/wallets/not-a-uuid").await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("/problems/invalid-path"))
    );
    let (status, problem) = api
        .get(&format!("/api/v1/ledger/wallets/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (404, Some("/problems/wallet-not-found"))
    );
    let (status, problem) = api
        .get(&format!(
            "/api/v1/ledger/wallets/{wallet}/statement?limit=100000"
        ))
        .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (422, Some("/problems/invalid-field"))
    );
    let (status, problem) = api.get("/api/v1/nowhere").await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (404, Some("/problems/no-such-route"))
    );
    let (status, problem) = api.post("/api/v1/users", json!({ "email": "a@@b" })).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (422, Some("/problems/invalid-field"))
    );

    let huge =
        json!({ "debit": wallet, "credit": other, "amount": "1", "reason": "x".repeat(70_000) });
    let (status, problem) = api.post("/api/v1/ledger/transfers", huge).await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (413, Some("/problems/body-too-large"))
    );
    assert_eq!(
        problem["detail"], "at most 65536 bytes",
        "the configured limit"
    );
    let (status, problem) = api
        .send(
            "POST",
            "/api/v1/ledger/transfers",
            Some(transfer(json!("1"))),
            Some(" "),
        )
        .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("/problems/invalid-idempotency-key"))
    );

    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn writes_need_a_token_and_reads_too_unless_configured() {
    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = with_database(&db);
    settings.auth.tokens = vec![crate::service(
        "go-backend",
        "api-token-0123456789ab",
        &crate::BACKEND_SCOPES,
    )];
    settings.auth.read_requires_token = false;
    let (base, handle, running) = spawn(settings.clone()).await;
    let anonymous = Api::new(&base);
    let (status, problem) = anonymous
        .post("/api/v1/users", json!({ "email": "e@example.com" }))
        .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (401, Some("/problems/missing-token"))
    );
    let writer = Api::new(&base).with_token("api-token-0123456789ab");
    let user = writer.user("e@example.com").await;
    let (status, _) = anonymous.get(&format!("/api/v1/users/{user}")).await;
    assert_eq!(status, 200, "reads are open when so configured");
    handle.stop(true).await;
    running.await.unwrap().unwrap();

    settings.auth.read_requires_token = true;
    assert!(access::AuthConfig::default().read_requires_token);
    let (base, handle, running) = spawn(settings).await;
    let anonymous = Api::new(&base);
    let (status, _) = anonymous.get(&format!("/api/v1/users/{user}")).await;
    assert_eq!(status, 401);
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// Many clients transferring among a few wallets at once, some retrying with the same key at
/// the same moment: no overdraft, nothing applied twice, and the balances are exactly what the
/// acknowledged transfers say.
#[tokio::test]
async fn concurrent_transfers_apply_once_and_never_overdraw() {
    use std::sync::Arc;

    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(with_database(&db)).await;
    let api = Arc::new(Api::new(&base));
    api.fund_pool("60").await;
    const WALLETS: usize = 6;
    let mut wallets = Vec::new();
    for n in 0..WALLETS {
        let (_, wallet) = api
            .funded_wallet(&format!("gather-{n}@example.com"), "10")
            .await;
        wallets.push(wallet);
    }
    let wallets = Arc::new(wallets);

    // 32 clients, 20 transfers each of 1 to 4 tokens among six wallets of 10: many are
    // refused for want of funds (409). Every fourth is sent twice at once with the same key.
    let clients: Vec<_> = (0..32_usize)
        .map(|client| {
            let (api, wallets) = (api.clone(), wallets.clone());
            tokio::spawn(async move {
                let mut applied = Vec::new();
                for n in 0..20_usize {
                    let from = (client + n) % WALLETS;
                    let to = (from + 1 + (client * 3 + n) % (WALLETS - 1)) % WALLETS;
                    let amount = 1 + (client + 2 * n) % 4;
                    let key = format!("c{client}-t{n}");
                    let body = json!({ "debit": wallets[from], "credit": wallets[to], "amount": amount.to_string() });
                    let sends = if n % 4 == 0 { 2 } else { 1 };
                    let answers = futures_util::future::join_all((0..sends).map(|_| {
                        api.send("POST", "/api/v1/ledger/transfers", Some(body.clone()), Some(&key))
                    }))
                    .await;
                    let created = answers.iter().filter(|(status, _)| *status == 201).count();
                    assert!(created <= 1, "applied twice: {answers:?}");
                    for (status, answer) in &answers {
                        match status {
                            201 | 200 => assert_eq!(units(&answer["transfer"]["amount"]), (amount as u64) * TOKEN),
                            409 => assert_eq!(answer["type"], "/problems/insufficient-funds", "{answer}"),
                            _ => panic!("unexpected {status}: {answer}"),
                        }
                    }
                    if created == 1 {
                        applied.push((from, to, amount as i64));
                    }
                }
                applied
            })
        })
        .collect();
    let (expected, count) = expected_balances(clients, WALLETS, 10).await;
    assert!(count > 100, "only {count} transfers applied");
    for (index, wallet) in wallets.iter().enumerate() {
        let (status, balance) = api.get(&format!("/api/v1/ledger/wallets/{wallet}")).await;
        assert_eq!(status, 200);
        let posted = units(&balance["posted"]) as i64;
        assert!(posted >= 0, "wallet {index} overdrawn: {balance}");
        assert_eq!(posted, expected[&index] * TOKEN as i64, "wallet {index}");
    }
    let ledger = ledger::PgLedger::new(
        db_core::Db::connect_with(&db_core::DbConfig::default(), db.connect_options())
            .await
            .unwrap(),
        ledger::LedgerConfig::default(),
    );
    let report = ledger::Ledger::check_invariants(&ledger).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.violations);
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// Writes from several clients while the server gets SIGTERM: every acknowledged transfer and
/// event is stored, and the ledger holds exactly the transfers it applied, each whole.
#[tokio::test]
async fn sigterm_under_load_loses_no_acknowledged_write() {
    const CLIENTS: usize = 8;
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, mut server) = spawn_binary(&db, "").await;
    let api = Api::new(&base);
    let (alice, bob) = (
        api.user("term-alice@example.com").await,
        api.user("term-bob@example.com").await,
    );
    let (alice_wallet, bob_wallet) = (api.wallet(&alice).await, api.wallet(&bob).await);
    let reward =
        json!({ "user_id": alice, "reason": "signup", "reference": "sigterm", "amount": "5" });
    api.fund_pool("5").await;
    assert_eq!(api.post("/api/v1/ledger/rewards", reward).await.0, 200);

    // Each client alternates a transfer of one unit and an event until the server refuses or
    // goes away, and keeps what was acknowledged.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (base, debit, credit) = (base.clone(), alice_wallet.clone(), bob_wallet.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                // The answer's status and body; `None` once the server is gone or shutting
                // down.
                let post = |path: &str, body: Value| {
                    let request = http.post(format!("{base}{path}")).json(&body).send();
                    async move {
                        let answer = request.await.ok()?;
                        let status = answer.status().as_u16();
                        let body = answer.json::<Value>().await.unwrap_or(Value::Null);
                        (status != 503).then_some((status, body))
                    }
                };
                let (mut transfers, mut events) = (Vec::new(), Vec::new());
                for n in 0.. {
                    let id = uuid::Uuid::new_v4();
                    let transfer = json!({ "id": id, "debit": debit, "credit": credit,
                                           "amount": "0.000000001" });
                    match post("/api/v1/ledger/transfers", transfer).await {
                        // 200 answers a replay: the engine retries a call whose outcome it did
                        // not see and finds the transfer applied. Stored either way.
                        Some((201 | 200, _)) => transfers.push(id),
                        None => break,
                        Some((status, body)) => panic!("transfer answered {status}: {body}"),
                    }
                    let tag = format!("{client}-{n}");
                    let event = json!({ "kind": "sigterm", "properties": { "tag": tag } });
                    match post("/api/v1/analytics/events", event).await {
                        Some((202, _)) => events.push(tag),
                        None => break,
                        Some((status, body)) => panic!("event answered {status}: {body}"),
                    }
                }
                (transfers, events)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(terminate(&mut server).await.success());
    let (mut transfers, mut events) = (Vec::new(), Vec::new());
    for client in clients {
        let (acknowledged_transfers, acknowledged_events) = client.await.unwrap();
        transfers.extend(acknowledged_transfers);
        events.extend(acknowledged_events);
    }
    assert!(
        transfers.len() > 10 && events.len() > 10,
        "the load ran: {} transfers, {} events",
        transfers.len(),
        events.len()
    );

    let stored_transfers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM blockchain.fodi_transactions WHERE id = ANY($1)")
            .bind(&transfers)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        stored_transfers as usize,
        transfers.len(),
        "acknowledged transfers stored"
    );
    let stored_events: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT properties->>'tag') FROM analytics.events
          WHERE kind = 'sigterm' AND properties->>'tag' = ANY($1)",
    )
    .bind(&events)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        stored_events as usize,
        events.len(),
        "acknowledged events stored"
    );

    // Whole transfers only: Bob holds one unit per transfer applied (acknowledged or not),
    // and the two wallets together hold the reward.
    let applied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM blockchain.fodi_transactions WHERE credit_wallet_id = $1::uuid",
    )
    .bind(&bob_wallet)
    .fetch_one(db.pool())
    .await
    .unwrap();
    let posted = |wallet: String| {
        let pool = db.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT sum(posted)::bigint FROM blockchain.balances WHERE wallet_id = $1::uuid",
            )
            .bind(wallet)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (alice_posted, bob_posted) = (posted(alice_wallet).await, posted(bob_wallet).await);
    assert!(applied as usize >= transfers.len());
    assert_eq!(bob_posted, applied);
    assert_eq!(alice_posted + bob_posted, 5 * TOKEN as i64);
}
