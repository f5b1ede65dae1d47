//! [`ClientError`]: why a call failed, keeping what a caller can act on
//! (not found, stale token, bad argument) apart from "the cluster could not
//! be reached" and "nobody knows whether it happened".

use tonic::{Code, Status};

use crate::retry::Rpc;

/// Every way a [`SwarmClient`](crate::SwarmClient) call can fail.
///
/// Errors a node answered keep its [`Status`], so the gRPC code and message
/// are there for callers that need them ([`ClientError::code`],
/// [`ClientError::status`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// An endpoint is not `host:port` or `http://host:port`.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },

    /// [`SwarmClient::connect`](crate::SwarmClient::connect) got an empty list.
    #[error("no endpoints given")]
    NoEndpoints,

    /// A [`ClientConfig`](crate::ClientConfig) that cannot work.
    #[error("invalid client config: {0}")]
    InvalidConfig(String),

    /// The work item (or node, schedule, limit) does not exist.
    #[error("{}", text(.0))]
    NotFound(Status),

    /// The fencing token is not the item's current one: another agent holds
    /// the item now, or nobody does. Nothing was changed.
    #[error("{}", stale_text(.0))]
    StaleToken(Status),

    /// The item is in a state that does not allow the call (for example
    /// cancelling a completed item).
    #[error("{}", text(.0))]
    FailedPrecondition(Status),

    /// The request broke a rule or a limit (names, sizes, JSON).
    #[error("invalid argument: {}", text(.0))]
    InvalidArgument(Status),

    /// No node served the call: every attempt failed in a way that is safe to
    /// retry, until the retry policy ran out.
    #[error("cluster unavailable: {attempts} attempt(s) failed, the last one at {endpoint}: {}", text_with_causes(.last))]
    Unavailable {
        attempts: u32,
        endpoint: String,
        last: Status,
    },

    /// A call that is not safe to repeat (claim, fail, release, handoff,
    /// submit without idempotency key, retry work, trigger schedule,
    /// membership changes) failed after the request may have reached a
    /// node. It may or may not have been applied; read the item (or the
    /// schedule's last fire) back to find out.
    #[error("outcome unknown: the request to {endpoint} failed after it was sent ({}); it may or may not have been applied", text_with_causes(.status))]
    OutcomeUnknown { endpoint: String, status: Status },

    /// A [`watch_work`](crate::SwarmClient::watch_work) stream broke after
    /// it started: the node went away or the connection dropped. Streams are
    /// not retried; watch again (from the start) and skip the events already
    /// seen, by `seq`.
    #[error("watch interrupted at {endpoint}: {}", text_with_causes(.status))]
    WatchInterrupted { endpoint: String, status: Status },

    /// Any other error a node answered with.
    #[error("{}", coded_text(.0))]
    Rpc(Status),

    /// A node answered OK but without a field the protocol requires.
    #[error("malformed response: {0}")]
    MalformedResponse(String),
}

impl ClientError {
    /// Maps a status a node answered with (not a transport failure).
    pub(crate) fn from_answer(status: Status, rpc: Rpc) -> ClientError {
        match status.code() {
            Code::NotFound => ClientError::NotFound(status),
            Code::InvalidArgument | Code::OutOfRange => ClientError::InvalidArgument(status),
            // Every call that presents a token checks it before anything
            // else, so a refused precondition there means the token is stale.
            Code::FailedPrecondition | Code::Aborted
                if rpc.presents_token() || mentions_stale(&status) =>
            {
                ClientError::StaleToken(status)
            }
            Code::FailedPrecondition => ClientError::FailedPrecondition(status),
            _ => ClientError::Rpc(status),
        }
    }

    /// The gRPC code, for errors that carry a status.
    pub fn code(&self) -> Option<Code> {
        self.status().map(Status::code)
    }

    /// The status a node answered with (or the last one, for
    /// [`ClientError::Unavailable`]).
    pub fn status(&self) -> Option<&Status> {
        match self {
            ClientError::NotFound(s)
            | ClientError::StaleToken(s)
            | ClientError::FailedPrecondition(s)
            | ClientError::InvalidArgument(s)
            | ClientError::Rpc(s) => Some(s),
            ClientError::Unavailable { last, .. } => Some(last),
            ClientError::OutcomeUnknown { status, .. }
            | ClientError::WatchInterrupted { status, .. } => Some(status),
            ClientError::InvalidEndpoint { .. }
            | ClientError::NoEndpoints
            | ClientError::InvalidConfig(_)
            | ClientError::MalformedResponse(_) => None,
        }
    }

