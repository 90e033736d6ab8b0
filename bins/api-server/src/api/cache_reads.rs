//! Cache reads over HTTP, gathered: concurrent `GET /api/v1/ai/users/{user}/cache/{key}`
//! requests served by one worker thread are answered by one
//! [`ResponseCache::get_many`] statement instead of one statement each.
//!
//! Each worker keeps a queue. A request joins it and, when fewer than [`BATCHES_OUT`] batches
//! of this worker are at the database, starts one, which takes everything queued so far.
//! Requests arriving while batches are out wait for the next one. Nothing waits on a timer:
//! a request that finds the worker idle is read at once, as a direct read would be, and under
//! load one statement serves many requests. Answers, hit counts and sliding renewals are
//! those of single reads (`get_many` guarantees it).
//!
//! Why: on a small machine the HTTP server, PostgreSQL and the clients share the cores, and a
//! cache hit's cost is mostly the round trip (two wake-ups of each side), not the lookup;
//! gathering the round trips is what lets the API serve hits at a rate near the library's
//! (see docs/benchmarks.md).

use std::cell::RefCell;
use std::rc::Rc;

use actix_web::http::StatusCode;
use admin_api::Problem;
use ai_store::{CachedValue, ResponseCache, UserId};
use tokio::sync::oneshot;

use crate::api::ai::{SharedAi, ai_problem};

/// Batches of one worker at the database at once. Two: while one is out, the next gathers
/// and can go as soon as a connection and a core are free.
const BATCHES_OUT: usize = 2;
/// Keys one statement reads at most.
const MAX_BATCH: usize = 128;

type Answer = Result<Option<CachedValue>, Problem>;

/// One worker thread's queue of cache reads. Built by the app factory, which runs once per
/// worker, so it is never shared between threads.
pub struct CacheReads {
    shared: Rc<Shared>,
}

struct Shared {
    ai: SharedAi,
    state: RefCell<State>,
}

#[derive(Default)]
struct State {
    queue: Vec<Waiting>,
    batches_out: usize,
}

struct Waiting {
    user: UserId,
    key: String,
    reply: oneshot::Sender<Answer>,
}

impl CacheReads {
    pub fn new(ai: SharedAi) -> Self {
        Self {
            shared: Rc::new(Shared {
                ai,
                state: RefCell::new(State::default()),
            }),
        }
    }

    /// The live value of `key`, read with whatever other reads are queued on this worker.
    pub async fn get(&self, user: UserId, key: String) -> Answer {
        // Checked here: one bad key would fail its whole batch.
        ai_store::check_key(&key).map_err(|error| ai_problem(&error))?;
        let (reply, answer) = oneshot::channel();
        let start_batch = {
            let mut state = self.shared.state.borrow_mut();
            state.queue.push(Waiting { user, key, reply });
            let start = state.batches_out < BATCHES_OUT;
            if start {
                state.batches_out += 1;
            }
            start
        };
        if start_batch {
            actix_web::rt::spawn(run_batches(self.shared.clone()));
        }
        // The sender only goes away unanswered when the worker is stopping.
        answer.await.unwrap_or_else(|_| {
            Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting-down",
                "The server is shutting down",
            ))
        })
    }
}

/// Reads queued keys a batch at a time until the queue is empty. Runs as a task of its own,
/// so a request that goes away (timeout, closed connection) never cancels a statement
/// midway; its answer is dropped.
async fn run_batches(shared: Rc<Shared>) {
    loop {
        let batch: Vec<Waiting> = {
            let mut state = shared.state.borrow_mut();
            if state.queue.is_empty() {
                state.batches_out -= 1;
                return;
            }
            let take = state.queue.len().min(MAX_BATCH);
            state.queue.drain(..take).collect()
        };
        let keys: Vec<(UserId, &str)> = batch
            .iter()
            .map(|waiting| (waiting.user, waiting.key.as_str()))
            .collect();
        match shared.ai.cache().get_many(&keys).await {
            Ok(found) => {
                for (waiting, value) in batch.into_iter().zip(found) {
                    let _ = waiting.reply.send(Ok(value));
                }
            }
            Err(error) => {
                let problem = ai_problem(&error);
                for waiting in batch {
                    let _ = waiting.reply.send(Err(problem.clone()));
                }
            }
        }
    }
}
