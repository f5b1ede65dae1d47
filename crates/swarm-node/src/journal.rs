//! The Raft-backed reactor journal: every step outcome of a run becomes a
//! `StepDone` entry in the work item's journal, under the holder's fencing
//! token. Progress entries (a step started) ride in the same Raft entry as
//! the outcome that follows them when it comes within a few milliseconds,
//! so a quick step costs one commit instead of two.
//!
//! A run this node starts from a claim it was just granted reads its
//! journal from the granted item, not from the replica: that item holds
//! every entry of earlier holders (they precede the grant in the log), and
//! nothing can be written under the new token before the run writes it. So
//! a fresh run needs no read barrier (a quorum round) before its first step.
//!
//! An append that does not land stops the run without undoing anything,
//! and says why: `Fenced` when the state machine refused the entry (a stale
//! token: another holder owns the work now; the agent checks and fails the
//! workflow if the claim is in fact still its own), `Unavailable` when
//! nothing was recorded (no leader or quorum in time: the run resumes from
//! the journal later), `Unknown` when it may have been.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use swarm_claims::FencingToken;
use swarm_claims::command::StepDone;
use swarm_claims::request::Checkpoints;
use swarm_raft::ClusterError;
use swarm_reactor::{Journal, JournalEntry, JournalError, JournalRecord};
use tokio::sync::oneshot;

use crate::node::NodeContext;

/// How long a progress entry (a step started) waits for the step's outcome
/// to share its Raft entry before it is written alone.
const PROGRESS_LINGER: Duration = Duration::from_millis(20);

pub struct RaftJournal {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: NodeContext,
    item: String,
    token: FencingToken,
    /// Entries not yet proposed, in the order the run appended them.
    queue: Mutex<Queue>,
    /// One proposal at a time, so entries reach the log in queue order.
    sending: tokio::sync::Mutex<()>,
    /// The item's journal as granted, for the run's first read (see the
    /// module docs); taken by it.
    granted: Mutex<Option<Vec<JournalRecord>>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// A task will flush the progress entries waiting here.
    linger_armed: bool,
    /// Why a progress entry written on its own was not recorded: the next
    /// append reports it, as if that entry had been awaited.
    refused: Option<JournalError>,
}

struct Waiting {
    step: StepDone,
    /// Who waits for the outcome; `None` for a progress entry.
    done: Option<oneshot::Sender<Result<(), JournalError>>>,
}

impl RaftJournal {
    pub fn new(ctx: NodeContext, item: String, token: FencingToken) -> RaftJournal {
        RaftJournal {
            inner: Arc::new(Inner {
                ctx,
                item,
                token,
                queue: Mutex::new(Queue::default()),
                sending: tokio::sync::Mutex::new(()),
                granted: Mutex::new(None),
            }),
        }
    }

    /// For a run started from `item` as this node's claim was just granted
    /// (the claim's answer, not a replica read): its first read of the
    /// journal is that item's, without a read barrier.
    pub fn granted(self, item: &swarm_claims::WorkItem) -> RaftJournal {
        let records = item
            .journal()
            .iter()
            .filter_map(|j| JournalRecord::parse(&j.outcome))
            .collect();
        *self.inner.granted.lock().unwrap_or_else(|p| p.into_inner()) = Some(records);
        self
    }
}

