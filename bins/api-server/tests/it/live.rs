//! The WebSocket stream: a client receives the transfer it caused, filtered by wallet, and can
//! change its subscription.

use std::time::Duration;

use db_core::testing::TestDb;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use api_server::live::SEND_TIMEOUT;

use crate::ledger::Api;
use crate::{metrics_text, spawn, with_database};

/// Held by the tests of slow clients: they read the process-wide drop counters, which the
/// other's client would move.
static SLOW_CLIENTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Two users' wallets, the first funded with 5 tokens (a reward); returns their ids.
async fn funded_pair(api: &Api, tag: &str) -> (String, String) {
    let mut wallets = Vec::new();
    for name in ["alice", "bob"] {
        let user = api.user(&format!("{tag}-{name}@example.com")).await;
        let (_, wallet) = api
            .post("/api/v1/ledger/wallets", json!({ "user_id": user }))
            .await;
        if name == "alice" {
            api.fund_pool("5").await;
            let reward =
                json!({ "user_id": user, "reason": "signup", "reference": tag, "amount": "5" });
            let (status, paid) = api.post("/api/v1/ledger/rewards", reward).await;
            assert_eq!(status, 200, "{paid}");
        }
        wallets.push(wallet["id"].as_str().unwrap().to_owned());
    }
    (wallets[0].clone(), wallets[1].clone())
}

/// The next JSON text frame `wanted` accepts, the others skipped; within 10 s.
pub(crate) async fn next_frame<S>(socket: &mut S, wanted: impl Fn(&Value) -> bool) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let frame = async {
        loop {
            if let Message::Text(text) = socket.next().await.unwrap().unwrap() {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if wanted(&frame) {
                    return frame;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), frame)
        .await
        .expect("the awaited frame arrived")
}

#[tokio::test]
async fn a_websocket_client_receives_the_transfer_it_caused() {
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(with_database(&db)).await;
    let api = Api::new(&base);
    let (alice_wallet, bob_wallet) = funded_pair(&api, "ws").await;
    let (alice_wallet, bob_wallet) = (alice_wallet.as_str(), bob_wallet.as_str());

    let ws_base = base.replace("http://", "ws://");
    let refused = tokio_tungstenite::connect_async(format!("{ws_base}/ws?topics=gossip")).await;
    assert!(refused.is_err(), "an unknown topic is refused");
    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "{ws_base}/ws?topics=transfers&wallets={bob_wallet}"
    ))
    .await
    .unwrap();

    let (status, sent) = api
        .post(
            "/api/v1/ledger/transfers",
            json!({ "debit": alice_wallet, "credit": bob_wallet, "amount": "1.5" }),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    let id = sent["transfer"]["id"].clone();
    let received = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Message::Text(text) = socket.next().await.unwrap().unwrap() {
                let event: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(
                    event["type"], "transfer",
                    "only the subscribed topic: {event}"
                );
                if event["transfer"]["id"] == id {
                    return event;
                }
            }
        }
    })
    .await
    .expect("the transfer arrived over the WebSocket");
    assert_eq!(received["transfer"]["credit_wallet"], bob_wallet);

    socket
        .send(Message::text(
            json!({ "subscribe": { "topics": ["processes"] } }).to_string(),
        ))
        .await
        .unwrap();
    let answer = next_frame(&mut socket, |frame| frame["type"] != "transfer").await;
    assert_eq!(answer["type"], "subscribed");

    // A new filter selects: subscribed to Carol's wallet, the client gets her transfer and
    // not Bob's one before it (events come in ledger order).
    let carol = api.user("ws-carol@example.com").await;
    let (_, carol_wallet) = api
        .post("/api/v1/ledger/wallets", json!({ "user_id": carol }))
        .await;
    let carol_wallet = carol_wallet["id"].as_str().unwrap();
    socket
        .send(Message::text(
            json!({ "subscribe": { "topics": ["transfers"], "wallets": [carol_wallet] } })
                .to_string(),
        ))
        .await
        .unwrap();
    next_frame(&mut socket, |frame| frame["type"] == "subscribed").await;
    let mut sent = Vec::new();
    for credit in [bob_wallet, carol_wallet] {
        let transfer = json!({ "debit": alice_wallet, "credit": credit, "amount": "0.5" });
        let (status, answer) = api.post("/api/v1/ledger/transfers", transfer).await;
        assert_eq!(status, 201, "{answer}");
        sent.push(answer["transfer"]["id"].clone());
    }
    let first = next_frame(&mut socket, |frame| frame["type"] == "transfer").await;
    assert_eq!(
        first["transfer"]["id"], sent[1],
        "Bob's was filtered out: {first}"
    );

    // The server says goodbye on shutdown rather than waiting for the client.
    handle.stop(true).await;
    running.await.unwrap().unwrap();
    let last = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap();
    assert!(
        matches!(last, Some(Ok(Message::Close(_))) | None | Some(Err(_))),
        "{last:?}"
    );
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_not_buffered() {
    let _alone = SLOW_CLIENTS.lock().await;
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(with_database(&db)).await;
    let api = Api::new(&base);
    let (alice_wallet, bob_wallet) = funded_pair(&api, "slow").await;
    let (alice_wallet, bob_wallet) = (alice_wallet.as_str(), bob_wallet.as_str());
    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "{}/ws?topics=transfers",
        base.replace("http://", "ws://")
    ))
    .await
    .unwrap();

    // Far more events than the per-client queue and the socket buffers hold, unread.
    let dropped_before =
        dropped_clients(&base, "lagging").await + dropped_clients(&base, "not_reading").await;
    let transfer = json!({ "debit": alice_wallet, "credit": bob_wallet, "amount": "0.000000001" });
    for _ in 0..6 {
        let (status, batch) = api
            .post(
                "/api/v1/ledger/transfers/batch",
                json!({ "mode": "independent", "transfers": vec![transfer.clone(); 10_000] }),
            )
            .await;
        assert_eq!((status, batch["applied"].as_u64()), (200, Some(10_000)));
    }
    // Dropped while the client still reads nothing: it fell behind its queue, or the frame
    // the server waited to hand over was not taken within SEND_TIMEOUT.
    let dropped = async {
        while dropped_clients(&base, "lagging").await + dropped_clients(&base, "not_reading").await
            <= dropped_before
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::time::timeout(SEND_TIMEOUT + Duration::from_secs(30), dropped)
        .await
        .expect("the slow client was dropped");
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the stream of the dropped client ends");
    // The close frame queues behind megabytes the client never read: it may be lost when the
    // server lets go of the connection. When it arrives, it says why.
    if let Some(frame) = closed {
        assert_eq!(u16::from(frame.code), 1008);
        assert!(frame.reason.contains("too slow"), "{}", frame.reason);
    }
    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), 200, "the server is fine");
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

