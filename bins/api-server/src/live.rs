//! `GET /ws`: a WebSocket stream of live events (committed transfers, process state changes).
//!
//! One hub per server: a task follows the ledger's change feed from its head (committed
//! transfers, in ledger order) and another forwards the supervisor's events; both publish to
//! a broadcast channel. Each client gets the events its filter selects, as JSON text frames
//! (`{"type":"transfer","transfer":{...}}`, `{"type":"process","event":{...}}`). Filters come
//! from the query string (`?topics=transfers,processes&wallets=<id>,<id>&processes=backend`)
//! and may be replaced at any time by a text frame `{"subscribe":{...same fields...}}`.
//!
//! The per-client queue is the broadcast channel's capacity ([`CLIENT_QUEUE`]): a client that
//! falls that far behind is disconnected (close code 1008, "too slow"), so a slow client
//! never grows the server's memory. So is a client that stops reading: once the socket's
//! buffers are full, a frame that waits [`SEND_TIMEOUT`] to be taken ends the session (the
//! lag would otherwise go unseen, as the session waits on that frame instead of reading the
//! queue). The server pings every [`HEARTBEAT`]; a client silent for two heartbeats is
//! disconnected.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message};
use futures_util::StreamExt;
use ledger::{Ledger, Transfer};
use orchestrator::{ProcessEvent, Supervisor};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use uuid::Uuid;

use access::Identity;

use crate::admission::Caller;
use crate::error::ApiError;

/// Events a client may lag behind before it is disconnected.
pub const CLIENT_QUEUE: usize = 1_024;
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// How long a frame may wait for a client to take it before the client counts as stalled.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the closing frame may wait: a stalled client never takes it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the ledger's feed is read when it had nothing new.
const FEED_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    Transfer { transfer: Transfer },
    Process { event: ProcessEvent },
}

/// Where live events come from; cheap to clone.
#[derive(Clone)]
pub struct LiveHub {
    events: broadcast::Sender<Arc<LiveEvent>>,
    /// Set when the server shuts down: every client is sent a close frame (a WebSocket would
    /// otherwise hold the graceful shutdown until its timeout).
    closing: tokio::sync::watch::Sender<bool>,
}

impl LiveHub {
    /// Starts following the ledger (when there is one) and the supervisor.
    pub fn start(
        ledger: Option<Arc<dyn Ledger>>,
        supervisor: &Supervisor,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let (events, _) = broadcast::channel(CLIENT_QUEUE);
        let hub = Self {
            events,
            closing: tokio::sync::watch::Sender::new(false),
        };
        let mut tasks = Vec::new();
        if let Some(ledger) = ledger {
            let events = hub.events.clone();
            tasks.push(tokio::spawn(async move {
                ledger::follow_feed(ledger.as_ref(), FEED_POLL, |transfer| {
                    // No subscriber is not an error: the events are simply not wanted now.
                    let _ = events.send(Arc::new(LiveEvent::Transfer { transfer }));
                })
                .await;
            }));
        }
        let mut processes = supervisor.subscribe();
        let sender = hub.events.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match processes.recv().await {
                    Ok(event) => {
                        let _ = sender.send(Arc::new(LiveEvent::Process { event }));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }));
        (hub, tasks)
    }

    /// WebSocket clients connected now (each holds one subscription).
    pub fn clients(&self) -> usize {
        self.events.receiver_count()
    }

    /// Closes every client's connection (going away).
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }
}

/// What a client wants; every field narrows, an empty one selects all.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// `transfers`, `processes`; comma-separated in a query string.
    #[serde(default, deserialize_with = "list")]
    pub topics: Vec<String>,
    /// Transfers debiting or crediting one of these wallets.
    #[serde(default, deserialize_with = "list")]
    pub wallets: Vec<String>,
    /// Events of these processes.
    #[serde(default, deserialize_with = "list")]
    pub processes: Vec<String>,
}

