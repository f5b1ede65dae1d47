//! Encoding of openraft's messages inside `RaftMessage.data`. openraft owns
//! their shape; JSON keeps them readable in a packet capture and needs no
//! schema of ours.

use serde::{Serialize, de::DeserializeOwned};
use swarm_claims::Response;

use crate::{ApplyResult, ClusterError};

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, tonic::Status> {
    serde_json::to_vec(value)
        .map_err(|e| tonic::Status::internal(format!("encode raft message: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, tonic::Status> {
    serde_json::from_slice(bytes)
        .map_err(|e| tonic::Status::invalid_argument(format!("decode raft message: {e}")))
}

/// A forwarded write's answer as it travels from the leader back to the
/// follower that forwarded it: the state machine's own result inside, the
/// cluster's error outside. This shape predates [`ClusterError::Refused`]
/// and stays, so that nodes on either side of that change understand each
/// other during a rolling upgrade; a refusal never travels as `Refused`.
pub(crate) type ForwardedAnswer = Result<ApplyResult, ClusterError>;

pub(crate) fn to_wire(answer: Result<Response, ClusterError>) -> ForwardedAnswer {
    match answer {
        Ok(response) => Ok(Ok(response)),
        Err(ClusterError::Refused(refusal)) => Ok(Err(refusal)),
        Err(e) => Err(e),
    }
}

pub(crate) fn from_wire(answer: ForwardedAnswer) -> Result<Response, ClusterError> {
    answer?.map_err(ClusterError::Refused)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use swarm_claims::ClaimError;

    use super::*;

    fn wire(answer: Result<Response, ClusterError>) -> String {
        String::from_utf8(encode(&to_wire(answer)).unwrap()).unwrap()
    }

    /// The bytes nodes exchange for a forwarded write, pinned: a change here
    /// breaks a cluster whose nodes run different versions.
    #[test]
    fn forwarded_answers_keep_their_wire_shape() {
        assert_eq!(
            wire(Ok(Response::Registered)),
            r#"{"Ok":{"Ok":"Registered"}}"#
        );
        let refused = ClusterError::Refused(ClaimError::NotFound { id: "w1".into() });
        assert_eq!(
            wire(Err(refused.clone())),
            r#"{"Ok":{"Err":{"NotFound":{"id":"w1"}}}}"#
        );
        let not_leader = ClusterError::NotLeader {
            leader_id: Some(2),
            leader_addr: Some("127.0.0.1:7102".into()),
        };
        assert_eq!(
            wire(Err(not_leader.clone())),
            r#"{"Err":{"NotLeader":{"leader_id":2,"leader_addr":"127.0.0.1:7102"}}}"#
        );
        assert_eq!(
            wire(Err(ClusterError::Unknown("x".into()))),
            r#"{"Err":{"Unknown":"x"}}"#
        );
        for answer in [Err(refused), Err(not_leader), Ok(Response::Registered)] {
            let bytes = encode(&to_wire(answer.clone())).unwrap();
            assert_eq!(from_wire(decode(&bytes).unwrap()), answer);
        }
    }
}
