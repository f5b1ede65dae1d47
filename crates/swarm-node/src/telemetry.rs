//! Tracing for `swarmd`: log lines, spans, and their optional export over
//! OTLP.
//!
//! - [`Telemetry::init`] installs the process's subscriber: the `SWARM_LOG`
//!   filter, log lines in the configured `log_format`, and, when
//!   `otlp_endpoint` is set, a tracing-opentelemetry layer whose spans a
//!   batch exporter sends over OTLP/gRPC (resource `service.name = swarmd`,
//!   `service.instance.id = node-<id>`, `swarm.node.id`). Then every log
//!   line logged inside a span carries that span's `trace_id`.
//!   [`Telemetry::shutdown`] exports what is still queued.
//! - [`grpc_request_span`]: the span of each gRPC request the node serves,
//!   a child of the caller's span when the request carries a W3C
//!   `traceparent` (and `tracestate`) in its metadata.
//! - [`current_trace`] and [`set_parent`]: the current span's context as a
//!   [`TraceContext`] that travels in a workflow payload, and a span made a
//!   child of one, on whichever node runs the workflow; [`traced_request`]
//!   carries it to a peer in request metadata.
//!
//! Without an endpoint there is no OpenTelemetry layer: spans are plain
//! `tracing` spans for the log lines, nothing is extracted or injected, and
//! lines carry no trace id.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use swarm_reactor::work_item::TraceContext;
use tonic::codegen::http;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{Config, LogFormat};

/// The log filter unless `SWARM_LOG` sets one.
const DEFAULT_FILTER: &str = "info,openraft=warn,sled=warn,h2=warn,tower=warn,hyper=warn";

/// The peer service: heartbeats, appends and forwarded writes arrive many
/// times a second and carry no caller's trace.
const RAFT_SERVICE: &str = "swarm.v1.RaftService";

/// Whether spans are exported: set once by [`Telemetry::init`]. Without
/// it, nothing here touches OpenTelemetry.
static EXPORTING: AtomicBool = AtomicBool::new(false);

fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The installed subscriber's exporter, to flush at exit.
#[must_use = "call shutdown() at exit, or queued spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.provider.is_some())
            .finish()
    }
}

impl Telemetry {
    /// Installs the global subscriber for `config`. Call it inside a tokio
    /// runtime (`Runtime::enter`): the OTLP exporter's channel lives there.
    /// The batch exporter honours the `OTEL_BSP_*` variables (such as
    /// `OTEL_BSP_SCHEDULE_DELAY`, in milliseconds).
    pub fn init(config: &Config) -> anyhow::Result<Telemetry> {
        let filter =
            EnvFilter::try_from_env("SWARM_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
        let provider = if config.otlp_endpoint.is_empty() {
            None
        } else {
            Some(tracer_provider(config)?)
        };
        let exporting = provider.is_some();
        let otel = provider.as_ref().map(|p| {
            // Only what a trace needs, per span: no code location or
            // thread attributes, no busy/idle timing, and parents taken
            // from tracing's own span tree rather than an OpenTelemetry
            // context attached on every enter (a claim costs less).
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer("swarmd"))
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_context_activation(false)
        });
        let (text, json) = match config.log_format {
            LogFormat::Text => {
                use std::io::IsTerminal;
                let color =
                    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
                let format = TraceIdFormat {
                    inner: fmt::format().with_ansi(color),
                    exporting,
                    json: false,
                };
                let layer = fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(color)
                    .event_format(format);
                (Some(layer), None)
            }
            LogFormat::Json => {
                let layer = fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .map_event_format(|inner| TraceIdFormat {
                        inner,
                        exporting,
                        json: true,
                    });
                (None, Some(layer))
            }
        };
        tracing_subscriber::registry()
            .with(filter)
            .with(otel)
            .with(text)
            .with(json)
            .try_init()
            .context("install the tracing subscriber")?;
        EXPORTING.store(exporting, Ordering::Relaxed);
        if exporting {
            tracing::info!(endpoint = %config.otlp_endpoint, "exporting traces over OTLP");
        }
        Ok(Telemetry { provider })
    }

