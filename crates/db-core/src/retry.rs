//! Bounded, jittered retry of transactions that lost a serialisation conflict or a deadlock.
//!
//! The retry loop itself is `backon`'s; this module fixes the policy (which errors, how many
//! attempts, how long between them) so every crate retries the same way.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::error::DbError;

/// Errors that can say whether running the same operation again may succeed.
///
/// Domain crates implement it for their own error enums by delegating to the [`DbError`]
/// they wrap, so their whole transaction functions can be retried.
pub trait RetryableError {
    fn is_retryable(&self) -> bool;
}

impl RetryableError for DbError {
    fn is_retryable(&self) -> bool {
        DbError::is_retryable(self)
    }
}

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: usize,
    /// Delay before the first retry; each later one doubles it, with full jitter.
    #[serde(with = "humantime_serde")]
    pub first_delay: Duration,
    /// Upper bound of a single delay.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Refuses a policy that never tries.
    pub fn validate(&self) -> Result<(), crate::settings::InvalidSetting> {
        crate::settings::at_least_one("max_attempts", self.max_attempts as u64)
    }
}

impl Default for RetryPolicy {
    /// Five attempts, 2 ms growing to at most 200 ms: contention between short transactions
    /// resolves within milliseconds, and a caller should not wait a second for a conflict.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            first_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_jitter()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1))
    }
}

/// Runs `operation` until it succeeds, fails with an error that is not retryable, or the
/// policy's attempts are spent; returns the last result.
///
/// `operation` must run a whole transaction: retrying a single statement of a transaction
/// that the server already aborted cannot succeed.
pub async fn with_retry<T, E, F, Fut>(policy: &RetryPolicy, operation: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: RetryableError + std::fmt::Display,
{
    operation
        .retry(policy.backoff())
        .sleep(tokio::time::sleep)
        .when(RetryableError::is_retryable)
        .notify(|error, delay| {
            tracing::debug!(%error, ?delay, "retrying a transaction after a retryable failure");
        })
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Flaky(bool);

    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "flaky (retryable: {})", self.0)
        }
    }

    impl RetryableError for Flaky {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }

    fn fast_policy(max_attempts: usize) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            first_delay: Duration::from_micros(10),
            max_delay: Duration::from_micros(100),
        }
    }

    #[tokio::test]
    async fn retries_retryable_errors_until_success() {
        let calls = AtomicUsize::new(0);
        let result = with_retry(&fast_policy(5), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(Flaky(true))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_attempt_budget() {
        let calls = AtomicUsize::new(0);
        let result: Result<(), _> = with_retry(&fast_policy(4), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Flaky(true))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn never_retries_a_permanent_error() {
        let calls = AtomicUsize::new(0);
        let result: Result<(), _> = with_retry(&fast_policy(5), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Flaky(false))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
