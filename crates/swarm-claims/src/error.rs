//! Why a command was refused. Every refusal leaves the state unchanged.

use serde::{Deserialize, Serialize};

use crate::{FencingToken, Status, WorkId};

/// The one error type of the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ClaimError {
    #[error("work item {id:?} not found")]
    NotFound { id: WorkId },

    /// The caller's token is not the item's current one: another holder (or
    /// nobody) owns it now.
    #[error("stale token {presented} for work item {id:?}: current token is {}", fmt_token(*current))]
    StaleToken {
        id: WorkId,
        presented: FencingToken,
        current: Option<FencingToken>,
    },

    /// The item is in a state that does not allow the command.
    #[error("work item {id:?} is {status}: cannot {action}")]
    WrongStatus {
        id: WorkId,
        status: Status,
        action: String,
    },

    /// A token that no live claim of this agent carries (renew).
    #[error("agent {agent:?} holds no live claim with token {token}")]
    NotHolder { agent: String, token: FencingToken },

    /// An id given to a new item is already taken by another item.
    #[error("work item id {id:?} already exists")]
    DuplicateId { id: WorkId },

    /// A field breaks a limit or a naming rule.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },

    /// No schedule (or other named thing) by that name. Appended after the
    /// older variants, so their binary encoding stays as it was.
    #[error("{what} {name:?} not found")]
    Unknown { what: String, name: String },

    /// A different schedule (or other named thing) already has that name.
    #[error("{what} {name:?} already exists")]
    Exists { what: String, name: String },
}

fn fmt_token(t: Option<FencingToken>) -> String {
    match t {
        Some(t) => t.to_string(),
        None => "none (the item is not claimed)".to_string(),
    }
}

impl ClaimError {
    pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> Self {
        ClaimError::Invalid {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}
