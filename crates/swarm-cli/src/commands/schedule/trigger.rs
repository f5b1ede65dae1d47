//! `swarmctl schedule trigger NAME`: fires the schedule once now, without
//! moving its next fire time, and prints the item it submitted. With
//! overlap `skip` and the previous fire's item still pending or claimed,
//! nothing is submitted: stderr says so and the command succeeds.
//! `-o json`: `{"schedule": {...}, "item": {...} or null}`.
//!
//! A trigger is not retried after an ambiguous failure (a repeat would
//! submit a second item): `schedule get NAME` shows the last fire.

use anyhow::{Context as _, Result};
use clap::Args;
use serde_json::{Value, json};

use crate::commands::Context;
use crate::output::{OutputFormat, print_json};
use crate::views::schedule::schedule_json;
use crate::views::work_item::item_json;

#[derive(Debug, Args)]
pub struct Trigger {
    /// Schedule name
    pub name: String,
}

pub async fn run(ctx: &Context, args: Trigger) -> Result<()> {
    let fired = ctx
        .client
        .trigger_schedule(&args.name)
        .await
        .with_context(|| format!("trigger schedule {:?}", args.name))?;
    if ctx.output == OutputFormat::Json {
        print_json(&json!({
            "schedule": fired.schedule.as_ref().map_or(Value::Null, schedule_json),
            "item": fired.item.as_ref().map_or(Value::Null, item_json),
        }))?;
    }
    match &fired.item {
        Some(item) => {
            eprintln!(
                "fired schedule {:?}: submitted work item {}",
                args.name, item.id
            );
            if ctx.output == OutputFormat::Table {
                crate::commands::work::print_item(ctx, item)?;
            }
        }
        None => {
            let last = fired
                .schedule
                .as_ref()
                .map(|s| s.last_item_id.as_str())
                .filter(|id| !id.is_empty());
            eprintln!(
                "schedule {:?} skipped this fire: its previous item{} is still pending or claimed (overlap skip)",
                args.name,
                last.map(|id| format!(" ({id})")).unwrap_or_default()
            );
        }
    }
    Ok(())
}
