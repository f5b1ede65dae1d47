//! The soak's load: agents looping submit → claim → complete at full speed
//! until a given number of items is completed, counting as they go so the
//! sampler can say how many items each sample saw.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::client::SwarmClaimer;

/// Counters the agents share with the sampler.
#[derive(Debug, Default)]
pub struct Progress {
    /// Submits started or done; an agent stops submitting at the target.
    submitted: AtomicU64,
    completed: AtomicU64,
    errors: AtomicU64,
    /// Set by the runner to stop the agents early (time bound, a stall).
    stop: AtomicBool,
}

impl Progress {
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Takes one submit of the `target`, if any is left.
    fn take_submit(&self, target: u64) -> bool {
        self.submitted
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < target).then_some(n + 1)
            })
            .is_ok()
    }

    /// Allows one more submit: for a round that failed, whose submit may not
    /// have been made or whose item may be held by a lost claim.
    fn return_submit(&self) {
        let _ = self
            .submitted
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// What one round of an agent did.
enum Round {
    Completed,
    /// Nothing to claim: the other agents hold what is left.
    Idle,
}

/// Runs one agent until `target` items are completed in all or the run is
/// stopped. Each round submits one item (while the target is not reached),
/// claims one item of the run's type (any agent's) and completes it. A failed
/// call is counted and the round's submit given back: whether the submit
/// failed, or an item is left claimed by a lost answer (it is claimed again
/// once its lease expires) or completed without the answer arriving, another
/// item replaces it and the run never waits for it. So a few more items than
/// the target may be submitted; the count is of acknowledged completions.
pub async fn agent(mut claimer: SwarmClaimer, target: u64, progress: Arc<Progress>) {
    let mut shown = 0;
    while progress.completed() < target && !progress.stopped() {
        match round(&mut claimer, target, &progress).await {
            Ok(Round::Completed) => {
                progress.completed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Round::Idle) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(e) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                progress.return_submit();
                if shown < 3 {
                    shown += 1;
                    eprintln!("soak: call failed, retrying: {e:#}");
                }
                // A failing node must not turn the loop into a busy spin.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn round(c: &mut SwarmClaimer, target: u64, progress: &Progress) -> anyhow::Result<Round> {
    if progress.take_submit(target) {
        c.submit("{\"soak\":true}".into())
            .await
            .map_err(|e| e.context("submit"))?;
    }
    let Some((id, token)) = c.claim(1).await?.into_iter().next() else {
        return Ok(Round::Idle);
    };
    c.complete(id, token)
        .await
        .map_err(|e| e.context("complete"))?;
    Ok(Round::Completed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn submits_stop_at_the_target_and_a_failed_round_allows_one_more() {
        let p = Progress::default();
        p.return_submit();
        assert!(p.take_submit(2));
        assert!(p.take_submit(2));
        assert!(!p.take_submit(2));
        p.return_submit();
        assert!(p.take_submit(2));
        assert!(!p.take_submit(2));
    }
}
