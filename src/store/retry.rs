//! Retrying database work through transient failures (a dropped connection, a restart, a
//! statement timeout), the same way for the writer's batches and the sync's bookkeeping.

use std::future::Future;

use crate::backoff::Backoff;
use crate::store::StoreError;

/// Runs `work` until it succeeds, fails for good, or `max_retries` transient failures are
/// spent, waiting `backoff` between attempts. `what` names the work in the log.
pub async fn retry_transient<T, F, Fut>(
    backoff: Backoff,
    max_retries: u32,
    what: &'static str,
    mut work: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 0;
    loop {
        match work().await {
            Err(error) if error.is_transient() && attempt < max_retries => {
                let delay = backoff.delay(attempt);
                tracing::warn!(
                    %error,
                    what,
                    attempt = attempt + 1,
                    delay_ms = delay.as_millis() as u64,
                    "database write failed, retrying"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}
