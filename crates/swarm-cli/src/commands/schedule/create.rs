//! `swarmctl schedule create NAME --cron EXPR [--timezone TZ] (--type T
//! [--payload JSON] | --workflow FILE [--input k=v]...) [--priority N]
//! [--requires CAP]... [--max-attempts N] [--concurrency-key K] [--overlap
//! skip|allow]`
//!
//! With `--workflow`, every fire submits a run of that workflow: the spec is
//! checked here and its text, the inputs and its directory become the
//! payload of a `workflow` item, exactly as `workflow run` submits it (the
//! spec is read once, now: a later edit of the file needs a new schedule).
//! The cron expression and the time zone are checked by the cluster.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{ArgGroup, Args, ValueEnum};
use serde_json::Value;
use swarm_claims::WORKFLOW_KIND;
use swarm_client::proto::{CreateScheduleRequest, Overlap};
use swarm_reactor::parse_input;

use crate::cli::{parse_json, parse_name};
use crate::commands::Context;
use crate::commands::work::submit::QueueOptions;
use crate::commands::workflow::workflow_payload;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["kind", "workflow"])))]
pub struct Create {
    /// Schedule name
    #[arg(value_parser = parse_name)]
    pub name: String,
    /// When it fires: five cron fields (minute hour day-of-month month
    /// day-of-week), six with seconds first, or @hourly, @daily, @weekly, ...
    #[arg(long, value_name = "EXPR", value_parser = parse_name)]
    pub cron: String,
    /// IANA time zone the cron expression is read in, such as Europe/Berlin
    /// (default: UTC)
    #[arg(long, value_name = "TZ", value_parser = parse_name)]
    pub timezone: Option<String>,
    /// Work type each fire submits
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_name)]
    pub kind: Option<String>,
    /// Payload of each item, a JSON document
    // `conflicts_with`, not `requires`: clap (4.6) lets `requires` of a
    // member of a required one-of group pass when the other member is given.
    #[arg(long, value_name = "JSON", value_parser = parse_json, conflicts_with = "workflow")]
    pub payload: Option<Value>,
    /// Each fire runs this workflow spec (YAML or JSON), as `workflow run` would
    #[arg(long, value_name = "FILE")]
    pub workflow: Option<PathBuf>,
    /// With --workflow: a run input as NAME=VALUE; VALUE is JSON if it
    /// parses, a string otherwise (repeat per input)
    #[arg(long = "input", value_name = "NAME=VALUE", value_parser = parse_input, conflicts_with = "kind")]
    pub inputs: Vec<(String, Value)>,
    #[command(flatten)]
    pub queue: QueueOptions,
    /// Attempts before an item fails for good (0: the cluster default)
    #[arg(long, default_value_t = 0)]
    pub max_attempts: u32,
    /// A fire time that comes while the previous fire's item is still
    /// pending or claimed: skip it, or submit anyway
    #[arg(long, value_enum, default_value_t = OverlapFlag::Skip)]
    pub overlap: OverlapFlag,
}

/// `--overlap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OverlapFlag {
    Skip,
    Allow,
}

impl From<OverlapFlag> for Overlap {
    fn from(flag: OverlapFlag) -> Overlap {
        match flag {
            OverlapFlag::Skip => Overlap::Skip,
            OverlapFlag::Allow => Overlap::Allow,
        }
    }
}

impl Create {
    /// The request, given what each fire submits.
    fn request(self, kind: String, payload_json: String) -> CreateScheduleRequest {
        CreateScheduleRequest {
            name: self.name,
            cron: self.cron,
            timezone: self.timezone.unwrap_or_default(),
            r#type: kind,
            payload_json,
            priority: self.queue.priority,
            requires: self.queue.requires,
            max_attempts: self.max_attempts,
            concurrency_key: self.queue.concurrency_key.unwrap_or_default(),
            overlap: Overlap::from(self.overlap) as i32,
        }
    }

    /// What each fire submits: `--type` and `--payload`, or a run of the
    /// `--workflow` with its inputs.
    fn item(&mut self) -> Result<(String, String)> {
        match (&self.workflow, &self.kind) {
            (Some(file), _) => {
                let (_, payload) = workflow_payload(file, std::mem::take(&mut self.inputs))?;
                Ok((WORKFLOW_KIND.to_string(), payload))
            }
            (None, kind) => {
                let payload = self.payload.take().map(|p| p.to_string());
                Ok((
                    kind.clone().unwrap_or_default(),
                    payload.unwrap_or_default(),
                ))
            }
        }
    }
}

