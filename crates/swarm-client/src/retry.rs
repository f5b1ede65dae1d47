//! Which failures a call may be retried after.
//!
//! Every failed attempt is first [`classify`]-ed by what it says about the
//! request's fate: it never left this process, a node refused it without
//! acting on it, it may have been applied, or a node gave a definite answer.
//! [`Rpc::retries_after`] then decides, per call, whether trying again is
//! safe. Repeating a claim whose first attempt was applied would grant the
//! agent items it never hears of; repeating a keyless submit would create a
//! second item. So those are retried only when the request certainly did not
//! take effect.

use tonic::{Code, Status};

use crate::NodeAddr;

pub use swarm_proto::LEADER_ADDR_KEY;

/// One RPC, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    /// `keyed`: the request has a non-empty idempotency key, so a repeat
    /// returns the item the first attempt created.
    Submit {
        keyed: bool,
    },
    Claim,
    Renew,
    Complete,
    Fail,
    Release,
    Handoff,
    Cancel,
    GetWork,
    ListWork,
    WorkStats,
    /// Opening a `WatchWork` stream (a read). Once the stream has started,
    /// nothing retries it: the caller resumes from the last event it saw.
    WatchWork,
    /// Puts failed items back to pending. A repeat after the first was
    /// applied is refused (the item is pending now) though it worked, or,
    /// with `all`, puts back items that died in between.
    RetryWork,
    /// A repeated pause answers as the first did.
    PauseWork,
    /// A repeated signal (same payload) answers as the first did.
    SignalWork,
    /// A repeat after the first was applied is refused ("not paused")
    /// though it worked.
    ResumeWork,
    // Schedules and limits are named, and the node answers a repeated
    // create, set, pause, resume or delete as it answered the first (a
    // repeated delete: "nothing by that name").
    CreateSchedule,
    GetSchedule,
    ListSchedules,
    PauseSchedule,
    ResumeSchedule,
    DeleteSchedule,
    /// Fires a schedule now: each repeat submits one more item.
    TriggerSchedule,
    SetLimit,
    GetLimit,
    ListLimits,
    DeleteLimit,
    ClusterStatus,
    AddNode,
    RemoveNode,
    TransferLeader,
}

impl Rpc {
    /// Whether applying the request twice leaves the cluster as applying it
    /// once (or fails harmlessly, as a second `complete` with the same token does).
    pub(crate) fn is_repeatable(self) -> bool {
        match self {
            Rpc::Submit { keyed } => keyed,
            Rpc::Renew
            | Rpc::Complete
            | Rpc::Cancel
            | Rpc::GetWork
            | Rpc::ListWork
            | Rpc::WorkStats
            | Rpc::WatchWork
            | Rpc::PauseWork
            | Rpc::SignalWork
            | Rpc::CreateSchedule
            | Rpc::GetSchedule
            | Rpc::ListSchedules
            | Rpc::PauseSchedule
            | Rpc::ResumeSchedule
            | Rpc::DeleteSchedule
            | Rpc::SetLimit
            | Rpc::GetLimit
            | Rpc::ListLimits
            | Rpc::DeleteLimit
            | Rpc::ClusterStatus => true,
            Rpc::Claim
            | Rpc::Fail
            | Rpc::Release
            | Rpc::Handoff
            | Rpc::RetryWork
            | Rpc::ResumeWork
            | Rpc::TriggerSchedule
            | Rpc::AddNode
            | Rpc::RemoveNode
            | Rpc::TransferLeader => false,
        }
    }

    /// Whether the request presents a fencing token that the node checks
    /// before anything else.
    pub(crate) fn presents_token(self) -> bool {
        matches!(
            self,
            Rpc::Complete | Rpc::Fail | Rpc::Release | Rpc::Handoff
        )
    }

    /// Whether the call may be tried again (on the same or another node)
    /// after an attempt failed this way.
    pub(crate) fn retries_after(self, failure: &Failure) -> bool {
        match failure {
            Failure::NotSent | Failure::Refused { .. } => true,
            Failure::Ambiguous => self.is_repeatable(),
            Failure::Answered => false,
        }
    }
}

/// What one failed attempt says about the request's fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The request never left this process: connecting to the node failed
    /// (refused, unreachable, connect timeout).
    NotSent,
    /// A node declined the request without acting on it (UNAVAILABLE with
    /// `swarm-leader-addr`), naming the leader when it knows one.
    Refused { leader: Option<NodeAddr> },
    /// The request may have been applied: the attempt timed out, the
    /// connection broke after sending, or a node answered UNAVAILABLE
    /// without saying it did nothing.
    Ambiguous,
    /// A node gave a definite answer (not found, stale token, bad argument,
    /// ...); asking again cannot change it.
    Answered,
}

/// Sorts a failed attempt into a [`Failure`].
///
/// A status built by this process's transport carries the transport error as
/// its source; one a node sent has none.
pub(crate) fn classify(status: &Status) -> Failure {
    if let Some(source) = std::error::Error::source(status) {
        return if in_chain::<tonic::ConnectError>(source) {
            Failure::NotSent
        } else {
            Failure::Ambiguous
        };
    }
    match status.code() {
        Code::Unavailable => match status.metadata().get(LEADER_ADDR_KEY) {
            Some(value) => Failure::Refused {
                leader: value
                    .to_str()
                    .ok()
                    .filter(|s| !s.trim().is_empty())
                    .and_then(|s| s.parse().ok()),
            },
            None => Failure::Ambiguous,
        },
        // A deadline that passed, here or on the node, says nothing about
        // whether the node got as far as proposing the request.
        Code::DeadlineExceeded | Code::Cancelled => Failure::Ambiguous,
        _ => Failure::Answered,
    }
}

