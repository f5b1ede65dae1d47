//! Each command paired with the one shape of answer it gets, so that a caller
//! writes a [`Submit`](crate::command::Submit) and gets back a
//! [`Submitted`], writes a [`Claim`](crate::command::Claim) and gets back
//! the granted items, and never matches a [`Response`] by hand.

use crate::command::{
    Cancel, Claim, Complete, Fail, Handoff, Park, Pause, Release, Renew, Resume, Signal, StepDone,
    Submit,
};
use crate::{ClaimError, Command, FencingToken, Response, WorkId, WorkItem};

/// A command whose answer has one known shape.
pub trait Request: Sized {
    /// What the state machine answers when it accepts the command.
    type Answer;
    /// A name for the command in messages (`"claim"`).
    const NAME: &'static str;

    fn into_command(self) -> Command;

    /// The typed answer, or the response back when its shape does not match
    /// (a bug in the state machine, never a refusal: refusals are
    /// [`ClaimError`]s).
    fn answer(response: Response) -> Result<Self::Answer, Box<Response>>;
}

/// The answer to a [`Submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub item: WorkItem,
    /// False when the idempotency key matched an existing item.
    pub created: bool,
}

/// The answer to a [`Renew`]: the leases extended, and the tokens that were
/// not, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    pub renewed: Vec<WorkItem>,
    pub rejected: Vec<(FencingToken, ClaimError)>,
}

impl Request for Submit {
    type Answer = Submitted;
    const NAME: &'static str = "submit";
    fn into_command(self) -> Command {
        Command::Submit(self)
    }
    fn answer(response: Response) -> Result<Submitted, Box<Response>> {
        match response {
            Response::Submitted { item, created } => Ok(Submitted { item, created }),
            other => Err(Box::new(other)),
        }
    }
}

impl Request for Claim {
    type Answer = Vec<WorkItem>;
    const NAME: &'static str = "claim";
    fn into_command(self) -> Command {
        Command::Claim(self)
    }
    fn answer(response: Response) -> Result<Vec<WorkItem>, Box<Response>> {
        match response {
            Response::Granted(items) => Ok(items),
            other => Err(Box::new(other)),
        }
    }
}

impl Request for Renew {
    type Answer = Renewal;
    const NAME: &'static str = "renew";
    fn into_command(self) -> Command {
        Command::Renew(self)
    }
    fn answer(response: Response) -> Result<Renewal, Box<Response>> {
        match response {
            Response::Renewed { renewed, rejected } => Ok(Renewal { renewed, rejected }),
            other => Err(Box::new(other)),
        }
    }
}

/// Commands on one item whose answer is the item after the change.
macro_rules! item_requests {
    ($($command:ident => $name:literal),* $(,)?) => {$(
        impl Request for $command {
            type Answer = WorkItem;
            const NAME: &'static str = $name;
            fn into_command(self) -> Command {
                Command::$command(self)
            }
            fn answer(response: Response) -> Result<WorkItem, Box<Response>> {
                match response {
                    Response::Item(item) => Ok(item),
                    other => Err(Box::new(other)),
                }
            }
        }
    )*};
}

item_requests!(
    Pause => "pause",
    Resume => "resume",
    Signal => "signal",
    Park => "park",
    StepDone => "step checkpoint",
    Complete => "complete",
    Fail => "fail",
    Release => "release",
    Handoff => "handoff",
    Cancel => "cancel",
);

impl Request for crate::command::RegisterNode {
    type Answer = ();
    const NAME: &'static str = "node registration";
    fn into_command(self) -> Command {
        Command::RegisterNode(self)
    }
    fn answer(response: Response) -> Result<(), Box<Response>> {
        match response {
            Response::Registered => Ok(()),
            other => Err(Box::new(other)),
        }
    }
}

/// Expires every lease that ended by the leader's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick;

impl Request for Tick {
    /// The items whose lease expired.
    type Answer = Vec<WorkId>;
    const NAME: &'static str = "tick";
    fn into_command(self) -> Command {
        Command::Tick { now: 0 }
    }
    fn answer(response: Response) -> Result<Vec<WorkId>, Box<Response>> {
        match response {
            Response::Expired(ids) => Ok(ids),
            other => Err(Box::new(other)),
        }
    }
}

/// A new leader extends every live lease to at least now + its length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaderTookOffice;

impl Request for LeaderTookOffice {
    /// How many leases were extended.
    type Answer = usize;
    const NAME: &'static str = "lease extension";
    fn into_command(self) -> Command {
        Command::LeaderTookOffice { now: 0 }
    }
    fn answer(response: Response) -> Result<usize, Box<Response>> {
        match response {
            Response::Extended(n) => Ok(n),
            other => Err(Box::new(other)),
        }
    }
}

impl Request for crate::command::Compact {
    /// How many finished items were removed: a full batch (`max`) means
    /// more may be due.
    type Answer = usize;
    const NAME: &'static str = "compaction";
    fn into_command(self) -> Command {
        Command::Compact(self)
    }
    fn answer(response: Response) -> Result<usize, Box<Response>> {
        match response {
            Response::Compacted(n) => Ok(n),
            other => Err(Box::new(other)),
        }
    }
}

/// Several step checkpoints of one run, committed in one entry and in
/// order; each is answered on its own (one refused does not undo the
/// others). A single checkpoint is proposed bare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoints(pub Vec<StepDone>);

