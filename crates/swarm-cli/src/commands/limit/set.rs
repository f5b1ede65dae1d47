//! `swarmctl limit set KEY [--max-running N] [--rate 10/s] [--burst N]`:
//! sets the key's limit, replacing the one it had (a flag left out is no
//! cap, or no rate). At least one of `--max-running` and `--rate`; the
//! cluster reads the rate (`COUNT/PERIOD`: 10/s, 600/m, 5/90s) and says
//! what is wrong with one it cannot.

use anyhow::{Context as _, Result};
use clap::{ArgGroup, Args};
use swarm_client::proto::SetLimitRequest;

use crate::cli::parse_name;
use crate::commands::Context;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("bounds").required(true).multiple(true).args(["max_running", "rate"])))]
pub struct Set {
    /// Concurrency key
    #[arg(value_parser = parse_name)]
    pub key: String,
    /// At most this many items with the key claimed at once (0: no cap)
    #[arg(long, value_name = "N")]
    pub max_running: Option<u32>,
    /// Claims granted at most this fast: COUNT/PERIOD, such as 10/s, 600/m or 5/90s
    #[arg(long, value_name = "COUNT/PERIOD", value_parser = parse_name)]
    pub rate: Option<String>,
    /// With --rate: the most grants at once after a quiet spell (default: the rate's COUNT)
    #[arg(long, value_name = "N", requires = "rate")]
    pub burst: Option<u32>,
}

impl Set {
    fn request(self) -> SetLimitRequest {
        SetLimitRequest {
            key: self.key,
            max_running: self.max_running.unwrap_or(0),
            rate: self.rate.map(|r| r.trim().to_string()).unwrap_or_default(),
            burst: self.burst.unwrap_or(0),
        }
    }
}

pub async fn run(ctx: &Context, args: Set) -> Result<()> {
    let key = args.key.clone();
    let limit = ctx
        .client
        .set_limit(args.request())
        .await
        .with_context(|| format!("set the limit on {key:?}"))?;
    super::print_limit(ctx, &limit)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::Parser as _;
    use clap::error::ErrorKind;

    use super::*;
    use crate::Cli;
    use crate::commands::Command;
    use crate::commands::limit::Limit;

    fn set(flags: &[&str]) -> Result<Set, clap::Error> {
        let cli = Cli::try_parse_from(["swarmctl", "limit", "set", "db"].iter().chain(flags))?;
        match cli.command {
            Command::Limit(Limit::Set(s)) => Ok(s),
            other => panic!("expected limit set, got {other:?}"),
        }
    }

    #[test]
    fn max_running_rate_and_burst() {
        let r = set(&["--max-running", "2", "--rate", " 10/s ", "--burst", "20"])
            .unwrap()
            .request();
        assert_eq!(
            r,
            SetLimitRequest {
                key: "db".into(),
                max_running: 2,
                rate: "10/s".into(),
                burst: 20,
            }
        );
        let r = set(&["--max-running", "3"]).unwrap().request();
        assert_eq!((r.max_running, r.rate.as_str(), r.burst), (3, "", 0));
        let r = set(&["--rate", "600/m"]).unwrap().request();
        assert_eq!((r.max_running, r.rate.as_str()), (0, "600/m"));
    }

    #[test]
    fn a_limit_needs_max_running_or_a_rate() {
        let err = set(&[]).unwrap_err();
        assert_eq!(
            (err.kind(), err.exit_code()),
            (ErrorKind::MissingRequiredArgument, 2)
        );
        let err = set(&["--max-running", "1", "--burst", "5"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = set(&["--max-running", "-1"]).unwrap_err();
        assert!(err.to_string().contains("--max-running"), "{err}");
        let err = set(&["--rate", ""]).unwrap_err();
        assert!(err.to_string().contains("--rate"), "{err}");
    }
}
