//! The command line: global options and the argument parsers commands share.

use std::path::PathBuf;

use clap::{Args, Parser};
use swarm_client::NodeAddr;

use crate::commands::Command;
use crate::output::OutputFormat;

/// The three local nodes that `scripts/cluster-up.sh` starts from `cluster/`.
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103";

/// Inspect and drive a Swarm cluster.
#[derive(Debug, Parser)]
#[command(name = "swarmctl", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Nodes to talk to, comma-separated (host:port, http:// or https://)
    #[arg(
        long,
        global = true,
        env = "SWARM_ENDPOINTS",
        value_delimiter = ',',
        default_value = DEFAULT_ENDPOINTS,
        value_parser = parse_endpoint,
    )]
    pub endpoints: Vec<String>,

    /// Output format
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// CA certificate (PEM) the nodes' certificates are checked against:
    /// given, swarmctl speaks TLS
    #[arg(
        long = "ca",
        id = "tls_ca",
        value_name = "PEM",
        global = true,
        env = "SWARM_CA"
    )]
    pub ca: Option<PathBuf>,

    /// Client certificate (PEM) to present, with --cert-key
    #[arg(
        long = "cert",
        id = "tls_cert",
        value_name = "PEM",
        global = true,
        env = "SWARM_CERT",
        requires = "tls_key"
    )]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --cert (`--key` is a work item's idempotency key)
    #[arg(
        long = "cert-key",
        id = "tls_key",
        value_name = "PEM",
        global = true,
        env = "SWARM_KEY",
        requires = "tls_cert"
    )]
    pub key: Option<PathBuf>,

    /// Bearer token for a cluster with a tokens file (swarmctl token create;
    /// `--token` is a fencing token)
    #[arg(
        long = "auth-token",
        id = "auth_token",
        value_name = "TOKEN",
        global = true,
        env = "SWARM_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

impl GlobalOpts {
    /// The client configuration these options ask for: TLS when --ca is
    /// given. Names the file that cannot be read.
    pub fn client_config(&self) -> anyhow::Result<swarm_client::ClientConfig> {
        use anyhow::Context as _;
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).with_context(|| format!("read {what} {}", path.display()))
        };
        let tls = match (&self.ca, &self.cert, &self.key) {
            (None, None, None) => None,
            (None, _, _) => anyhow::bail!(
                "--cert and --key need --ca (the CA the nodes' certificates are checked against)"
            ),
            (Some(ca), cert, key) => {
                let identity = match (cert, key) {
                    (Some(cert), Some(key)) => {
                        Some((read(cert, "--cert")?, read(key, "--cert-key")?))
                    }
                    _ => None,
                };
                Some(swarm_client::ClientConfig::tls_from_pem(
                    read(ca, "--ca")?,
                    identity,
                ))
            }
        };
        Ok(swarm_client::ClientConfig {
            tls,
            token: self.token.clone(),
            ..swarm_client::ClientConfig::default()
        })
    }
}

/// A node address, normalized to `host:port`.
pub fn parse_endpoint(s: &str) -> Result<String, String> {
    s.parse::<NodeAddr>()
        .map(|addr| addr.to_string())
        .map_err(|e| e.to_string())
}

/// A JSON document given on the command line (`--payload`, `--result`).
pub fn parse_json(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not valid JSON: {e}"))
}