/// `fodi_ws_slow_clients_dropped_total{reason}` as served (0 before the first).
async fn dropped_clients(base: &str, reason: &str) -> f64 {
    let metrics = metrics_text(base).await;
    let series = format!("fodi_ws_slow_clients_dropped_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_though_its_lag_goes_unseen() {
    let _alone = SLOW_CLIENTS.lock().await;
    let db = TestDb::new(api_server::all_sets()).await;
    let (base, handle, running) = spawn(with_database(&db)).await;
    let api = Api::new(&base);
    let (alice_wallet, bob_wallet) = funded_pair(&api, "stalled").await;
    // A small receive buffer, so that a few hundred unread events fill the connection.
    let address: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(address).await.unwrap();
    let (mut client, _) =
        tokio_tungstenite::client_async(format!("ws://{address}/ws?topics=transfers"), stream)
            .await
            .unwrap();

    // Batches well under the per-client queue (1,024), so that the session keeps up while it
    // can send: what stops it is the frame the client does not take.
    let before = dropped_clients(&base, "not_reading").await;
    let lagging_before = dropped_clients(&base, "lagging").await;
    let transfer = json!({ "debit": alice_wallet, "credit": bob_wallet, "amount": "0.000000001" });
    let stalled = async {
        while dropped_clients(&base, "not_reading").await <= before {
            let (status, _) = api
                .post(
                    "/api/v1/ledger/transfers/batch",
                    json!({ "mode": "independent", "transfers": vec![transfer.clone(); 300] }),
                )
                .await;
            assert_eq!(status, 200);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(SEND_TIMEOUT + Duration::from_secs(40), stalled)
        .await
        .expect("the client that stopped reading was dropped");

    // What was queued in the socket is still delivered, then the stream ends.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(message)) = client.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the dropped client's stream ends");
    // Events queued behind the frame it waited on did overflow the queue, unread: the session
    // ended on the frame, not on the lag.
    assert_eq!(dropped_clients(&base, "lagging").await, lagging_before);
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn where_reads_need_a_token_so_does_the_stream() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let db = TestDb::new(api_server::all_sets()).await;
    let mut settings = with_database(&db);
    let token = "reader-token-0123456789";
    settings.auth.tokens = vec![crate::service("reader", token, &[access::Scope::Read])];
    let (base, handle, running) = spawn(settings).await;
    let url = format!("{}/ws?topics=transfers", base.replace("http://", "ws://"));

    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        other => panic!("a stream without a token: {other:?}"),
    }
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
        .send(Message::text(
            json!({ "subscribe": { "topics": ["transfers"] } }).to_string(),
        ))
        .await
        .unwrap();
    next_frame(&mut socket, |frame| frame["type"] == "subscribed").await;
    handle.stop(true).await;
    running.await.unwrap().unwrap();
}