impl Inner {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Proposes everything waiting as one entry (a `Batch` when more than
    /// one) and tells each waiter its outcome.
    async fn flush(&self) {
        let _one_at_a_time = self.sending.lock().await;
        let (waiting, refused) = {
            let mut queue = self.queue();
            (std::mem::take(&mut queue.waiting), queue.refused.clone())
        };
        if waiting.is_empty() {
            return;
        }
        // An earlier entry of this run was refused or may not have been
        // recorded: nothing after it may reach the log, or an outcome could
        // stand there without the entries before it.
        if let Some(refused) = refused {
            for done in waiting.into_iter().filter_map(|w| w.done) {
                let _ = done.send(Err(refused.clone()));
            }
            return;
        }
        let (steps, dones): (Vec<StepDone>, Vec<_>) =
            waiting.into_iter().map(|w| (w.step, w.done)).unzip();
        let outcomes: Vec<Result<(), JournalError>> =
            match self.ctx.cluster.request(Checkpoints(steps)).await {
                Ok(results) if results.len() == dones.len() => results
                    .into_iter()
                    .map(|r| r.map(|_| ()).map_err(|e| journal_error(e.into())))
                    .collect(),
                Ok(results) => {
                    let e = ClusterError::Unknown(format!(
                        "{} checkpoints proposed, {} answered",
                        dones.len(),
                        results.len()
                    ));
                    dones
                        .iter()
                        .map(|_| Err(journal_error(e.clone())))
                        .collect()
                }
                Err(e) => dones
                    .iter()
                    .map(|_| Err(journal_error(e.clone())))
                    .collect(),
            };
        for (done, outcome) in dones.into_iter().zip(fail_after_first_refusal(outcomes)) {
            match done {
                Some(tx) => {
                    let _ = tx.send(outcome);
                }
                None => {
                    if let Err(e) = outcome {
                        self.queue().refused.get_or_insert(e);
                    }
                }
            }
        }
    }
}

/// What the run is told when the cluster did not record an entry: fenced
/// when the state machine refused it (almost always a stale token: a newer
/// holder owns the run), unavailable when nothing was recorded, unknown
/// when it may have been.
fn journal_error(e: ClusterError) -> JournalError {
    match e {
        ClusterError::Refused(refusal) => JournalError::Fenced(refusal.to_string()),
        e @ (ClusterError::NotLeader { .. }
        | ClusterError::Unavailable(_)
        | ClusterError::Membership(_)) => {
            JournalError::Unavailable(format!("checkpoint not recorded: {e}"))
        }
        e @ ClusterError::Unknown(_) => JournalError::Unknown(format!("checkpoint: {e}")),
    }
}

/// Within one entry, what follows a refused entry is reported refused too:
/// the run must not go on as if a later outcome stood in the journal
/// without the entries before it.
fn fail_after_first_refusal(
    outcomes: Vec<Result<(), JournalError>>,
) -> Vec<Result<(), JournalError>> {
    let mut refused: Option<JournalError> = None;
    outcomes
        .into_iter()
        .map(|outcome| {
            let outcome = match (&refused, outcome) {
                (Some(e), Ok(())) => Err(e.clone()),
                (_, outcome) => outcome,
            };
            if let Err(e) = &outcome {
                refused.get_or_insert_with(|| e.clone());
            }
            outcome
        })
        .collect()
}

impl RaftJournal {
    /// Queues `entry`; with `wait`, proposes it with everything queued
    /// before it and returns once they are committed. Without, returns at
    /// once (an entry that is then refused fails the next append) and arms
    /// the linger that commits it if nothing else comes.
    async fn queue_entry(
        &self,
        run_id: &str,
        entry: JournalEntry,
        wait: bool,
    ) -> Result<(), JournalError> {
        let inner = &self.inner;
        let step = entry
            .step()
            .filter(|s| inner.ctx.limits.name("step", s).is_ok())
            .unwrap_or("run")
            .to_string();
        let outcome = JournalRecord {
            run: run_id.to_string(),
            entry,
        }
        .to_json()
        .map_err(|e| JournalError::Unavailable(format!("encode journal entry: {e}")))?;
        let step = StepDone {
            id: inner.item.clone(),
            token: inner.token,
            step,
            outcome,
            now: 0,
        };
        let (done, rx) = if !wait {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        let arm_linger = {
            let mut queue = inner.queue();
            if let Some(refused) = queue.refused.clone() {
                return Err(refused);
            }
            queue.waiting.push(Waiting { step, done });
            let arm = !wait && !queue.linger_armed;
            if arm {
                queue.linger_armed = true;
            }
            arm
        };
        if arm_linger {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                tokio::time::sleep(PROGRESS_LINGER).await;
                inner.queue().linger_armed = false;
                inner.flush().await;
            });
        }
        let Some(rx) = rx else {
            return Ok(());
        };
        inner.flush().await;
        rx.await.unwrap_or_else(|_| {
            Err(JournalError::Unknown(
                "checkpoint dropped while in flight".into(),
            ))
        })
    }
}

#[async_trait]
impl Journal for RaftJournal {
    /// A progress entry is queued and returns at once; any other entry is
    /// proposed together with the progress entries queued before it, and
    /// returns once all of them are committed. A workflow step whose
    /// outcome arrives within [`PROGRESS_LINGER`] costs one Raft entry.
    async fn append(&self, run_id: &str, entry: JournalEntry) -> Result<(), JournalError> {
        let wait = !entry.is_progress();
        self.queue_entry(run_id, entry, wait).await
    }

    /// A pure step's outcome waits like a progress entry: it is committed
    /// with the run's next awaited entry, or alone after the linger.
    async fn append_deferred(&self, run_id: &str, entry: JournalEntry) -> Result<(), JournalError> {
        self.queue_entry(run_id, entry, false).await
    }

    async fn entries(&self, run_id: &str) -> Result<Vec<JournalEntry>, JournalError> {
        let granted = self
            .inner
            .granted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(records) = granted
            && self.inner.queue().waiting.is_empty()
        {
            return Ok(records
                .into_iter()
                .filter(|r| r.run == run_id)
                .map(|r| r.entry)
                .collect());
        }
        // Our own queued entries first, then at least what the cluster has
        // committed, not a lagging replica.
        self.inner.flush().await;
        self.inner
            .ctx
            .cluster
            .read_barrier()
            .await
            .map_err(|e| JournalError::Unavailable(format!("read journal: {e}")))?;
        Ok(self.inner.ctx.state.read(|s| {
            s.get(&self.inner.item)
                .map(|item| {
                    item.journal()
                        .iter()
                        .filter_map(|j| JournalRecord::parse(&j.outcome))
                        .filter(|r| r.run == run_id)
                        .map(|r| r.entry)
                        .collect()
                })
                .unwrap_or_default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_after_a_refused_start_in_the_same_entry_is_refused() {
        let out = fail_after_first_refusal(vec![
            Ok(()),
            Err(JournalError::Fenced("stale token 4".into())),
            Ok(()),
            Ok(()),
        ]);
        let shown: Vec<Option<String>> = out
            .into_iter()
            .map(|r| r.err().map(|e| e.message().to_string()))
            .collect();
        assert_eq!(
            shown,
            [
                None,
                Some("stale token 4".to_string()),
                Some("stale token 4".to_string()),
                Some("stale token 4".to_string())
            ]
        );
    }

    #[test]
    fn all_recorded_entries_stay_recorded() {
        let out = fail_after_first_refusal(vec![Ok(()), Ok(())]);
        assert!(out.iter().all(Result::is_ok));
    }
}
