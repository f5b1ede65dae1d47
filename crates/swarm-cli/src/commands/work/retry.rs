//! `swarmctl work retry ID [--reset-attempts]` and `swarmctl work retry
//! --all [--type T] [--reset-attempts]`: puts a failed item, or every dead
//! letter (of a type), back to pending with its history, and prints the
//! items put back.
//!
//! Not retried after an ambiguous failure (the client says the outcome is
//! unknown): `work list --dead-letter` shows what is still dead.

use anyhow::{Context as _, Result};
use clap::{ArgGroup, Args};
use swarm_client::proto::RetryWorkRequest;

use crate::cli::parse_name;
use crate::commands::Context;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["id", "all"])))]
pub struct Retry {
    /// Work item id (a failed item)
    pub id: Option<String>,
    /// Every dead letter: the failed items whose attempts ran out
    #[arg(long)]
    pub all: bool,
    /// With --all: only dead letters of this type
    // `conflicts_with`, not `requires`: clap (4.6) lets `requires` of a
    // member of a required one-of group pass when the other member is given.
    #[arg(long = "type", value_name = "TYPE", conflicts_with = "id", value_parser = parse_name)]
    pub kind: Option<String>,
    /// Start the attempt count over (default: keep it, and give an item
    /// with no attempts left one more)
    #[arg(long)]
    pub reset_attempts: bool,
}

impl Retry {
    fn request(&self) -> RetryWorkRequest {
        RetryWorkRequest {
            id: self.id.clone().unwrap_or_default(),
            all: self.all,
            r#type: self.kind.clone().unwrap_or_default(),
            reset_attempts: self.reset_attempts,
        }
    }

    /// What the command does, for its error context.
    fn what(&self) -> String {
        match (&self.id, &self.kind) {
            (Some(id), _) => format!("retry work item {id:?}"),
            (None, Some(kind)) => format!("retry the dead letters of type {kind:?}"),
            (None, None) => "retry the dead letters".to_string(),
        }
    }
}

pub async fn run(ctx: &Context, args: Retry) -> Result<()> {
    let items = ctx
        .client
        .retry_work(args.request())
        .await
        .with_context(|| args.what())?;
    super::print_items(ctx, &items, "no dead letters to retry")?;
    if !items.is_empty() {
        let n = items.len();
        eprintln!(
            "put {n} item{} back to pending",
            if n == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::Parser as _;
    use clap::error::ErrorKind;

    use super::*;
    use crate::Cli;
    use crate::commands::Command;
    use crate::commands::work::Work;

    fn retry(flags: &[&str]) -> Result<Retry, clap::Error> {
        let cli = Cli::try_parse_from(["swarmctl", "work", "retry"].iter().chain(flags))?;
        match cli.command {
            Command::Work(Work::Retry(r)) => Ok(r),
            other => panic!("expected work retry, got {other:?}"),
        }
    }

    #[test]
    fn one_item_or_every_dead_letter() {
        let r = retry(&["w1", "--reset-attempts"]).unwrap();
        assert_eq!(
            r.request(),
            RetryWorkRequest {
                id: "w1".into(),
                all: false,
                r#type: String::new(),
                reset_attempts: true,
            }
        );
        assert_eq!(r.what(), r#"retry work item "w1""#);

        let r = retry(&["--all", "--type", "build"]).unwrap();
        assert_eq!(
            r.request(),
            RetryWorkRequest {
                id: String::new(),
                all: true,
                r#type: "build".into(),
                reset_attempts: false,
            }
        );
        assert_eq!(r.what(), r#"retry the dead letters of type "build""#);
    }

    #[test]
    fn exactly_one_of_id_and_all() {
        let err = retry(&[]).unwrap_err();
        assert_eq!(
            (err.kind(), err.exit_code()),
            (ErrorKind::MissingRequiredArgument, 2)
        );
        let err = retry(&["w1", "--all"]).unwrap_err();
        assert_eq!(
            (err.kind(), err.exit_code()),
            (ErrorKind::ArgumentConflict, 2)
        );
        // --type narrows --all; with an id it means nothing.
        let err = retry(&["w1", "--type", "build"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
