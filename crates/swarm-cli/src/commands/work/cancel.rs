//! `swarmctl work cancel ID [--reason TEXT]`

use anyhow::{Context as _, Result};
use clap::Args;
use swarm_client::proto::{CancelRequest, WorkStatus};

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct Cancel {
    /// Work item id
    pub id: String,
    /// Why, kept with the item
    #[arg(long)]
    pub reason: Option<String>,
}

pub async fn run(ctx: &Context, args: Cancel) -> Result<()> {
    let item = ctx
        .client
        .cancel(CancelRequest {
            id: args.id.clone(),
            reason: args.reason.unwrap_or_default(),
        })
        .await
        .with_context(|| format!("cancel work item {:?}", args.id))?;
    super::print_item(ctx, &item)?;
    if is_a_request(item.cancel_requested.is_some(), item.status) {
        eprintln!(
            "cancel requested: the holder is undoing completed steps (`swarmctl work watch {}` follows it)",
            item.id
        );
    }
    Ok(())
}

/// A cancel of a workflow that is running, or has steps done, does not end
/// the item at once: it asks the (next) holder to undo the completed steps
/// first, and the item ends cancelled after that.
fn is_a_request(cancel_requested: bool, status: i32) -> bool {
    cancel_requested
        && matches!(
            WorkStatus::try_from(status),
            Ok(WorkStatus::Claimed | WorkStatus::Pending)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unfinished_item_with_a_request_is_a_request() {
        assert!(is_a_request(true, WorkStatus::Claimed as i32));
        assert!(is_a_request(true, WorkStatus::Pending as i32));
        assert!(!is_a_request(true, WorkStatus::Cancelled as i32));
        assert!(!is_a_request(false, WorkStatus::Claimed as i32));
    }
}
