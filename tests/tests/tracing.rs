//! Traces across nodes, with real `swarmd` processes exporting their spans
//! over OTLP/gRPC to a receiver inside this test:
//! - a workflow handed from node to node is one trace: every node's run of
//!   it descends from the request that submitted it, and so do its steps;
//! - a submitter's own `traceparent` becomes the trace of the submit and of
//!   the runs;
//! - an external agent's claim and complete join the trace it sends.
//!
//! Nodes get capabilities `exec,nodeN`, so a step that `requires: [node3]`
//! can only run on node 3.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde_json::json;
use swarm_proto::v1::{
    ClaimRequest, CompleteRequest, GetWorkRequest, ReadConsistency, SubmitRequest, WorkItem,
    WorkStatus,
};
use swarm_tests::{Cluster, ClusterOptions, poll_until, within};
use tokio::sync::oneshot;

/// One span as a node exported it, ids in hex.
#[derive(Debug, Clone)]
struct Exported {
    /// The exporting node's `service.instance.id` (`node-<id>`).
    node: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
    name: String,
    attributes: BTreeMap<String, String>,
}

impl Exported {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// An OTLP trace receiver on 127.0.0.1 that keeps every span it is sent.
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<Exported>>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Receiver {
    async fn start() -> Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let spans = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel::<()>();
        let service = TraceServiceServer::new(Collector {
            spans: spans.clone(),
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        Ok(Receiver {
            endpoint,
            spans,
            stop: Some(stop),
        })
    }

    fn spans(&self) -> Vec<Exported> {
        self.spans.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct Collector {
    spans: Arc<Mutex<Vec<Exported>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let node = resource
                .get("service.instance.id")
                .cloned()
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    got.push(Exported {
                        node: node.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        attributes: attributes(&span.attributes),
                    });
                }
            }
        }
        self.spans.lock().unwrap().extend(got);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cluster whose nodes export to `receiver`, in batches sent every
/// 200 ms rather than every 5 s.
async fn traced_cluster(receiver: &Receiver) -> Result<Cluster> {
    traced_cluster_with(receiver, &[("OTEL_BSP_SCHEDULE_DELAY", "200")]).await
}

/// A cluster whose nodes export to `receiver`, with these `OTEL_*`
/// variables.
async fn traced_cluster_with(receiver: &Receiver, env: &[(&str, &str)]) -> Result<Cluster> {
    Cluster::start_with(
        3,
        ClusterOptions {
            extra_args: vec!["--otlp-endpoint".into(), receiver.endpoint.clone()],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ClusterOptions::default()
        },
    )
    .await
}

fn with_traceparent<T>(message: T, traceparent: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
}

async fn submit_workflow(
    cluster: &Cluster,
    node: u64,
    spec: &str,
    traceparent: Option<&str>,
) -> Result<String> {
    let message = SubmitRequest {
        r#type: "workflow".into(),
        payload_json: json!({ "spec": spec, "inputs": {} }).to_string(),
        ..Default::default()
    };
    let request = match traceparent {
        Some(tp) => with_traceparent(message, tp),
        None => tonic::Request::new(message),
    };
    let item = cluster
        .work(node)?
        .submit(request)
        .await
        .context("submit workflow")?
        .into_inner()
        .item
        .ok_or_else(|| anyhow!("submit returned no item"))?;
    Ok(item.id)
}

async fn wait_completed(cluster: &Cluster, id: &str) -> Result<WorkItem> {
    poll_until(
        Duration::from_secs(60),
        &format!("item {id} completed"),
        || async {
            let request = GetWorkRequest {
                id: id.to_string(),
                consistency: ReadConsistency::Linearizable as i32,
            };
            let item = cluster
                .work(1)?
                .get_work(request)
                .await?
                .into_inner()
                .item
                .ok_or_else(|| anyhow!("no item"))?;
            if item.status == WorkStatus::Failed as i32 {
                bail!("item failed: {:?}", item.error);
            }
            Ok((item.status == WorkStatus::Completed as i32).then_some(item))
        },
    )
    .await
}

/// Waits until the receiver holds spans that `ready` accepts, and answers
/// them all.
async fn wait_for_spans(
    receiver: &Receiver,
    what: &str,
    ready: impl Fn(&[Exported]) -> bool,
) -> Result<Vec<Exported>> {
    poll_until(Duration::from_secs(30), what, || async {
        let spans = receiver.spans();
        Ok(ready(&spans).then_some(spans))
    })
    .await
}

fn is_grpc(span: &Exported, method: &str) -> bool {
    span.attr("rpc.service") == Some("swarm.v1.WorkService")
        && span.attr("rpc.method") == Some(method)
}

fn workflow_spans<'a>(spans: &'a [Exported], id: &str) -> Vec<&'a Exported> {
    spans
        .iter()
        .filter(|s| s.name == "workflow" && s.attr("work_id") == Some(id))
        .collect()
}

