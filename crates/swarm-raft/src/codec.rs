//! The bytes of what nodes exchange and keep: openraft's messages inside
//! `RaftMessage.data`, forwarded writes and their answers, and the Raft log
//! entries. openraft owns the messages' shape; this module owns
//! their encoding.
//!
//! # Format
//! One tag byte, then the value in bincode 2 (its serde support, standard
//! configuration: little endian, variable-length integers). The tag is the
//! format's version: a later format takes the next tag, and a reader that
//! meets a tag it does not know says so instead of misreading the bytes.
//! Tags are below `0x09`, where no JSON text starts.
//!
//! Before this format everything was JSON. Bytes that do not start with a
//! tag are read as that legacy JSON, so log entries written by an older
//! swarmd load, and this node understands an older peer. An older node does
//! not understand this one: a cluster runs one version.
//!
//! bincode names no fields and no enum variants: a field or a variant is
//! its position. A type that is stored here (log entries: commands) changes
//! compatibly only by adding enum variants at the end; anything else is a
//! new format tag. What is only sent (answers, which carry work items)
//! follows the one-version rule above: a work item gained its queue control
//! at the end of its encoding (as snapshot format version 2 stores it)
//! without a new tag.
//!
//! A serde attribute that makes the written fields depend on the value
//! (`skip_serializing_if`), or that needs a self-describing format
//! (`untagged`, `flatten`, `serde_json::Value`), breaks bincode: the types
//! that travel here must have none (the round-trip tests below and in
//! `snapshot_file` catch it).

use serde::{Serialize, de::DeserializeOwned};
use swarm_claims::Response;

use crate::{ApplyResult, ClusterError};

/// The tag of the current format: bincode 2, standard configuration.
const BINCODE_V1: u8 = 0x01;
/// Tags at or above this are the first byte of legacy JSON (a tab, a
/// newline, a space, `{`, `[`, `"`, ...).
const FIRST_JSON_BYTE: u8 = 0x09;

/// bincode's configuration for every binary format of this crate.
pub(crate) const BINCODE: bincode::config::Configuration = bincode::config::standard();

/// How many bytes of strings one decoded value may claim. bincode allocates
/// a string's length before reading it, so a damaged length could ask for
/// any amount; no valid value holds more than the largest message a peer
/// may send (`service::PEER_MESSAGE_BYTES`).
const DECODE_LIMIT: usize = 256 * 1024 * 1024;

/// Why stored or received bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FormatError {
    #[error("no bytes")]
    Empty,
    #[error("format tag {0:#04x} is unknown to this swarmd (written by a newer version?)")]
    UnknownTag(u8),
    #[error("binary value: {0}")]
    Binary(#[from] bincode::error::DecodeError),
    #[error("{0} bytes follow the binary value")]
    Trailing(usize),
    #[error("legacy JSON value: {0}")]
    Json(#[from] serde_json::Error),
}

/// `value` in the current format: its tag, then its bincode encoding.
pub(crate) fn to_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    let mut out = vec![BINCODE_V1];
    bincode::serde::encode_into_std_write(value, &mut out, BINCODE)?;
    Ok(out)
}

/// Reads bytes written by [`to_bytes`], or legacy JSON.
pub(crate) fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FormatError> {
    match bytes.split_first() {
        None => Err(FormatError::Empty),
        Some((&BINCODE_V1, body)) => {
            let config = BINCODE.with_limit::<DECODE_LIMIT>();
            let (value, read) = bincode::serde::decode_from_slice(body, config)?;
            match body.len() - read {
                0 => Ok(value),
                left => Err(FormatError::Trailing(left)),
            }
        }
        Some((&tag, _)) if tag < FIRST_JSON_BYTE => Err(FormatError::UnknownTag(tag)),
        Some(_) => Ok(serde_json::from_slice(bytes)?),
    }
}

/// Encodes a Raft message or a forwarded call for `RaftMessage.data`.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, tonic::Status> {
    to_bytes(value).map_err(|e| tonic::Status::internal(format!("encode raft message: {e}")))
}

/// Decodes `RaftMessage.data` (binary, or the JSON an older peer sends).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, tonic::Status> {
    from_bytes(bytes)
        .map_err(|e| tonic::Status::invalid_argument(format!("decode raft message: {e}")))
}

