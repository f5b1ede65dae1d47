//! Helpers shared by the integration tests: probe kinds that record what ran, and short-hands.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use swarm_reactor::{
    Reactor, Registry, RunOptions, RunReport, Step, StepContext, StepError, Workflow,
};
use tokio::time::Instant;

/// Records starts, ends and undos, and the most steps seen running at once.
#[derive(Clone, Default)]
pub struct Probe {
    pub log: Arc<Mutex<Vec<String>>>,
    pub running: Arc<AtomicUsize>,
    pub max_running: Arc<AtomicUsize>,
    pub attempt_times: Arc<Mutex<Vec<Instant>>>,
}

impl Probe {
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The log lines that start with `prefix` (`"run:"`, `"undo:"`), in order.
    pub fn logged(&self, prefix: &str) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| l.starts_with(prefix))
            .collect()
    }

    pub fn max_running(&self) -> usize {
        self.max_running.load(Ordering::SeqCst)
    }

    fn push(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
}

/// `probe`: with `{ delay: "100ms", fail: true }`. Logs `run:<step>` at start and `end:<step>`
/// at the end, returns its arguments plus `{"by": <step>}`; undo logs `undo:<step>`.
pub struct ProbeStep(pub Probe);

#[async_trait]
impl Step for ProbeStep {
    async fn run(&self, ctx: &StepContext, args: &Value) -> Result<Value, StepError> {
        let p = &self.0;
        p.attempt_times.lock().unwrap().push(Instant::now());
        p.push(format!("run:{}", ctx.step));
        let now = p.running.fetch_add(1, Ordering::SeqCst) + 1;
        p.max_running.fetch_max(now, Ordering::SeqCst);
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(&p.running);
        if let Some(d) = ctx.with.get("delay").and_then(Value::as_str) {
            tokio::time::sleep(humantime::parse_duration(d).unwrap()).await;
        }
        if ctx.with.get("fail").and_then(Value::as_bool) == Some(true) {
            p.push(format!("fail:{}", ctx.step));
            return Err(StepError::retryable(format!(
                "{} failed on purpose",
                ctx.step
            )));
        }
        p.push(format!("end:{}", ctx.step));
        let mut out = args.as_object().cloned().unwrap_or_default();
        out.insert("by".into(), json!(ctx.step));
        Ok(Value::Object(out))
    }

    fn can_undo(&self) -> bool {
        true
    }

    async fn undo(
        &self,
        ctx: &StepContext,
        _args: &Value,
        _result: &Value,
    ) -> Result<(), StepError> {
        self.0.push(format!("undo:{}", ctx.step));
        Ok(())
    }
}

pub fn registry(probe: &Probe) -> Registry {
    let mut r = Registry::builtin();
    r.register("probe", ProbeStep(probe.clone())).unwrap();
    r
}

pub fn workflow(yaml: &str, registry: &Registry) -> Arc<Workflow> {
    match Workflow::parse(yaml, registry) {
        Ok(w) => Arc::new(w),
        Err(e) => panic!("{e}"),
    }
}

pub fn inputs(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

pub async fn run(reactor: &Reactor, wf: &Arc<Workflow>, input: Value) -> RunReport {
    reactor
        .run(wf.clone(), inputs(input), RunOptions::default())
        .await
}

pub fn statuses(report: &RunReport) -> Vec<(String, String)> {
    report
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.status.to_string()))
        .collect()
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