pub async fn run(ctx: &Context, mut args: Create) -> Result<()> {
    let (kind, payload) = args.item()?;
    let name = args.name.clone();
    let schedule = ctx
        .client
        .create_schedule(args.request(kind, payload))
        .await
        .with_context(|| format!("create schedule {name:?}"))?;
    super::print_schedule(ctx, &schedule)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::Parser as _;
    use clap::error::ErrorKind;
    use serde_json::json;
    use swarm_reactor::WorkflowPayload;

    use super::*;
    use crate::Cli;
    use crate::commands::Command;
    use crate::commands::schedule::Schedule;

    fn create(flags: &[&str]) -> Result<Create, clap::Error> {
        let argv = [
            "swarmctl",
            "schedule",
            "create",
            "nightly",
            "--cron",
            "0 3 * * *",
        ];
        let cli = Cli::try_parse_from(argv.iter().chain(flags))?;
        match cli.command {
            Command::Schedule(Schedule::Create(c)) => Ok(*c),
            other => panic!("expected schedule create, got {other:?}"),
        }
    }

    #[test]
    fn a_typed_schedule_with_every_option() {
        let mut c = create(&[
            "--timezone",
            "Europe/Berlin",
            "--type",
            "backup",
            "--payload",
            r#"{"db":"main"}"#,
            "--priority",
            "-2",
            "--requires",
            "disk",
            "--requires",
            "linux",
            "--max-attempts",
            "4",
            "--concurrency-key",
            "db",
            "--overlap",
            "allow",
        ])
        .unwrap();
        let (kind, payload) = c.item().unwrap();
        assert_eq!(
            c.request(kind, payload),
            CreateScheduleRequest {
                name: "nightly".into(),
                cron: "0 3 * * *".into(),
                timezone: "Europe/Berlin".into(),
                r#type: "backup".into(),
                payload_json: r#"{"db":"main"}"#.into(),
                priority: -2,
                requires: vec!["disk".into(), "linux".into()],
                max_attempts: 4,
                concurrency_key: "db".into(),
                overlap: Overlap::Allow as i32,
            }
        );
    }

    #[test]
    fn defaults_are_utc_skip_and_no_payload() {
        let mut c = create(&["--type", "backup"]).unwrap();
        let (kind, payload) = c.item().unwrap();
        let r = c.request(kind, payload);
        assert_eq!((r.timezone.as_str(), r.payload_json.as_str()), ("", ""));
        assert_eq!(r.overlap, Overlap::Skip as i32);
        assert!(r.concurrency_key.is_empty());
    }

    #[test]
    fn a_workflow_schedule_submits_what_workflow_run_submits() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("greet.yaml");
        std::fs::write(
            &file,
            "name: greet\ninputs: [who]\nsteps:\n  - name: hello\n    run: echo\n    arguments: { v: input(who) }\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let mut c = create(&["--workflow", file, "--input", "who=al"]).unwrap();
        let (kind, payload) = c.item().unwrap();
        assert_eq!(kind, WORKFLOW_KIND);
        let (_, expected) =
            workflow_payload(file.as_ref(), vec![("who".into(), json!("al"))]).unwrap();
        assert_eq!(payload, expected);
        let payload: WorkflowPayload = serde_json::from_str(&payload).unwrap();
        assert_eq!(payload.inputs["who"], "al");
        assert!(payload.spec.starts_with("name: greet"));
        assert_eq!(
            payload.base_dir.as_deref(),
            Some(dir.path().to_str().unwrap())
        );

        // Inputs are checked against the spec before anything is sent.
        let mut c = create(&["--workflow", file, "--input", "nobody=1"]).unwrap();
        let err = c.item().unwrap_err();
        assert!(err.to_string().contains("cannot start"), "{err:#}");
    }

    #[test]
    fn type_or_workflow_exactly_once() {
        let err = create(&[]).unwrap_err();
        assert_eq!(
            (err.kind(), err.exit_code()),
            (ErrorKind::MissingRequiredArgument, 2)
        );
        let err = create(&["--type", "t", "--workflow", "w.yaml"]).unwrap_err();
        assert_eq!(
            (err.kind(), err.exit_code()),
            (ErrorKind::ArgumentConflict, 2)
        );
        // --input goes with --workflow, --payload with --type.
        assert_eq!(
            create(&["--type", "t", "--input", "a=1"])
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            create(&["--workflow", "w.yaml", "--payload", "{}"])
                .unwrap_err()
                .exit_code(),
            2
        );
        let err = create(&["--type", "t", "--overlap", "queue"]).unwrap_err();
        assert!(err.to_string().contains("--overlap"), "{err}");
        let err = create(&["--type", "t", "--payload", "{oops"]).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = Cli::try_parse_from(["swarmctl", "schedule", "create", "n", "--type", "t"])
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    }
}