/// A list given as JSON array or as one comma-separated string (query strings).
fn list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Many(Vec<String>),
        One(String),
    }
    Ok(match Either::deserialize(deserializer)? {
        Either::Many(items) => items,
        Either::One(text) => text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

struct Selector {
    transfers: bool,
    processes: bool,
    wallets: HashSet<Uuid>,
    names: HashSet<String>,
    /// An end user's own wallets: they see transfers of these only, and no process events.
    confined_to: Option<Arc<HashSet<Uuid>>>,
}

impl Selector {
    fn new(filter: &Filter, confined_to: Option<Arc<HashSet<Uuid>>>) -> Result<Self, String> {
        for topic in &filter.topics {
            if topic != "transfers" && topic != "processes" {
                return Err(format!("unknown topic {topic:?}: transfers or processes"));
            }
        }
        let wants =
            |topic: &str| filter.topics.is_empty() || filter.topics.iter().any(|t| t == topic);
        let wallets = filter
            .wallets
            .iter()
            .map(|wallet| {
                Uuid::parse_str(wallet).map_err(|_| format!("{wallet:?} is not a wallet id"))
            })
            .collect::<Result<_, _>>()?;
        let wallets: HashSet<Uuid> = wallets;
        if let Some(own) = &confined_to {
            if !filter.processes.is_empty() || filter.topics.iter().any(|t| t == "processes") {
                return Err("end users may follow transfers only".into());
            }
            if let Some(other) = wallets.iter().find(|wallet| !own.contains(wallet)) {
                return Err(format!("wallet {other} is not the caller's"));
            }
        }
        Ok(Self {
            transfers: wants("transfers"),
            processes: wants("processes") && confined_to.is_none(),
            wallets,
            names: filter.processes.iter().cloned().collect(),
            confined_to,
        })
    }

    fn selects(&self, event: &LiveEvent) -> bool {
        match event {
            LiveEvent::Transfer { transfer } => {
                let touches = |wallets: &HashSet<Uuid>| {
                    wallets.contains(&transfer.debit_wallet.0)
                        || wallets.contains(&transfer.credit_wallet.0)
                };
                self.transfers
                    && self.confined_to.as_deref().is_none_or(touches)
                    && (self.wallets.is_empty()
                        || self.wallets.contains(&transfer.debit_wallet.0)
                        || self.wallets.contains(&transfer.credit_wallet.0))
            }
            LiveEvent::Process { event } => {
                self.processes && (self.names.is_empty() || self.names.contains(&event.process))
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeFrame {
    subscribe: Filter,
}

/// The live stream. An end user follows their own wallets' transfers only (those they hold
/// when connecting); naming another wallet, or processes, is refused.
pub async fn websocket(
    caller: Caller,
    request: HttpRequest,
    body: web::Payload,
    hub: web::Data<LiveHub>,
    filter: web::Query<Filter>,
) -> actix_web::Result<HttpResponse> {
    let confined_to = match &caller.identity {
        Identity::User(user) => {
            let ledger = request
                .app_data::<web::Data<dyn Ledger>>()
                .ok_or_else(|| ApiError::forbidden().with_detail("no ledger to follow"))?;
            let own = ledger.user_wallets(*user).await.map_err(ApiError::from)?;
            Some(Arc::new(own.iter().map(|wallet| wallet.id.0).collect()))
        }
        _ => None,
    };
    let selector = Selector::new(&filter, confined_to.clone()).map_err(|reason| {
        if confined_to.is_some() {
            ApiError::forbidden().with_detail(reason)
        } else {
            ApiError::invalid_query(reason)
        }
    })?;
    let (response, session, stream) = actix_ws::handle(&request, body)?;
    let events = hub.events.subscribe();
    let closing = hub.closing.subscribe();
    actix_web::rt::spawn(serve(session, stream, events, selector, closing));
    Ok(response)
}

async fn serve(
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
    mut events: broadcast::Receiver<Arc<LiveEvent>>,
    mut selector: Selector,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    // The same signal for waits on a send (the select below holds `closing` meanwhile).
    let mut sends_closing = closing.clone();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut last_heard = Instant::now();
    let close = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Ping(bytes))) => {
                    last_heard = Instant::now();
                    if let Err(close) = deliver(session.pong(&bytes), &mut sends_closing).await {
                        break close;
                    }
                }
                Some(Ok(Message::Pong(_))) => last_heard = Instant::now(),
                Some(Ok(Message::Text(text))) => {
                    last_heard = Instant::now();
                    let reply = match serde_json::from_str::<SubscribeFrame>(&text)
                        .map_err(|error| error.to_string())
                        .and_then(|frame| Selector::new(&frame.subscribe, selector.confined_to.clone()))
                    {
                        Ok(new) => {
                            selector = new;
                            serde_json::json!({ "type": "subscribed" })
                        }
                        Err(reason) => serde_json::json!({ "type": "error", "detail": reason }),
                    };
                    if let Err(close) = deliver(session.text(reply.to_string()), &mut sends_closing).await {
                        break close;
                    }
                }
                Some(Ok(Message::Close(reason))) => break reason,
                Some(Ok(_)) => last_heard = Instant::now(),
                Some(Err(_)) | None => break None,
            },
            event = events.recv() => match event {
                Ok(event) => {
                    if selector.selects(&event) {
                        let Ok(text) = serde_json::to_string(&*event) else { continue };
                        if let Err(close) = deliver(session.text(text), &mut sends_closing).await {
                            break close;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "disconnecting a WebSocket client that fell behind");
                    metrics::counter!("fodi_ws_slow_clients_dropped_total", "reason" => "lagging")
                        .increment(1);
                    break Some(CloseReason {
                        code: CloseCode::Policy,
                        description: Some(format!("too slow: {missed} events missed")),
                    });
                }
                Err(broadcast::error::RecvError::Closed) => {
                    break Some(CloseReason { code: CloseCode::Away, description: None });
                }
            },
            _ = closing.wait_for(|closing| *closing) => {
                break Some(CloseReason { code: CloseCode::Away, description: None });
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > HEARTBEAT * 2 {
                    break Some(CloseReason {
                        code: CloseCode::Policy,
                        description: Some("no answer to pings".into()),
                    });
                }
                if let Err(close) = deliver(session.ping(b""), &mut sends_closing).await {
                    break close;
                }
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.close(close)).await;
}

/// Waits for a frame to be taken. `Err` ends the session: with `None` when the client is gone,
/// with the reason to give it when it has taken nothing for [`SEND_TIMEOUT`] or the server is
/// closing (a shutdown does not wait for a client that stopped reading).
async fn deliver(
    sending: impl Future<Output = Result<(), actix_ws::Closed>>,
    closing: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), Option<CloseReason>> {
    let sent = tokio::select! {
        sent = tokio::time::timeout(SEND_TIMEOUT, sending) => sent,
        _ = closing.wait_for(|closing| *closing) => {
            return Err(Some(CloseReason { code: CloseCode::Away, description: None }));
        }
    };
    match sent {
        Ok(Ok(())) => Ok(()),
        Ok(Err(actix_ws::Closed)) => Err(None),
        Err(_) => {
            tracing::info!("disconnecting a WebSocket client that stopped reading");
            metrics::counter!("fodi_ws_slow_clients_dropped_total", "reason" => "not_reading")
                .increment(1);
            Err(Some(CloseReason {
                code: CloseCode::Policy,
                description: Some("too slow: stopped reading".into()),
            }))
        }
    }
}