/// A forwarded write's answer as it travels from the leader back to the
/// follower that forwarded it: the state machine's own result inside, the
/// cluster's error outside. This shape predates [`ClusterError::Refused`]
/// and stays, so that the answers of an older leader (in JSON) still read
/// the same; a refusal never travels as `Refused`.
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

    use openraft::EntryPayload;
    use openraft::entry::RaftEntry;
    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest};
    use openraft::testing::log_id;
    use swarm_claims::{ClaimError, Command};

    use super::*;
    use crate::{Entry, TypeConfig};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn answers() -> Vec<Result<Response, ClusterError>> {
        vec![
            Ok(Response::Registered),
            Err(ClusterError::Refused(ClaimError::NotFound {
                id: "w1".into(),
            })),
            Err(ClusterError::NotLeader {
                leader_id: Some(2),
                leader_addr: Some("127.0.0.1:7102".into()),
            }),
            Err(ClusterError::Unknown("x".into())),
        ]
    }

    /// The bytes nodes exchange for a forwarded write, pinned: a change here
    /// breaks a cluster whose nodes run different versions. (Pinned in JSON
    /// before the binary format; the JSON below is what an older leader
    /// answers, and this version still reads it.)
    #[test]
    fn forwarded_answers_keep_their_wire_shape() {
        // Tag 01; then Result variants, enum variants and lengths as varints.
        let pinned = [
            "01000006",
            "01000100027731",
            "0101010102010e3132372e302e302e313a37313032",
            "0101030178",
        ];
        for (answer, want) in answers().into_iter().zip(pinned) {
            let bytes = encode(&to_wire(answer.clone())).unwrap();
            assert_eq!(hex(&bytes), want, "{answer:?}");
            assert_eq!(from_wire(decode(&bytes).unwrap()), answer);
        }
        let legacy = [
            r#"{"Ok":{"Ok":"Registered"}}"#,
            r#"{"Ok":{"Err":{"NotFound":{"id":"w1"}}}}"#,
            r#"{"Err":{"NotLeader":{"leader_id":2,"leader_addr":"127.0.0.1:7102"}}}"#,
            r#"{"Err":{"Unknown":"x"}}"#,
        ];
        for (answer, json) in answers().into_iter().zip(legacy) {
            let read: ForwardedAnswer = decode(json.as_bytes()).unwrap();
            assert_eq!(from_wire(read), answer, "{json}");
        }
    }

    #[test]
    fn raft_messages_and_entries_round_trip() {
        let entry = Entry::new_normal(
            log_id::<TypeConfig>(3, 1, 7),
            Command::Tick {
                now: 1_700_000_000_000,
            },
        );
        let membership =
            openraft::Membership::new_with_defaults(vec![[1u64, 2, 3].into_iter().collect()], []);
        let entries = vec![
            entry.clone(),
            Entry::new_blank(log_id::<TypeConfig>(3, 1, 8)),
            Entry::new_membership(log_id::<TypeConfig>(3, 1, 9), membership),
        ];
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: openraft::Vote::new_committed(3, 1),
            prev_log_id: Some(log_id::<TypeConfig>(2, 1, 6)),
            entries: entries.clone(),
            leader_commit: Some(log_id::<TypeConfig>(2, 1, 5)),
        };
        let back: AppendEntriesRequest<TypeConfig> = decode(&encode(&request).unwrap()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{request:?}"));
        for e in entries {
            let back: Entry = from_bytes(&to_bytes(&e).unwrap()).unwrap();
            assert_eq!(back, e);
            let legacy: Entry = from_bytes(&serde_json::to_vec(&e).unwrap()).unwrap();
            assert_eq!(legacy, e);
        }
        let vote = VoteRequest::<TypeConfig>::new(openraft::Vote::new(4, 2), None);
        let back: VoteRequest<TypeConfig> = decode(&encode(&vote).unwrap()).unwrap();
        assert_eq!(back, vote);
        let resp = AppendEntriesResponse::<TypeConfig>::Success;
        let back: AppendEntriesResponse<TypeConfig> = decode(&encode(&resp).unwrap()).unwrap();
        assert_eq!(back, resp);
        assert!(matches!(entry.payload, EntryPayload::Normal(_)));
    }

    /// The point of the binary format: a typical entry (one submit) takes
    /// well under half its JSON size in the log.
    #[test]
    fn a_log_entry_is_much_smaller_than_its_json() {
        let submit = Command::Submit(swarm_claims::command::Submit {
            id: "w00000001".into(),
            idempotency_key: "k00000001".into(),
            kind: "task".into(),
            priority: 1,
            requires: Vec::new(),
            payload: "{\"n\":1}".into(),
            max_attempts: 0,
            now: 1_764_000_000_000,
        });
        let entry = Entry::new_normal(log_id::<TypeConfig>(3, 1, 1_234_567), submit);
        let (binary, json) = (
            to_bytes(&entry).unwrap(),
            serde_json::to_vec(&entry).unwrap(),
        );
        assert!(
            2 * binary.len() < json.len(),
            "{} vs {}",
            binary.len(),
            json.len()
        );
    }

    #[test]
    fn bad_bytes_are_errors_that_say_what_is_wrong() {
        let entry = to_bytes(&Command::Tick { now: 5 }).unwrap();
        let cases: [(&[u8], &str); 6] = [
            (&[], "no bytes"),
            (&[0x02, 0, 0], "format tag 0x02 is unknown"),
            (&entry[..entry.len() - 1], "binary value"),
            (&[entry.as_slice(), &[0]].concat(), "1 bytes follow"),
            (b"{\"Tick\":", "legacy JSON"),
            // A Submit whose id claims 2^60 bytes: refused, not allocated.
            (
                &[0x01, 0x00, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10],
                "binary value",
            ),
        ];
        for (bytes, want) in cases {
            let err = from_bytes::<Command>(bytes).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
    }
}
