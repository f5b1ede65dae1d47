//! `exec`: runs a program with the step's arguments as JSON on stdin.
//!
//! stdout is the result (parsed as JSON, otherwise kept as a trimmed string); a non-zero exit is
//! a retryable error carrying the tail of stderr. The child runs in its own process group, and
//! the whole group is killed when the attempt is dropped (timeout or cancel), so scripts that
//! start their own children do not leave them behind.

use std::process::Stdio;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::check_keys;
use crate::error::StepError;
use crate::step::{Step, StepContext};

/// How much of stderr an error message carries.
const STDERR_TAIL_BYTES: usize = 2048;

#[derive(Debug, Clone, Copy)]
pub struct Exec;

struct ExecConfig {
    command: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
}

fn config(with: &Value) -> Result<ExecConfig, Vec<String>> {
    let mut problems = check_keys(with, &["command", "env", "cwd"]);
    let command = match with.get("command") {
        None | Some(Value::Null) => {
            problems.push("\"command\" is required (a list: program and its arguments)".into());
            Vec::new()
        }
        Some(Value::String(s)) if !s.trim().is_empty() => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => {
            let strs: Vec<String> = items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect();
            if strs.len() != items.len() {
                problems.push("\"command\": every element must be a string".into());
            }
            strs
        }
        Some(other) => {
            problems.push(format!(
                "\"command\": expected a non-empty list of strings, got {other}"
            ));
            Vec::new()
        }
    };
    let mut env = Vec::new();
    match with.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v {
                    Value::String(s) => env.push((k.clone(), s.clone())),
                    Value::Number(_) | Value::Bool(_) => env.push((k.clone(), v.to_string())),
                    _ => problems.push(format!("\"env.{k}\": expected a string")),
                }
            }
        }
        Some(_) => problems.push("\"env\": expected a map of NAME: value".into()),
    }
    let cwd = match with.get("cwd") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problems.push("\"cwd\": expected a string".into());
            None
        }
    };
    if problems.is_empty() {
        Ok(ExecConfig { command, env, cwd })
    } else {
        Err(problems)
    }
}

/// Kills the child's whole process group unless the child was waited for.
struct GroupKiller {
    pid: Option<rustix::process::Pid>,
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            // The group may already be gone; nothing to do about an error here.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

#[async_trait]
impl Step for Exec {
    fn check(&self, with: &Value) -> Vec<String> {
        config(with).err().unwrap_or_default()
    }

    async fn run(&self, ctx: &StepContext, arguments: &Value) -> Result<Value, StepError> {
        let cfg = config(&ctx.with).map_err(|p| StepError::fatal(p.join("; ")))?;
        let (program, args) = cfg
            .command
            .split_first()
            .ok_or_else(|| StepError::fatal("\"command\" is empty"))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0)
            .env("SWARM_RUN_ID", &ctx.run_id)
            .env("SWARM_STEP", &ctx.step)
            .env("SWARM_ATTEMPT", ctx.attempt.to_string())
            .env(
                "SWARM_FENCING_TOKEN",
                ctx.fencing_token.map(|t| t.to_string()).unwrap_or_default(),
            )
            .envs(cfg.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &cfg.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| StepError::fatal(format!("could not start {program:?}: {e}")))?;
        let mut killer = GroupKiller {
            pid: child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw),
        };
        let input = serde_json::to_vec(arguments)
            .map_err(|e| StepError::fatal(format!("encode arguments: {e}")))?;
        let stdin = child.stdin.take();
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A program that ignores stdin may exit before reading it; that is fine.
                let _ = stdin.write_all(&input).await;
                let _ = stdin.shutdown().await;
            }
        };
        let ((), output) = tokio::join!(feed, child.wait_with_output());
        let output =
            output.map_err(|e| StepError::retryable(format!("wait for {program:?}: {e}")))?;
        killer.pid = None;
        if !output.status.success() {
            let how = match output.status.code() {
                Some(code) => format!("exit status {code}"),
                None => "killed by a signal".to_owned(),
            };
            let tail = stderr_tail(&output.stderr);
            let msg = if tail.is_empty() {
                format!("{program:?} failed with {how}")
            } else {
                format!("{program:?} failed with {how}: {tail}")
            };
            return Err(StepError::retryable(msg));
        }
        Ok(parse_stdout(&output.stdout))
    }
}

fn stderr_tail(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&stderr[start..]).trim().to_owned()
}

/// JSON if it parses, the trimmed text otherwise, null when empty.
fn parse_stdout(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let t = text.trim();
    if t.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_owned()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn stdout_is_json_or_text() {
        assert_eq!(parse_stdout(b"{\"a\": 1}\n"), json!({"a": 1}));
        assert_eq!(parse_stdout(b"  hello world \n"), json!("hello world"));
        assert_eq!(parse_stdout(b""), Value::Null);
    }

    #[test]
    fn config_problems_are_listed() {
        assert!(Exec.check(&json!({"command": ["/bin/true"]})).is_empty());
        let p = Exec.check(&json!({"command": [], "bogus": 1}));
        assert_eq!(p.len(), 2, "{p:?}");
        let p = Exec.check(&Value::Null);
        assert!(p[0].contains("\"command\" is required"), "{p:?}");
    }

    #[test]
    fn stderr_tail_keeps_the_end() {
        let long = "x".repeat(5000) + "the end";
        assert!(stderr_tail(long.as_bytes()).ends_with("the end"));
        assert_eq!(stderr_tail(long.as_bytes()).len(), STDERR_TAIL_BYTES);
    }
}
