//! The reactor's own cost and its parallel speedup.
//!
//! - `reactor_overhead/chain_1000`: 1,000 `echo` steps, each taking the
//!   previous one's result, so nothing overlaps: per step, the price of
//!   scheduling, argument resolution, the journal and events.
//! - `reactor_overhead/fanout_1000`: one `echo` step feeding 999 independent
//!   `echo` steps, all ready at once.
//! - `reactor_speedup/{parallel,serial}_3x100ms`: three 100 ms `sleep` steps
//!   with no dependencies, against the same three ordered by `wait_for`. The
//!   ratio of the two is the parallel speedup (ideal: 3).
//!
//! With `Throughput::Elements(1000)`, criterion's "thrpt" is steps per second;
//! its "time" divided by 1,000 is the overhead per step.
//!
//! Run: `cargo bench -p swarm-bench --bench reactor`

use std::sync::Arc;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value, json};
use swarm_reactor::{Reactor, Registry, RunOptions, RunReport, Workflow};
use tokio::runtime::Runtime;

const STEPS: usize = 1_000;

/// `s0 <- s1 <- ... <- s{n-1}`: each step echoes `{n}` from the one before.
fn chain_spec(n: usize) -> Value {
    let steps: Vec<Value> = (0..n)
        .map(|i| {
            let n = if i == 0 {
                "value(0)".to_owned()
            } else {
                format!("result(s{}.n)", i - 1)
            };
            json!({"name": format!("s{i}"), "run": "echo", "arguments": {"n": n}})
        })
        .collect();
    json!({"name": "chain", "steps": steps, "return": format!("s{}", n - 1)})
}

/// `root` feeding `n - 1` independent leaves: `n` steps in all.
fn fanout_spec(n: usize) -> Value {
    let mut steps = vec![json!({"name": "root", "run": "echo", "arguments": {"n": "value(0)"}})];
    steps.extend((1..n).map(|i| {
        json!({"name": format!("leaf{i}"), "run": "echo", "arguments": {"n": "result(root.n)"}})
    }));
    json!({"name": "fanout", "steps": steps, "return": "root"})
}

/// Three 100 ms sleeps, independent or one after another.
fn sleeps_spec(serial: bool) -> Value {
    let steps: Vec<Value> = (0..3)
        .map(|i| {
            let mut step =
                json!({"name": format!("nap{i}"), "run": "sleep", "with": {"duration": "100ms"}});
            if serial && i > 0 {
                step["wait_for"] = json!([format!("nap{}", i - 1)]);
            }
            step
        })
        .collect();
    json!({"name": if serial { "serial" } else { "parallel" }, "steps": steps})
}

/// The spec as the JSON text a user would write, parsed and validated.
fn workflow(spec: &Value) -> Arc<Workflow> {
    match Workflow::parse(&spec.to_string(), &Registry::builtin()) {
        Ok(w) => Arc::new(w),
        Err(problems) => panic!("bench spec {:?} is invalid: {problems}", spec["name"]),
    }
}

/// One run on a fresh reactor, so the in-memory journal does not grow across
/// iterations. The reactor is returned so that dropping it is not timed.
fn run_once(rt: &Runtime, workflow: &Arc<Workflow>) -> (Reactor, RunReport) {
    let reactor = Reactor::new();
    let report = rt.block_on(reactor.run(Arc::clone(workflow), Map::new(), RunOptions::default()));
    (reactor, report)
}

/// A bench that measured a failed run would measure the wrong thing.
fn check_succeeds(rt: &Runtime, workflow: &Arc<Workflow>) {
    let (_, report) = run_once(rt, workflow);
    if !report.succeeded() {
        panic!(
            "bench workflow {:?} failed: {:?}",
            workflow.name(),
            report.error
        );
    }
}

fn runtime() -> Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("build the tokio runtime: {e}"),
    }
}

fn bench_overhead(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("reactor_overhead");
    group.throughput(Throughput::Elements(STEPS as u64));
    for (id, spec) in [
        ("chain_1000", chain_spec(STEPS)),
        ("fanout_1000", fanout_spec(STEPS)),
    ] {
        let wf = workflow(&spec);
        check_succeeds(&rt, &wf);
        group.bench_function(id, |b| {
            b.iter_batched(|| (), |()| run_once(&rt, &wf), BatchSize::SmallInput)
        });
    }
    group.finish();
}

fn bench_speedup(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("reactor_speedup");
    group.sample_size(10);
    // Each iteration takes 100-300 ms: one per sample, not criterion's ramp.
    group.sampling_mode(SamplingMode::Flat);
    for (id, serial) in [("parallel_3x100ms", false), ("serial_3x100ms", true)] {
        let wf = workflow(&sleeps_spec(serial));
        check_succeeds(&rt, &wf);
        group.bench_function(id, |b| {
            b.iter_batched(|| (), |()| run_once(&rt, &wf), BatchSize::SmallInput)
        });
    }
    group.finish();
}

criterion_group!(benches, bench_overhead, bench_speedup);
criterion_main!(benches);
