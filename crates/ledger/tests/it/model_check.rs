//! Property test: random sequences of transfers, holds, posts, voids and batches against a
//! simple in-memory model of the ledger's semantics. After each sequence, every outcome, every
//! balance and every hold must agree with the model, and the invariants must hold.

use std::time::Duration;

use ledger::{Amount, BatchMode, Ledger, LedgerError, TransferId, TransferRequest, Wallet};
use proptest::prelude::*;

use crate::support::Fixture;

const WALLETS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Transfer {
        from: usize,
        to: usize,
        amount: i64,
    },
    Hold {
        from: usize,
        to: usize,
        amount: i64,
    },
    Post {
        hold: usize,
        amount: Option<i64>,
    },
    Void {
        hold: usize,
    },
    Batch {
        items: Vec<(usize, usize, i64)>,
        linked: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let wallet = 0..WALLETS;
    prop_oneof![
        4 => (wallet.clone(), wallet.clone(), 1..60i64).prop_map(|(from, to, amount)| Op::Transfer { from, to, amount }),
        2 => (wallet.clone(), wallet.clone(), 1..60i64).prop_map(|(from, to, amount)| Op::Hold { from, to, amount }),
        2 => (0..6usize, proptest::option::of(1..70i64)).prop_map(|(hold, amount)| Op::Post { hold, amount }),
        1 => (0..6usize).prop_map(|hold| Op::Void { hold }),
        2 => (proptest::collection::vec((wallet.clone(), wallet, 1..40i64), 1..6), any::<bool>())
            .prop_map(|(items, linked)| Op::Batch { items, linked }),
    ]
}

/// What the ledger should do, written as plainly as possible.
#[derive(Debug, Clone, Default)]
struct Model {
    posted: [i64; WALLETS],
    held: [i64; WALLETS],
    /// (from, to, amount, resolved)
    holds: Vec<(usize, usize, i64, bool)>,
}

impl Model {
    fn transfer(&mut self, from: usize, to: usize, amount: i64) -> &'static str {
        if from == to {
            return "same_wallet";
        }
        if self.posted[from] - self.held[from] < amount {
            return "insufficient_funds";
        }
        self.posted[from] -= amount;
        self.posted[to] += amount;
        "ok"
    }

    fn hold(&mut self, from: usize, to: usize, amount: i64) -> &'static str {
        if from == to {
            return "same_wallet";
        }
        if self.posted[from] - self.held[from] < amount {
            return "insufficient_funds";
        }
        self.held[from] += amount;
        self.holds.push((from, to, amount, false));
        "ok"
    }

    fn resolve(&mut self, hold: usize, post: Option<Option<i64>>) -> &'static str {
        let Some(&(from, to, held, resolved)) = self.holds.get(hold) else {
            return "pending_not_found";
        };
        if resolved {
            return "pending_already_resolved";
        }
        if let Some(amount) = post {
            let amount = amount.unwrap_or(held);
            if amount > held {
                return "amount_exceeds_pending";
            }
            self.posted[from] -= amount;
            self.posted[to] += amount;
        }
        self.held[from] -= held;
        self.holds[hold].3 = true;
        "ok"
    }
}

fn outcome(result: &Result<ledger::Applied, LedgerError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(LedgerError::SameWallet) => "same_wallet",
        Err(LedgerError::InsufficientFunds { .. }) => "insufficient_funds",
        Err(LedgerError::PendingNotFound(_)) => "pending_not_found",
        Err(LedgerError::PendingAlreadyResolved(_)) => "pending_already_resolved",
        Err(LedgerError::AmountExceedsPending { .. }) => "amount_exceeds_pending",
        Err(LedgerError::LinkedEventFailed) => "linked_event_failed",
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

async fn run(initial: [i64; WALLETS], ops: Vec<Op>) {
    let fx = Fixture::new().await;
    let mut wallets: Vec<Wallet> = Vec::new();
    for units in initial {
        wallets.push(fx.funded(units).await);
    }
    let mut model = Model {
        posted: initial,
        ..Model::default()
    };
    let mut hold_ids: Vec<TransferId> = Vec::new();
    let amount = |units: i64| Amount::new(units).unwrap();
    let hold_id = |ids: &Vec<TransferId>, index: usize| {
        ids.get(index).copied().unwrap_or_else(TransferId::new)
    };

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Transfer {
                from,
                to,
                amount: units,
            } => {
                let request =
                    TransferRequest::transfer(wallets[from].id, wallets[to].id, amount(units));
                let got = outcome(&fx.ledger.transfer(request).await);
                assert_eq!(got, model.transfer(from, to, units), "step {step}: {op:?}");
            }
            Op::Hold {
                from,
                to,
                amount: units,
            } => {
                let request = TransferRequest::hold(
                    wallets[from].id,
                    wallets[to].id,
                    amount(units),
                    Duration::from_secs(3600),
                );
                let id = request.id;
                let got = outcome(&fx.ledger.transfer(request).await);
                assert_eq!(got, model.hold(from, to, units), "step {step}: {op:?}");
                if got == "ok" {
                    hold_ids.push(id);
                }
            }
            Op::Post {
                hold,
                amount: units,
            } => {
                let request = TransferRequest::post(hold_id(&hold_ids, hold), units.map(amount));
                let got = outcome(&fx.ledger.transfer(request).await);
                assert_eq!(got, model.resolve(hold, Some(units)), "step {step}: {op:?}");
            }
            Op::Void { hold } => {
                let got = outcome(
                    &fx.ledger
                        .transfer(TransferRequest::void(hold_id(&hold_ids, hold)))
                        .await,
                );
                assert_eq!(got, model.resolve(hold, None), "step {step}: {op:?}");
            }
            Op::Batch { items, linked } => {
                let requests: Vec<_> = items
                    .iter()
                    .map(|&(from, to, units)| {
                        TransferRequest::transfer(wallets[from].id, wallets[to].id, amount(units))
                    })
                    .collect();
                let mode = if linked {
                    BatchMode::Linked
                } else {
                    BatchMode::Independent
                };
                let results = fx.ledger.submit(requests, mode).await.unwrap();
                let got: Vec<&str> = results.iter().map(outcome).collect();
                let mut trial = model.clone();
                let mut expected: Vec<&str> = items
                    .iter()
                    .map(|&(from, to, units)| trial.transfer(from, to, units))
                    .collect();
                if linked {
                    // Sequentially until the first failure; that one keeps its reason.
                    match expected.iter().position(|outcome| *outcome != "ok") {
                        Some(failed) => {
                            let mut first_failure = model.clone();
                            let reason = items[..=failed]
                                .iter()
                                .map(|&(from, to, units)| first_failure.transfer(from, to, units))
                                .last()
                                .unwrap_or("ok");
                            expected = (0..items.len())
                                .map(|i| {
                                    if i == failed {
                                        reason
                                    } else {
                                        "linked_event_failed"
                                    }
                                })
                                .collect();
                        }
                        None => model = trial,
                    }
                } else {
                    model = trial;
                }
                assert_eq!(got, expected, "step {step}: {items:?} linked={linked}");
            }
        }
    }
    for (index, wallet) in wallets.iter().enumerate() {
        let now = fx.ledger.wallet(wallet.id).await.unwrap();
        assert_eq!(
            (now.posted, now.pending_debits),
            (model.posted[index], model.held[index]),
            "wallet {index}"
        );
    }
    fx.assert_invariants().await;
    fx.db.close().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_behaves_like_the_model(
        initial in proptest::array::uniform4(0..120i64),
        ops in proptest::collection::vec(op(), 1..30),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(run(initial, ops));
    }
}