/// The names of the spans from `span` up to its root, within `spans`.
fn ancestry(spans: &[Exported], span: &Exported) -> Vec<String> {
    let by_id: BTreeMap<&str, &Exported> = spans
        .iter()
        .filter(|s| s.trace_id == span.trace_id)
        .map(|s| (s.span_id.as_str(), s))
        .collect();
    let mut chain = vec![span.name.clone()];
    let mut at = span;
    while let Some(parent) = by_id.get(at.parent_span_id.as_str()) {
        chain.push(parent.name.clone());
        at = parent;
        if chain.len() > 64 {
            break;
        }
    }
    chain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t10_a_workflow_handed_across_nodes_is_one_trace_under_its_submit() {
    let receiver = Receiver::start().await.unwrap();
    let cluster = traced_cluster(&receiver).await.unwrap();
    within(Duration::from_secs(120), "t10", async {
        let spec = "name: traced\nsteps:\n  - { name: first, run: echo, requires: [node1], arguments: { v: value(7) } }\n  - { name: middle, run: echo, requires: [node3], arguments: { v: result(first.v) } }\n  - { name: last, run: echo, arguments: { v: result(middle.v) } }\nreturn: last.v\n";
        let id = submit_workflow(&cluster, 2, spec, None).await?;
        let item = wait_completed(&cluster, &id).await?;
        ensure!(
            item.history.iter().any(|h| h.ended == "handed_off"),
            "the workflow was handed off: {:?}",
            item.history
        );

        // Each run's span ends when its node has recorded how it ended;
        // wait for the runs on node 1 and node 3 and every step.
        // Spans reach the receiver in each node's batches, in no order
        // across nodes: wait until every one the checks below look at is
        // there (the runs on node 1 and node 3, every step, the submit, and
        // a Raft entry under a proposal forwarded to the leader).
        let spans = wait_for_spans(&receiver, "the trace's spans from every node", |spans| {
            let runs = workflow_spans(spans, &id);
            let Some(trace_id) = runs.first().map(|r| r.trace_id.as_str()) else {
                return false;
            };
            let in_trace: Vec<&Exported> =
                spans.iter().filter(|s| s.trace_id == trace_id).collect();
            let nodes: BTreeSet<&str> = runs.iter().map(|s| s.node.as_str()).collect();
            let steps: BTreeSet<&str> = in_trace
                .iter()
                .filter(|s| s.name == "step")
                .filter_map(|s| s.attr("step"))
                .collect();
            let forwarded: BTreeSet<&str> = in_trace
                .iter()
                .filter(|s| s.name == "swarm.v1.RaftService/Propose")
                .map(|s| s.span_id.as_str())
                .collect();
            nodes.contains("node-1")
                && nodes.contains("node-3")
                && ["first", "middle", "last"].iter().all(|s| steps.contains(s))
                && in_trace.iter().any(|s| is_grpc(s, "Submit"))
                && in_trace.iter().any(|s| {
                    s.name == "raft.propose"
                        && s.attr("outcome") == Some("committed")
                        && forwarded.contains(s.parent_span_id.as_str())
                })
        })
        .await?;

        let runs = workflow_spans(&spans, &id);
        let trace_id = &runs[0].trace_id;
        let submit = spans
            .iter()
            .find(|s| is_grpc(s, "Submit") && &s.trace_id == trace_id)
            .ok_or_else(|| anyhow!("no Submit span in the runs' trace {trace_id}"))?;
        assert_eq!(submit.node, "node-2", "the submit was served by node 2");
        assert_eq!(submit.name, "swarm.v1.WorkService/Submit");
        assert_eq!(submit.parent_span_id, "", "a submit without traceparent starts a trace");
        for run in &runs {
            assert_eq!(&run.trace_id, trace_id, "every run of the item is in one trace: {run:?}");
            assert_eq!(
                run.parent_span_id, submit.span_id,
                "every run is a child of the submit: {run:?}"
            );
        }
        let nodes: BTreeSet<&str> = runs.iter().map(|s| s.node.as_str()).collect();
        assert!(nodes.len() >= 2, "runs on several nodes: {nodes:?}");

        let steps: Vec<&Exported> = spans
            .iter()
            .filter(|s| s.name == "step" && &s.trace_id == trace_id)
            .collect();
        for step in &steps {
            assert_eq!(
                ancestry(&spans, step),
                ["step", "run", "workflow", "swarm.v1.WorkService/Submit"],
                "a step descends from its run, the node's workflow span and the submit: {step:?}"
            );
        }
        let ran_on = |name: &str| -> BTreeSet<&str> {
            steps
                .iter()
                .filter(|s| s.attr("step") == Some(name))
                .map(|s| s.node.as_str())
                .collect()
        };
        assert!(ran_on("first").contains("node-1"), "first on node 1: {:?}", ran_on("first"));
        assert!(ran_on("middle").contains("node-3"), "middle on node 3: {:?}", ran_on("middle"));

        // Steps ran on node 1 and node 3, so at least one of them follows:
        // its journal writes are forwarded to the leader with the trace
        // context, and the leader's Raft entry joins the trace under that
        // forwarded request.
        let forwarded: Vec<&Exported> = spans
            .iter()
            .filter(|s| s.name == "swarm.v1.RaftService/Propose" && &s.trace_id == trace_id)
            .collect();
        assert!(!forwarded.is_empty(), "a forwarded proposal is in the trace");
        assert!(
            spans.iter().any(|s| s.name == "raft.propose"
                && s.attr("outcome") == Some("committed")
                && forwarded.iter().any(|f| f.span_id == s.parent_span_id)),
            "a committed Raft entry descends from a forwarded proposal"
        );

        // Log lines logged inside the run carry its trace id.
        let log = cluster.log(3)?;
        let line = log
            .lines()
            .find(|l| l.contains("running workflow") && l.contains(&id))
            .ok_or_else(|| anyhow!("node 3 logged no run of {id}"))?;
        assert!(
            line.contains(&format!("trace_id={trace_id}")),
            "the log line names the trace: {line}"
        );
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t20_a_submitters_traceparent_and_an_agents_are_joined() {
    let receiver = Receiver::start().await.unwrap();
    let cluster = traced_cluster(&receiver).await.unwrap();
    within(Duration::from_secs(120), "t20", async {
        // A workflow submitted inside the caller's trace.
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let caller = "00f067aa0ba902b7";
        let spec =
            "name: joined\nsteps:\n  - { name: only, run: echo, arguments: { v: value(1) } }\n";
        let id =
            submit_workflow(&cluster, 1, spec, Some(&format!("00-{trace}-{caller}-01"))).await?;
        wait_completed(&cluster, &id).await?;

        // A plain task claimed and completed by an external agent, each
        // call in its own trace.
        let agent_trace = "0af7651916cd43dd8448eb211c80319c";
        let (claim_parent, complete_parent) = ("b7ad6b7169203331", "c7ad6b7169203332");
        let mut work = cluster.work(2)?;
        work.submit(SubmitRequest {
            r#type: "traced-task".into(),
            payload_json: "{}".into(),
            ..Default::default()
        })
        .await?;
        let claimed = work
            .claim(with_traceparent(
                ClaimRequest {
                    agent: "external".into(),
                    types: vec!["traced-task".into()],
                    max: 1,
                    ..Default::default()
                },
                &format!("00-{agent_trace}-{claim_parent}-01"),
            ))
            .await?
            .into_inner()
            .items;
        let task = claimed.first().ok_or_else(|| anyhow!("nothing claimed"))?;
        let token = task.token;
        work.complete(with_traceparent(
            CompleteRequest {
                id: task.id.clone(),
                token,
                result_json: "{}".into(),
            },
            &format!("00-{agent_trace}-{complete_parent}-01"),
        ))
        .await?;

        let spans = wait_for_spans(&receiver, "the joined spans", |spans| {
            !workflow_spans(spans, &id).is_empty() && spans.iter().any(|s| is_grpc(s, "Complete"))
        })
        .await?;
        let submit = spans
            .iter()
            .find(|s| is_grpc(s, "Submit") && s.trace_id == trace)
            .ok_or_else(|| anyhow!("no Submit span in the caller's trace"))?;
        assert_eq!(
            submit.parent_span_id, caller,
            "the submit is a child of the caller"
        );
        for run in workflow_spans(&spans, &id) {
            assert_eq!(run.trace_id, trace, "the run is in the caller's trace");
            assert_eq!(
                run.parent_span_id, submit.span_id,
                "the run is a child of the submit"
            );
        }
        for (method, parent) in [("Claim", claim_parent), ("Complete", complete_parent)] {
            let span = spans
                .iter()
                .find(|s| is_grpc(s, method))
                .ok_or_else(|| anyhow!("no {method} span"))?;
            assert_eq!(
                span.trace_id, agent_trace,
                "{method} joins the agent's trace"
            );
            assert_eq!(
                span.parent_span_id, parent,
                "{method} is a child of the agent's span"
            );
        }
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t30_a_stopping_node_flushes_the_spans_it_still_holds() {
    let receiver = Receiver::start().await.unwrap();
    // Batches would go out only after an hour or 65,536 spans: what
    // arrives was flushed at exit.
    let cluster = traced_cluster_with(
        &receiver,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "3600000"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "65536"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "65536"),
        ],
    )
    .await
    .unwrap();
    within(Duration::from_secs(120), "t30", async {
        let spec =
            "name: flushed\nsteps:\n  - { name: only, run: echo, arguments: { v: value(1) } }\n";
        let id = submit_workflow(&cluster, 1, spec, None).await?;
        wait_completed(&cluster, &id).await?;
        ensure!(
            workflow_spans(&receiver.spans(), &id).is_empty(),
            "nothing is sent before the batch is due"
        );
        for node in cluster.node_ids() {
            let status = cluster.stop(node).await?;
            ensure!(status.success(), "node {node} exited with {status}");
        }
        let spans = receiver.spans();
        let runs = workflow_spans(&spans, &id);
        ensure!(!runs.is_empty(), "the run's span was flushed at exit");
        ensure!(
            spans
                .iter()
                .any(|s| is_grpc(s, "Submit") && s.span_id == runs[0].parent_span_id),
            "so was the submit it descends from"
        );
        Ok(())
    })
    .await
    .unwrap();
}