impl Request for Checkpoints {
    type Answer = Vec<Result<WorkItem, ClaimError>>;
    const NAME: &'static str = "step checkpoints";
    fn into_command(self) -> Command {
        let mut steps = self.0;
        if steps.len() == 1
            && let Some(only) = steps.pop()
        {
            return Command::StepDone(only);
        }
        Command::Batch(steps.into_iter().map(Command::StepDone).collect())
    }
    fn answer(response: Response) -> Result<Self::Answer, Box<Response>> {
        match response {
            Response::Item(item) => Ok(vec![Ok(item)]),
            Response::Batch(results) => results
                .into_iter()
                .map(|r| match r {
                    Ok(response) => StepDone::answer(response).map(Ok),
                    Err(e) => Ok(Err(e)),
                })
                .collect(),
            other => Err(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{State, apply};

    fn submit(id: &str) -> Submit {
        Submit {
            id: id.into(),
            idempotency_key: String::new(),
            kind: "task".into(),
            priority: 0,
            requires: Vec::new(),
            payload: "{}".into(),
            max_attempts: 0,
            now: 1,
        }
    }

    fn request<R: Request>(state: &mut State, r: R) -> Result<R::Answer, ClaimError> {
        let response = apply(state, r.into_command())?;
        Ok(R::answer(response).unwrap())
    }

    #[test]
    fn every_request_gets_its_own_shape_of_answer() {
        let mut state = State::new();
        let submitted = request(&mut state, submit("w1")).unwrap();
        assert!(submitted.created);
        let granted = request(
            &mut state,
            Claim {
                agent: "a1".into(),
                kinds: vec!["task".into()],
                capabilities: Vec::new(),
                max: 1,
                lease_ms: 1_000,
                now: 2,
            },
        )
        .unwrap();
        let token = granted[0].current_token().unwrap();
        let step = |step: &str| StepDone {
            id: "w1".into(),
            token,
            step: step.into(),
            outcome: "{}".into(),
            now: 3,
        };
        let one = request(&mut state, Checkpoints(vec![step("a")])).unwrap();
        assert_eq!(one.len(), 1);
        let stale = StepDone {
            token: token + 1,
            ..step("c")
        };
        let two = request(&mut state, Checkpoints(vec![step("b"), stale])).unwrap();
        assert!(two[0].is_ok());
        assert!(matches!(two[1], Err(ClaimError::StaleToken { .. })));
        let expired = request(&mut state, Tick).unwrap();
        assert!(expired.is_empty());
    }

    #[test]
    fn a_mismatched_answer_is_handed_back() {
        assert_eq!(
            Claim::answer(Response::Registered),
            Err(Box::new(Response::Registered))
        );
    }
}

impl Request for crate::command::SetLimit {
    type Answer = crate::KeyLimit;
    const NAME: &'static str = "set limit";
    fn into_command(self) -> Command {
        Command::SetLimit(self)
    }
    fn answer(response: Response) -> Result<crate::KeyLimit, Box<Response>> {
        match response {
            Response::Limit(limit) => Ok(limit),
            other => Err(Box::new(other)),
        }
    }
}

/// Commands whose answer says whether there was something to delete.
macro_rules! delete_requests {
    ($($command:ident => $name:literal),* $(,)?) => {$(
        impl Request for crate::command::$command {
            type Answer = bool;
            const NAME: &'static str = $name;
            fn into_command(self) -> Command {
                Command::$command(self)
            }
            fn answer(response: Response) -> Result<bool, Box<Response>> {
                match response {
                    Response::Deleted(found) => Ok(found),
                    other => Err(Box::new(other)),
                }
            }
        }
    )*};
}

delete_requests!(DeleteLimit => "delete limit", DeleteSchedule => "delete schedule");

/// Commands on one schedule whose answer is the schedule after the change.
macro_rules! schedule_requests {
    ($($command:ident => $name:literal),* $(,)?) => {$(
        impl Request for crate::command::$command {
            type Answer = crate::Schedule;
            const NAME: &'static str = $name;
            fn into_command(self) -> Command {
                Command::$command(self)
            }
            fn answer(response: Response) -> Result<crate::Schedule, Box<Response>> {
                match response {
                    Response::Schedule(schedule) => Ok(schedule),
                    other => Err(Box::new(other)),
                }
            }
        }
    )*};
}

schedule_requests!(CreateSchedule => "create schedule", PauseSchedule => "pause or resume schedule");

/// The answer to a [`FireSchedule`](crate::command::FireSchedule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub schedule: crate::Schedule,
    /// None when the fire was skipped (overlap) or had already happened.
    pub item: Option<WorkItem>,
}

impl Request for crate::command::FireSchedule {
    type Answer = Fired;
    const NAME: &'static str = "fire schedule";
    fn into_command(self) -> Command {
        Command::FireSchedule(self)
    }
    fn answer(response: Response) -> Result<Fired, Box<Response>> {
        match response {
            Response::Fired { schedule, item } => Ok(Fired {
                schedule: *schedule,
                item,
            }),
            other => Err(Box::new(other)),
        }
    }
}

impl Request for crate::command::Retry {
    type Answer = WorkItem;
    const NAME: &'static str = "retry";
    fn into_command(self) -> Command {
        Command::Retry(self)
    }
    fn answer(response: Response) -> Result<WorkItem, Box<Response>> {
        match response {
            Response::Item(item) => Ok(item),
            other => Err(Box::new(other)),
        }
    }
}

/// A submit with queue control answers as a plain submit does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitWith(pub Submit, pub crate::command::SubmitControl);

impl Request for SubmitWith {
    type Answer = Submitted;
    const NAME: &'static str = "submit";
    fn into_command(self) -> Command {
        Command::SubmitWith(self.0, self.1)
    }
    fn answer(response: Response) -> Result<Submitted, Box<Response>> {
        Submit::answer(response)
    }
}
