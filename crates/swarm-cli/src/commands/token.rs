//! `swarmctl token create`: a new bearer token and the line that grants it
//! in a node's tokens file (the file holds the token's SHA-256, never the
//! token). Nothing is sent anywhere: add the line to every node's
//! `tokens_file` and send them SIGHUP.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::output::{OutputFormat, print_json};

#[derive(Debug, Subcommand)]
pub enum Token {
    /// Make a token for a role (admin, operator, submitter, agent, reader)
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The token's role: admin, operator, submitter, agent or reader
    #[arg(long)]
    pub role: String,
    /// For an agent token: the agent it acts as, or a prefix ending in *
    #[arg(long)]
    pub agent: Option<String>,
}

const ROLES: [&str; 5] = ["admin", "operator", "submitter", "agent", "reader"];

impl Token {
    pub fn run(self, output: OutputFormat) -> Result<()> {
        let Token::Create(a) = self;
        if !ROLES.contains(&a.role.as_str()) {
            bail!("unknown role {:?} (roles: {})", a.role, ROLES.join(", "));
        }
        match (a.role.as_str(), &a.agent) {
            ("agent", None) => bail!("an agent token needs --agent NAME (or a prefix ending in *)"),
            ("agent", Some(agent))
                if agent.trim().is_empty() || agent.contains(char::is_whitespace) =>
            {
                bail!("--agent {agent:?} must be a name without spaces")
            }
            (role, Some(_)) if role != "agent" => bail!("only agent tokens take --agent"),
            _ => {}
        }
        let bytes: [u8; 32] = rand::random();
        let token = format!(
            "swt_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let mut line = format!("{} {}", swarm_proto::token_hash(&token), a.role);
        if let Some(agent) = &a.agent {
            line.push(' ');
            line.push_str(agent);
        }
        match output {
            OutputFormat::Json => print_json(
                &json!({ "token": token, "line": line, "role": a.role, "agent": a.agent }),
            ),
            OutputFormat::Table => {
                println!("token: {token}");
                println!("tokens file line: {line}");
                eprintln!(
                    "keep the token secret; add the line to every node's tokens_file and send the nodes SIGHUP"
                );
                Ok(())
            }
        }
    }
}