    /// Exports the spans still queued (waiting 5 s at most for a collector
    /// that does not answer) and stops the exporter. Call it while the
    /// runtime [`Telemetry::init`] ran in is still alive, outside it.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "spans not exported at exit");
        }
    }
}

fn tracer_provider(config: &Config) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.otlp_endpoint.clone())
        .build()
        .with_context(|| format!("set up the OTLP exporter to {}", config.otlp_endpoint))?;
    let resource = Resource::builder()
        .with_service_name("swarmd")
        .with_attributes([
            KeyValue::new("service.instance.id", format!("node-{}", config.id)),
            KeyValue::new(
                "swarm.node.id",
                i64::try_from(config.id).unwrap_or(i64::MAX),
            ),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The span of one gRPC request (tonic's `trace_fn`): `rpc.service` and
/// `rpc.method`, named `<service>/<method>` in a tracing backend, and a
/// child of the caller's `traceparent` if it sent one. Health probes, Raft
/// traffic that carries no trace, and every request while spans are not
/// exported get a span only at debug level (`SWARM_LOG=debug`): otherwise
/// a request pays nothing for it.
pub(crate) fn grpc_request_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path().trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    // Raft traffic is traced only when the caller traces it (a proposal
    // forwarded from inside a trace).
    let quiet = !exporting()
        || (service == RAFT_SERVICE && !request.headers().contains_key(TRACEPARENT))
        || service.starts_with("grpc.");
    let span = if quiet {
        tracing::debug_span!(
            "grpc",
            rpc.service = %service,
            rpc.method = %method,
            otel.name = Empty,
            otel.kind = Empty
        )
    } else {
        tracing::info_span!(
            "grpc",
            rpc.service = %service,
            rpc.method = %method,
            otel.name = Empty,
            otel.kind = Empty
        )
    };
    if exporting() && !span.is_disabled() {
        span.record("otel.name", path);
        span.record("otel.kind", "server");
        if request.headers().contains_key(TRACEPARENT) {
            let parent = TraceContextPropagator::new().extract(&Headers(request.headers()));
            adopt(&span, parent);
        }
    }
    span
}

/// The current span's trace context, to store with work that runs later
/// or elsewhere; `None` when spans are not exported.
pub(crate) fn current_trace() -> Option<TraceContext> {
    if !exporting() {
        return None;
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut trace = Injected(TraceContext::default());
    TraceContextPropagator::new().inject_context(&cx, &mut trace);
    (!trace.0.traceparent.is_empty()).then_some(trace.0)
}

/// A request to a peer that carries the current span's trace context, so
/// that the peer's span of it joins the trace.
pub(crate) fn traced_request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    add_trace_context(request.metadata_mut());
    request
}

/// What the Raft proposer needs to trace proposals, when spans are
/// exported (see `swarm_raft::ClusterConfig::trace_proposals`).
pub(crate) fn proposal_tracing() -> Option<fn(&mut tonic::metadata::MetadataMap)> {
    exporting().then_some(add_trace_context as fn(&mut tonic::metadata::MetadataMap))
}

/// Adds the current span's trace context to outgoing request metadata.
fn add_trace_context(metadata: &mut tonic::metadata::MetadataMap) {
    let Some(trace) = current_trace() else {
        return;
    };
    if let Ok(value) = trace.traceparent.parse() {
        metadata.insert(TRACEPARENT, value);
    }
    if !trace.tracestate.is_empty()
        && let Ok(value) = trace.tracestate.parse()
    {
        metadata.insert(TRACESTATE, value);
    }
}

/// Makes `span` a child of `trace` (a context [`current_trace`] stored).
/// Call it before anything is logged in the span: a span's parent is fixed
/// once it starts. An invalid or missing context leaves it as it is.
pub(crate) fn set_parent(span: &tracing::Span, trace: Option<&TraceContext>) {
    let Some(trace) = trace else {
        return;
    };
    if !exporting() || span.is_disabled() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Stored(trace));
    adopt(span, parent);
}

fn adopt(span: &tracing::Span, parent: opentelemetry::Context) {
    if !parent.span().span_context().is_valid() {
        return;
    }
    if let Err(e) = span.set_parent(parent) {
        tracing::debug!(error = %e, "span keeps its own parent");
    }
}

/// Request metadata as the propagator reads it.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// A stored [`TraceContext`] as the propagator reads it.
struct Stored<'a>(&'a TraceContext);

