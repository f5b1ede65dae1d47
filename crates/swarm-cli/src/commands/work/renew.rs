//! `swarmctl work renew --agent A [--token N ...] [--progress TEXT]`: prints
//! what was renewed and what was rejected, and fails if anything was rejected.

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::json;
use swarm_client::proto::RenewRequest;

use crate::cli::parse_name;
use crate::commands::Context;
use crate::output::{OutputFormat, Table, now_ms, print_json, print_text};
use crate::views::work_item::{items_json, items_table};

#[derive(Debug, Args)]
pub struct Renew {
    /// The agent holding the leases
    #[arg(long, value_parser = parse_name)]
    pub agent: String,
    /// Tokens to renew (repeat or comma-separate; default: every lease the agent holds)
    #[arg(long = "token", value_name = "TOKEN", value_delimiter = ',')]
    pub tokens: Vec<u64>,
    /// Progress note stored with the claims
    #[arg(long)]
    pub progress: Option<String>,
}

pub async fn run(ctx: &Context, args: Renew) -> Result<()> {
    let resp = ctx
        .client
        .renew(RenewRequest {
            agent: args.agent.clone(),
            tokens: args.tokens,
            progress: args.progress,
        })
        .await
        .with_context(|| format!("renew leases of agent {:?}", args.agent))?;

    match ctx.output {
        OutputFormat::Json => print_json(&json!({
            "renewed": items_json(&resp.renewed),
            "rejected": resp.rejected.iter()
                .map(|r| json!({"token": r.token, "error": r.error}))
                .collect::<Vec<_>>(),
        }))?,
        OutputFormat::Table => {
            let mut text = String::new();
            if !resp.renewed.is_empty() {
                text.push_str(&items_table(&resp.renewed, now_ms()).render());
            }
            if !resp.rejected.is_empty() {
                let mut rejected = Table::new(&["REJECTED TOKEN", "ERROR"]);
                for r in &resp.rejected {
                    rejected.push(vec![r.token.to_string(), r.error.clone()]);
                }
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&rejected.render());
            }
            if text.is_empty() {
                eprintln!("agent {:?} holds no leases", args.agent);
            } else {
                print_text(&text)?;
            }
        }
    }

    if let Some(first) = resp.rejected.first() {
        bail!(
            "renew leases of agent {:?}: {} of {} token(s) rejected, first: token {}: {}",
            args.agent,
            resp.rejected.len(),
            resp.rejected.len() + resp.renewed.len(),
            first.token,
            first.error
        );
    }
    Ok(())
}