    /// Whether the call was refused because its fencing token is stale.
    pub fn is_stale_token(&self) -> bool {
        matches!(self, ClientError::StaleToken(_))
    }

    /// Whether a watch stream broke after it started (worth watching again).
    pub fn is_watch_interrupted(&self) -> bool {
        matches!(self, ClientError::WatchInterrupted { .. })
    }

    /// Whether the item (or node, schedule, limit) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::NotFound(_))
    }
}

fn mentions_stale(status: &Status) -> bool {
    status.message().to_ascii_lowercase().contains("stale")
}

/// The status message, or the code's name when a node sent none.
fn text(status: &Status) -> String {
    if status.message().is_empty() {
        code_name(status.code()).to_string()
    } else {
        status.message().to_string()
    }
}

/// The status message followed by the transport errors beneath it
/// ("tcp connect error: Connection refused (os error 111)"), each one
/// only if it adds something.
pub(crate) fn text_with_causes(status: &Status) -> String {
    let mut text = text(status);
    let mut next = std::error::Error::source(status);
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

fn coded_text(status: &Status) -> String {
    if status.message().is_empty() {
        code_name(status.code()).to_string()
    } else {
        format!("{}: {}", code_name(status.code()), status.message())
    }
}

/// Says "stale" even if a node phrased the refusal differently, because
/// scripts and people look for that word.
fn stale_text(status: &Status) -> String {
    if mentions_stale(status) {
        text(status)
    } else {
        format!("stale token: {}", text(status))
    }
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_token_keeps_the_server_message() {
        let msg = r#"stale token 3 for work item "x": current token is 5"#;
        let err = ClientError::from_answer(Status::failed_precondition(msg), Rpc::Complete);
        assert!(err.is_stale_token());
        assert_eq!(err.to_string(), msg);
        assert_eq!(err.code(), Some(Code::FailedPrecondition));
    }

    #[test]
    fn a_refused_token_says_stale_even_if_the_node_does_not() {
        let err = ClientError::from_answer(
            Status::failed_precondition("token 3 is not current"),
            Rpc::Fail,
        );
        assert!(err.is_stale_token());
        assert_eq!(err.to_string(), "stale token: token 3 is not current");
    }

    #[test]
    fn failed_precondition_without_token_is_not_stale() {
        let err = ClientError::from_answer(
            Status::failed_precondition(r#"work item "x" is completed: cannot cancel"#),
            Rpc::Cancel,
        );
        assert!(matches!(err, ClientError::FailedPrecondition(_)));
        assert_eq!(
            err.to_string(),
            r#"work item "x" is completed: cannot cancel"#
        );
    }

    #[test]
    fn unavailable_names_the_transport_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let status = Status::from_error(Box::new(tonic::ConnectError(Box::new(io))));
        let err = ClientError::Unavailable {
            attempts: 3,
            endpoint: "127.0.0.1:7101".into(),
            last: status,
        };
        assert_eq!(
            err.to_string(),
            "cluster unavailable: 3 attempt(s) failed, the last one at 127.0.0.1:7101: connection refused"
        );
    }

    #[test]
    fn codes_map_to_variants() {
        let nf = ClientError::from_answer(
            Status::not_found(r#"work item "x" not found"#),
            Rpc::GetWork,
        );
        assert!(nf.is_not_found());
        assert_eq!(nf.to_string(), r#"work item "x" not found"#);

        let bad = ClientError::from_answer(
            Status::invalid_argument("invalid type: empty"),
            Rpc::Submit { keyed: true },
        );
        assert_eq!(bad.to_string(), "invalid argument: invalid type: empty");

        let other = ClientError::from_answer(Status::resource_exhausted(""), Rpc::ListWork);
        assert_eq!(other.to_string(), "resource exhausted");
        assert_eq!(other.code(), Some(Code::ResourceExhausted));
        let other = ClientError::from_answer(Status::internal("disk full"), Rpc::ListWork);
        assert_eq!(other.to_string(), "internal error: disk full");
    }
}
