//! `swarmctl schedule delete NAME`: the schedule goes; the items it
//! submitted stay. Deleting a schedule that is not there changes nothing
//! and is not an error (a delete is retried after an ambiguous failure, and
//! the retry of one that was applied finds nothing): stderr says so, and
//! `-o json` prints `{"name", "deleted": false}`.

use anyhow::{Context as _, Result};
use clap::Args;
use serde_json::json;

use crate::commands::Context;
use crate::output::{OutputFormat, print_json};

#[derive(Debug, Args)]
pub struct Delete {
    /// Schedule name
    pub name: String,
}

pub async fn run(ctx: &Context, args: Delete) -> Result<()> {
    let deleted = ctx
        .client
        .delete_schedule(&args.name)
        .await
        .with_context(|| format!("delete schedule {:?}", args.name))?;
    if ctx.output == OutputFormat::Json {
        print_json(&json!({"name": args.name, "deleted": deleted}))?;
    }
    if deleted {
        eprintln!("deleted schedule {:?}", args.name);
    } else {
        eprintln!("no schedule named {:?}: nothing deleted", args.name);
    }
    Ok(())
}