impl Extractor for Stored<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(self.0.traceparent.as_str()),
            TRACESTATE => Some(self.0.tracestate.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

/// A [`TraceContext`] as the propagator writes it.
struct Injected(TraceContext);

impl Injector for Injected {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.0.traceparent = value,
            TRACESTATE => self.0.tracestate = value,
            _ => {}
        }
    }
}

/// A log line with ` trace_id=<id>` (text) or `"trace_id":"<id>"` (JSON)
/// added when it was logged inside an exported span. The inner formatter
/// writes the line as always; only then is the id known to be there, so
/// the line is formatted into a buffer first.
struct TraceIdFormat<F> {
    inner: F,
    exporting: bool,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for TraceIdFormat<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let trace_id = if self.exporting {
            ctx.parent_span().and_then(|span| trace_id_of(&span.id()))
        } else {
            None
        };
        let Some(trace_id) = trace_id else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&with_trace_id(&line, &trace_id, self.json))
    }
}

/// A formatted log line (text, or one JSON object) with the trace id added
/// at its end.
fn with_trace_id(line: &str, trace_id: &str, json: bool) -> String {
    let line = line.trim_end_matches('\n');
    match line.strip_suffix('}').filter(|_| json) {
        Some(object) => format!("{object},\"trace_id\":\"{trace_id}\"}}\n"),
        None => format!("{line} trace_id={trace_id}\n"),
    }
}

thread_local! {
    /// Set while a span's OpenTelemetry context is looked up for a log
    /// line: a line logged from inside that lookup must not look again.
    static LOOKING_UP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The trace id of a span the OpenTelemetry layer knows, if valid.
fn trace_id_of(id: &tracing::span::Id) -> Option<String> {
    if LOOKING_UP.with(|l| l.replace(true)) {
        return None;
    }
    let cx = tracing::dispatcher::get_default(|d| tracing_opentelemetry::get_otel_context(id, d));
    LOOKING_UP.with(|l| l.set(false));
    let cx = cx?;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn a_text_line_ends_with_its_trace_id() {
        let line = "2026-01-01T00:00:00Z  INFO workflow{node=1}: swarm_node::agent: running\n";
        assert_eq!(
            with_trace_id(line, ID, false),
            format!("{} trace_id={ID}\n", line.trim_end())
        );
    }

    #[test]
    fn a_json_line_gets_a_trace_id_field_and_stays_json() {
        let line = r#"{"timestamp":"t","level":"INFO","fields":{"message":"running"}}"#;
        let out = with_trace_id(&format!("{line}\n"), ID, true);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["trace_id"], ID);
        assert_eq!(value["fields"]["message"], "running");
        assert!(out.ends_with("}\n"));
    }

    #[test]
    fn a_stored_trace_context_round_trips_through_the_propagator() {
        let stored = TraceContext {
            traceparent: format!("00-{ID}-00f067aa0ba902b7-01"),
            tracestate: "vendor=x".into(),
        };
        let cx = TraceContextPropagator::new().extract(&Stored(&stored));
        assert_eq!(cx.span().span_context().trace_id().to_string(), ID);
        let mut back = Injected(TraceContext::default());
        TraceContextPropagator::new().inject_context(&cx, &mut back);
        assert_eq!(back.0, stored);
    }

    #[test]
    fn without_export_nothing_is_traced() {
        assert_eq!(current_trace(), None);
        assert!(proposal_tracing().is_none());
        let request = http::Request::builder()
            .uri("/swarm.v1.WorkService/Submit")
            .header(TRACEPARENT, format!("00-{ID}-00f067aa0ba902b7-01"))
            .body(())
            .unwrap();
        assert!(grpc_request_span(&request).is_disabled());
    }
}