fn in_chain<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<E>() {
            return true;
        }
        next = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io;

    use tonic::metadata::MetadataValue;

    use super::*;

    const ALL: [Rpc; 32] = [
        Rpc::Submit { keyed: true },
        Rpc::Submit { keyed: false },
        Rpc::Claim,
        Rpc::Renew,
        Rpc::Complete,
        Rpc::Fail,
        Rpc::Release,
        Rpc::Handoff,
        Rpc::Cancel,
        Rpc::GetWork,
        Rpc::ListWork,
        Rpc::WorkStats,
        Rpc::WatchWork,
        Rpc::RetryWork,
        Rpc::PauseWork,
        Rpc::SignalWork,
        Rpc::ResumeWork,
        Rpc::CreateSchedule,
        Rpc::GetSchedule,
        Rpc::ListSchedules,
        Rpc::PauseSchedule,
        Rpc::ResumeSchedule,
        Rpc::DeleteSchedule,
        Rpc::TriggerSchedule,
        Rpc::SetLimit,
        Rpc::GetLimit,
        Rpc::ListLimits,
        Rpc::DeleteLimit,
        Rpc::ClusterStatus,
        Rpc::AddNode,
        Rpc::RemoveNode,
        Rpc::TransferLeader,
    ];

    fn connect_refused() -> Status {
        let io = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        Status::from_error(Box::new(tonic::ConnectError(Box::new(io))))
    }

    fn reset_after_send() -> Status {
        let io = io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by peer");
        Status::from_error(Box::new(io))
    }

    fn client_timeout() -> Status {
        Status::from_error(Box::new(tonic::TimeoutExpired(())))
    }

    fn unavailable_with_hint(hint: &str) -> Status {
        let mut status = Status::unavailable("not leader");
        status
            .metadata_mut()
            .insert(LEADER_ADDR_KEY, MetadataValue::try_from(hint).unwrap());
        status
    }

    #[test]
    fn connect_refused_is_not_sent() {
        let status = connect_refused();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(classify(&status), Failure::NotSent);
    }

    #[test]
    fn transport_failures_after_connecting_are_ambiguous() {
        assert_eq!(classify(&reset_after_send()), Failure::Ambiguous);
        assert_eq!(classify(&client_timeout()), Failure::Ambiguous);
        assert_eq!(
            classify(&Status::deadline_exceeded("no answer")),
            Failure::Ambiguous
        );
    }

    #[test]
    fn unavailable_with_leader_hint_is_a_refusal_naming_the_leader() {
        let failure = classify(&unavailable_with_hint("127.0.0.1:7102"));
        assert_eq!(
            failure,
            Failure::Refused {
                leader: Some("127.0.0.1:7102".parse().unwrap())
            }
        );
        // Present but empty: the node did nothing and knows no leader.
        assert_eq!(
            classify(&unavailable_with_hint("")),
            Failure::Refused { leader: None }
        );
    }

    #[test]
    fn unavailable_from_a_node_without_hint_is_ambiguous() {
        assert_eq!(
            classify(&Status::unavailable("forwarding failed")),
            Failure::Ambiguous
        );
    }

    #[test]
    fn definite_answers_are_final() {
        for status in [
            Status::not_found("work item \"x\" not found"),
            Status::failed_precondition("stale token 3"),
            Status::invalid_argument("bad"),
            Status::internal("oops"),
        ] {
            assert_eq!(classify(&status), Failure::Answered, "{status:?}");
        }
    }

    #[test]
    fn every_call_retries_when_the_request_certainly_had_no_effect() {
        for rpc in ALL {
            assert!(rpc.retries_after(&classify(&connect_refused())), "{rpc:?}");
            assert!(
                rpc.retries_after(&classify(&unavailable_with_hint("h:1"))),
                "{rpc:?}"
            );
            assert!(!rpc.retries_after(&Failure::Answered), "{rpc:?}");
        }
    }

    #[test]
    fn only_repeatable_calls_retry_after_an_ambiguous_failure() {
        let repeatable = [
            Rpc::Submit { keyed: true },
            Rpc::Renew,
            Rpc::Complete,
            Rpc::Cancel,
            Rpc::GetWork,
            Rpc::ListWork,
            Rpc::WorkStats,
            Rpc::WatchWork,
            Rpc::PauseWork,
            Rpc::SignalWork,
            Rpc::CreateSchedule,
            Rpc::GetSchedule,
            Rpc::ListSchedules,
            Rpc::PauseSchedule,
            Rpc::ResumeSchedule,
            Rpc::DeleteSchedule,
            Rpc::SetLimit,
            Rpc::GetLimit,
            Rpc::ListLimits,
            Rpc::DeleteLimit,
            Rpc::ClusterStatus,
        ];
        for rpc in ALL {
            for status in [
                reset_after_send(),
                client_timeout(),
                Status::unavailable(""),
            ] {
                assert_eq!(
                    rpc.retries_after(&classify(&status)),
                    repeatable.contains(&rpc),
                    "{rpc:?} after {status:?}"
                );
            }
        }
        assert!(!Rpc::Submit { keyed: false }.retries_after(&Failure::Ambiguous));
        assert!(!Rpc::Claim.retries_after(&Failure::Ambiguous));
        assert!(!Rpc::RetryWork.retries_after(&Failure::Ambiguous));
        assert!(!Rpc::TriggerSchedule.retries_after(&Failure::Ambiguous));
    }
}
