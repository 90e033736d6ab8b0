//! Requests gathered into batches: concurrent requests of one kind, served by one worker
//! thread, share one database call instead of making one each.
//!
//! Each worker keeps a queue per kind. A request joins it and, when fewer than `batches_out`
//! batches of this worker are at the database, starts one, which takes everything queued so
//! far. Requests arriving while batches are out wait for the next one. Nothing waits on a
//! timer: a request that finds the worker idle goes at once, as a direct call would, and
//! under load one call serves many requests.
//!
//! Why: on a small machine the HTTP server, PostgreSQL and the clients share the cores, and a
//! short read's cost is mostly its round trip to the database (wake-ups of both sides), which
//! gathering shares (see docs/benchmarks.md). Used for cache reads. Single transfers gathered
//! into independent batches measured slower (docs/benchmarks.md): a transfer's cost is the
//! engine's work per item, and the single-transfer function does less of it than the batch
//! function, so transfers go one call each.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::LocalBoxFuture;
use tokio::sync::oneshot;

/// Runs one batch: an answer per item, in the items' order.
pub type RunBatch<I, A> = Box<dyn Fn(Vec<I>) -> LocalBoxFuture<'static, Vec<A>>>;

/// One worker thread's queue of one kind of request. Built by the app factory, which runs
/// once per worker, so it is never shared between threads.
pub struct Gatherer<I, A> {
    shared: Rc<Shared<I, A>>,
}

struct Shared<I, A> {
    /// The `kind` label of `fodi_http_gathered_batch_size`.
    kind: &'static str,
    run: RunBatch<I, A>,
    max_batch: usize,
    max_batches_out: usize,
    state: RefCell<State<I, A>>,
}

struct State<I, A> {
    queue: Vec<(I, oneshot::Sender<A>)>,
    /// Batches at the database now.
    batches_out: usize,
}

impl<I: 'static, A: 'static> Gatherer<I, A> {
    /// Batches of at most `max_batch` items, at most `batches_out` of them at once; `kind`
    /// names them in the batch size metric.
    pub fn new(
        kind: &'static str,
        max_batch: usize,
        batches_out: usize,
        run: RunBatch<I, A>,
    ) -> Self {
        Self {
            shared: Rc::new(Shared {
                kind,
                run,
                max_batch: max_batch.max(1),
                max_batches_out: batches_out.max(1),
                state: RefCell::new(State {
                    queue: Vec::new(),
                    batches_out: 0,
                }),
            }),
        }
    }

    /// The answer to `item`, run with whatever else is queued on this worker; `None` when the
    /// worker stopped before answering.
    pub async fn submit(&self, item: I) -> Option<A> {
        let (reply, answer) = oneshot::channel();
        let start_batch = {
            let mut state = self.shared.state.borrow_mut();
            state.queue.push((item, reply));
            let start = state.batches_out < self.shared.max_batches_out;
            if start {
                state.batches_out += 1;
            }
            start
        };
        if start_batch {
            actix_web::rt::spawn(run_batches(self.shared.clone()));
        }
        answer.await.ok()
    }
}

/// Runs queued items a batch at a time until the queue is empty. A task of its own, so a
/// request that goes away (timeout, closed connection) never cancels a database call midway;
/// its answer is dropped.
async fn run_batches<I, A>(shared: Rc<Shared<I, A>>) {
    loop {
        let (items, replies): (Vec<I>, Vec<oneshot::Sender<A>>) = {
            let mut state = shared.state.borrow_mut();
            if state.queue.is_empty() {
                state.batches_out -= 1;
                return;
            }
            let take = state.queue.len().min(shared.max_batch);
            state.queue.drain(..take).unzip()
        };
        metrics::histogram!("fodi_http_gathered_batch_size", "kind" => shared.kind)
            .record(items.len() as f64);
        let answers = (shared.run)(items).await;
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}