/// A name that must not be empty (agents, types, keys).
pub fn parse_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".to_string())
    } else {
        Ok(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use clap::error::ErrorKind;

    use super::*;
    use crate::commands::Command;
    use crate::commands::cluster::Cluster;
    use crate::commands::node::Node;
    use crate::commands::work::{StatusFilter, Work};

    fn parse(args: &[&str]) -> Cli {
        let mut argv = vec!["swarmctl"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap()
    }

    fn parse_err(args: &[&str]) -> clap::Error {
        let mut argv = vec!["swarmctl"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap_err()
    }

    fn work(cli: Cli) -> Work {
        match cli.command {
            Command::Work(w) => w,
            other => panic!("expected a work command, got {other:?}"),
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn default_endpoints_are_the_three_local_nodes() {
        // The variable would override the default; only check without it.
        if std::env::var_os("SWARM_ENDPOINTS").is_none() {
            let cli = parse(&["cluster", "status"]);
            assert_eq!(
                cli.global.endpoints,
                ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]
            );
            assert_eq!(cli.global.output, OutputFormat::Table);
        }
    }

    #[test]
    fn global_options_go_anywhere_and_endpoints_are_normalized() {
        let cli = parse(&[
            "cluster",
            "status",
            "-o",
            "json",
            "--endpoints",
            "http://10.0.0.1:7101/,10.0.0.2:7101",
        ]);
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.endpoints, ["10.0.0.1:7101", "10.0.0.2:7101"]);
        assert!(matches!(cli.command, Command::Cluster(Cluster::Status(_))));
    }

    #[test]
    fn submit_with_every_option() {
        let w = work(parse(&[
            "work",
            "submit",
            "--type",
            "build",
            "--payload",
            r#"{"repo":"swarm"}"#,
            "--priority",
            "-3",
            "--requires",
            "gpu,linux",
            "--key",
            "k1",
            "--max-attempts",
            "5",
        ]));
        let Work::Submit(s) = w else {
            panic!("expected submit")
        };
        assert_eq!(s.kind, "build");
        assert_eq!(s.payload, Some(serde_json::json!({"repo": "swarm"})));
        assert_eq!(s.options.queue.priority, -3);
        assert_eq!(s.options.queue.requires, ["gpu", "linux"]);
        assert_eq!(s.options.key.as_deref(), Some("k1"));
        assert_eq!(s.max_attempts, 5);
    }

    #[test]
    fn submit_payload_must_be_json() {
        let err = parse_err(&["work", "submit", "--type", "build", "--payload", "{oops"]);
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("not valid JSON"), "{err}");
    }

    #[test]
    fn missing_required_argument_is_a_usage_error() {
        let err = parse_err(&["work", "submit"]);
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(err.exit_code(), 2);

        let err = parse_err(&["work", "complete", "w1"]);
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn unknown_output_format_and_bad_endpoint_are_usage_errors() {
        assert_eq!(
            parse_err(&["-o", "yaml", "cluster", "status"]).exit_code(),
            2
        );
        let err = parse_err(&["--endpoints", "ftp://x:1", "cluster", "status"]);
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("scheme"), "{err}");
    }

    #[test]
    fn claim_defaults_and_lease() {
        let Work::Claim(c) = work(parse(&["work", "claim", "--agent", "a1"])) else {
            panic!("expected claim")
        };
        assert_eq!(c.max, 1);
        assert_eq!(c.lease, Duration::from_secs(30));
        assert!(c.types.is_empty());

        let Work::Claim(c) = work(parse(&[
            "work",
            "claim",
            "--agent",
            "a1",
            "--type",
            "build",
            "--type",
            "test,lint",
            "--capabilities",
            "gpu",
            "--max",
            "4",
            "--lease",
            "10s",
        ])) else {
            panic!("expected claim")
        };
        assert_eq!(c.types, ["build", "test", "lint"]);
        assert_eq!(c.capabilities, ["gpu"]);
        assert_eq!(c.max, 4);
        assert_eq!(c.lease, Duration::from_secs(10));

        let err = parse_err(&["work", "claim", "--agent", "a1", "--lease", "soon"]);
        assert_eq!(err.exit_code(), 2);
        let err = parse_err(&["work", "claim", "--agent", "a1", "--max", "0"]);
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn renew_tokens() {
        let Work::Renew(r) = work(parse(&[
            "work",
            "renew",
            "--agent",
            "a1",
            "--token",
            "3",
            "--token",
            "5,8",
            "--progress",
            "half",
        ])) else {
            panic!("expected renew")
        };
        assert_eq!(r.tokens, [3, 5, 8]);
        assert_eq!(r.progress.as_deref(), Some("half"));
    }

    #[test]
    fn finishing_commands() {
        let Work::Complete(c) = work(parse(&[
            "work", "complete", "w1", "--token", "7", "--result", "[1,2]",
        ])) else {
            panic!("expected complete")
        };
        assert_eq!((c.id.as_str(), c.token), ("w1", 7));
        assert_eq!(c.result, Some(serde_json::json!([1, 2])));

        let Work::Fail(f) = work(parse(&[
            "work", "fail", "w1", "--token", "7", "--error", "boom", "--retry",
        ])) else {
            panic!("expected fail")
        };
        assert_eq!((f.error.as_str(), f.retry), ("boom", true));

        let Work::Release(r) = work(parse(&["work", "release", "w1", "--token", "7"])) else {
            panic!("expected release")
        };
        assert_eq!(r.token, 7);

        let Work::Cancel(c) = work(parse(&["work", "cancel", "w1"])) else {
            panic!("expected cancel")
        };
        assert_eq!(c.reason, None);

        assert_eq!(
            parse_err(&["work", "complete", "w1", "--token", "-1"]).exit_code(),
            2
        );
    }

    #[test]
    fn reads() {
        let Work::Get(g) = work(parse(&["work", "get", "w1", "--local", "-o", "json"])) else {
            panic!("expected get")
        };
        assert!(g.local);

        let Work::List(l) = work(parse(&[
            "work", "list", "--status", "claimed", "--type", "build", "--holder", "a1", "--limit",
            "10",
        ])) else {
            panic!("expected list")
        };
        assert_eq!(l.status, Some(StatusFilter::Claimed));
        assert_eq!(l.kind.as_deref(), Some("build"));
        assert_eq!(l.limit, 10);
        assert!(!l.local);

        assert_eq!(
            parse_err(&["work", "list", "--status", "done"]).exit_code(),
            2
        );
    }

    #[test]
    fn node_commands() {
        let cli = parse(&["node", "add", "4", "127.0.0.1:7104", "--learner"]);
        let Command::Node(Node::Add(a)) = cli.command else {
            panic!("expected node add")
        };
        assert_eq!(
            (a.id, a.addr.as_str(), a.learner),
            (4, "127.0.0.1:7104", true)
        );

        let cli = parse(&["node", "remove", "4"]);
        let Command::Node(Node::Remove(r)) = cli.command else {
            panic!("expected node remove")
        };
        assert_eq!(r.id, 4);

        assert_eq!(parse_err(&["node", "add", "4", "nowhere"]).exit_code(), 2);
    }

    #[test]
    fn workflow_commands() {
        use crate::commands::workflow::Workflow;
        use swarm_reactor::PlanFormat;

        let cli = parse(&["workflow", "plan", "w.yaml"]);
        let Command::Workflow(Workflow::Plan(p)) = cli.command else {
            panic!("expected workflow plan")
        };
        assert_eq!(p.format, PlanFormat::Text);
        let cli = parse(&["workflow", "plan", "w.yaml", "--format", "mermaid"]);
        let Command::Workflow(Workflow::Plan(p)) = cli.command else {
            panic!("expected workflow plan")
        };
        assert_eq!(p.format, PlanFormat::Mermaid);
        assert_eq!(
            parse_err(&["workflow", "plan", "w.yaml", "--format", "dot"]).exit_code(),
            2
        );

        let cli = parse(&[
            "workflow",
            "run-local",
            "w.yaml",
            "--input",
            "n=3",
            "--input",
            "who=al",
            "--seed",
            "9",
            "-o",
            "json",
        ]);
        assert_eq!(cli.global.output, OutputFormat::Json);
        let Command::Workflow(Workflow::RunLocal(r)) = cli.command else {
            panic!("expected workflow run-local")
        };
        assert_eq!(
            r.inputs,
            [
                ("n".to_owned(), serde_json::json!(3)),
                ("who".to_owned(), serde_json::json!("al"))
            ]
        );
        assert_eq!(r.seed, Some(9));
        assert_eq!(
            parse_err(&["workflow", "run-local", "w.yaml", "--input", "n"]).exit_code(),
            2
        );
        assert_eq!(parse_err(&["workflow", "validate"]).exit_code(), 2);

        let cli = parse(&[
            "workflow",
            "run",
            "w.yaml",
            "--input",
            "n=3",
            "--priority",
            "-1",
            "--requires",
            "gpu",
            "--key",
            "k",
            "--wait",
            "--timeout",
            "5m",
        ]);
        let Command::Workflow(Workflow::Run(r)) = cli.command else {
            panic!("expected workflow run")
        };
        assert_eq!(r.inputs, [("n".to_owned(), serde_json::json!(3))]);
        assert_eq!(r.options.queue.priority, -1);
        assert_eq!(r.options.queue.requires, ["gpu"]);
        assert_eq!(r.options.key.as_deref(), Some("k"));
        assert!(r.wait);
        assert_eq!(r.timeout, Some(Duration::from_secs(300)));
        let cli = parse(&["workflow", "run", "w.yaml"]);
        let Command::Workflow(Workflow::Run(r)) = cli.command else {
            panic!("expected workflow run")
        };
        assert!(!r.wait);
        assert_eq!(r.timeout, None);
        assert_eq!(
            parse_err(&["workflow", "run", "w.yaml", "--wait", "--timeout", "soon"]).exit_code(),
            2
        );
    }

    #[test]
    fn top_command() {
        let Command::Top(t) = parse(&["top"]).command else {
            panic!("expected top")
        };
        assert_eq!(
            (t.interval, t.once, t.claims),
            (Duration::from_secs(1), false, None)
        );
        let Command::Top(t) =
            parse(&["top", "--interval", "500ms", "--once", "--claims", "5"]).command
        else {
            panic!("expected top")
        };
        assert_eq!(
            (t.interval, t.once, t.claims),
            (Duration::from_millis(500), true, Some(5))
        );
        assert_eq!(parse_err(&["top", "--interval", "5ms"]).exit_code(), 2);
        assert_eq!(parse_err(&["top", "--interval", "often"]).exit_code(), 2);
        assert_eq!(parse_err(&["top", "--claims", "0"]).exit_code(), 2);
    }

    #[test]
    fn watch_and_claims_commands() {
        let Work::Watch(w) = work(parse(&["work", "watch", "w1", "--from-start"])) else {
            panic!("expected watch")
        };
        assert_eq!((w.id.as_str(), w.from_start), ("w1", true));

        let cli = parse(&["claims", "list", "--agent", "node-1", "-o", "json"]);
        let Command::Claims(crate::commands::claims::Claims::List(l)) = cli.command else {
            panic!("expected claims list")
        };
        assert_eq!(l.agent.as_deref(), Some("node-1"));
        assert_eq!(parse_err(&["work", "watch"]).exit_code(), 2);
    }
}
