//! `swarmctl limit delete KEY`: the key's items are claimed without a
//! limit from now on. A key without a limit is not an error (a delete is
//! retried after an ambiguous failure, and the retry of one that was
//! applied finds nothing): stderr says so, and `-o json` prints `{"key",
//! "deleted": false}`.

use anyhow::{Context as _, Result};
use clap::Args;
use serde_json::json;

use crate::commands::Context;
use crate::output::{OutputFormat, print_json};

#[derive(Debug, Args)]
pub struct Delete {
    /// Concurrency key
    pub key: String,
}

pub async fn run(ctx: &Context, args: Delete) -> Result<()> {
    let deleted = ctx
        .client
        .delete_limit(&args.key)
        .await
        .with_context(|| format!("delete the limit on {:?}", args.key))?;
    if ctx.output == OutputFormat::Json {
        print_json(&json!({"key": args.key, "deleted": deleted}))?;
    }
    if deleted {
        eprintln!("deleted the limit on {:?}", args.key);
    } else {
        eprintln!("no limit on {:?}: nothing deleted", args.key);
    }
    Ok(())
}
