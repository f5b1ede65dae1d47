//! The Raft-backed reactor journal: every step outcome of a run becomes a
//! `StepDone` entry in the work item's journal, under the holder's fencing
//! token. A holder whose token went stale gets an error from `append`, and
//! the reactor stops the run without undoing anything (another holder owns
//! the work now).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use swarm_claims::command::StepDone;
use swarm_claims::{Command, FencingToken};
use swarm_reactor::{Journal, JournalEntry, JournalError};

use crate::node::NodeContext;

/// What one item journal entry holds: which run (a sub-workflow is a run of
/// its own inside the item) and the reactor's entry.
#[derive(Serialize, Deserialize)]
struct Recorded {
    run: String,
    entry: JournalEntry,
}

pub struct RaftJournal {
    ctx: NodeContext,
    item: String,
    token: FencingToken,
}

impl RaftJournal {
    pub fn new(ctx: NodeContext, item: String, token: FencingToken) -> RaftJournal {
        RaftJournal { ctx, item, token }
    }
}

#[async_trait]
impl Journal for RaftJournal {
    async fn append(&self, run_id: &str, entry: JournalEntry) -> Result<(), JournalError> {
        let step = entry
            .step()
            .filter(|s| self.ctx.limits.name("step", s).is_ok())
            .unwrap_or("run")
            .to_string();
        let outcome = serde_json::to_string(&Recorded {
            run: run_id.to_string(),
            entry,
        })
        .map_err(|e| JournalError(format!("encode journal entry: {e}")))?;
        let cmd = Command::StepDone(StepDone {
            id: self.item.clone(),
            token: self.token,
            step,
            outcome,
            now: 0,
        });
        match self.ctx.proposer.propose(cmd).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(JournalError(e.to_string())),
            Err(e) => Err(JournalError(format!("checkpoint not recorded: {e}"))),
        }
    }

    async fn entries(&self, run_id: &str) -> Result<Vec<JournalEntry>, JournalError> {
        // Read at least what the cluster has committed, not a lagging replica.
        self.ctx
            .read_barrier()
            .await
            .map_err(|e| JournalError(format!("read journal: {e}")))?;
        Ok(self.ctx.state.read(|s| {
            s.get(&self.item)
                .map(|item| {
                    item.journal
                        .iter()
                        .filter_map(|j| serde_json::from_str::<Recorded>(&j.outcome).ok())
                        .filter(|r| r.run == run_id)
                        .map(|r| r.entry)
                        .collect()
                })
                .unwrap_or_default()
        }))
    }
}
