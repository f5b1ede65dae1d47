//! The node's HTTP listener (`http_listen`), beside the gRPC port: metrics,
//! health, the dashboard and the JSON it reads. Read-only; every answer is
//! built from this node's replica and Raft status, and `/api/cluster` asks
//! each member for its own status, so any node shows the whole cluster.
//!
//! Routes:
//! - `/metrics`: Prometheus text format ([`crate::metrics`]).
//! - `/healthz`: 200 while the process serves.
//! - `/readyz`: 200 when this node is a member of a cluster with a known
//!   leader and its replica has applied what it knows to be committed
//!   (within [`READY_LAG`] entries); 503 naming what is missing otherwise.
//! - `/`, `/assets/<file>`: the dashboard, compiled into the binary from
//!   `crates/swarm-node/assets/`.
//! - `/api/cluster`, `/api/stats`, `/api/work`, `/api/work/{id}`,
//!   `/api/work/{id}/watch` (server-sent events), `/api/claims`.
//!
//! Bad input answers 400 with `{"error": "..."}` naming the parameter; an
//! unknown route 404. A handler never panics on input: the listener cannot
//! take the node down.
//!
//! Under TLS the listener speaks HTTPS with the node's certificate. With a
//! tokens file, `/metrics` and `/api/*` need a token, as
//! `authorization: Bearer TOKEN` or `?access_token=TOKEN` (what an
//! `EventSource` can send), whose role may make the same read over gRPC
//! (`/api/work` is `ListWork`, `/metrics` and `/api/stats` are `WorkStats`,
//! ...): none is 401, a role without the right 403. Health and the
//! dashboard's own files stay open; the page asks for a token when the API
//! wants one.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use serde_json::{Value, json};
use swarm_claims::{State as WorkState, Status as WorkStatus, WorkItem};
use swarm_proto::v1 as pb;
use swarm_proto::v1::admin_service_client::AdminServiceClient;
use swarm_raft::{Role, now_millis};
use swarm_reactor::{StepBoard, WorkflowPayload};

use crate::listing::{ListQuery, SCAN_BUDGET, decode_page_token, encode_page_token};
use crate::metrics::NodeMetrics;
use crate::node::NodeContext;

/// How many entries a replica may trail what it knows is committed and
/// still call itself ready.
pub const READY_LAG: u64 = 100;

/// Most items one `/api/work` or `/api/claims` page holds.
const MAX_PAGE: usize = 1_000;
const DEFAULT_PAGE: usize = 50;

/// How long `/api/cluster` waits for a member's own status.
const MEMBER_TIMEOUT: Duration = Duration::from_millis(800);

#[derive(Clone)]
struct App {
    ctx: NodeContext,
    metrics: Arc<NodeMetrics>,
}

/// The gRPC call a route reads as, for the roles (see the module docs);
/// `None`: open to anyone.
fn route_as_grpc(path: &str) -> Option<(&'static str, &'static str)> {
    let rest = path.strip_prefix("/api/");
    match (path, rest) {
        ("/metrics", _) => Some(("WorkService", "WorkStats")),
        (_, Some("cluster")) => Some(("AdminService", "ClusterStatus")),
        (_, Some("stats")) => Some(("WorkService", "WorkStats")),
        (_, Some("work" | "claims")) => Some(("WorkService", "ListWork")),
        (_, Some(_)) => Some(("WorkService", "GetWork")),
        _ => None,
    }
}

/// Refuses a call of a guarded route without a token whose role may make
/// the same read (see the module docs).
async fn require_token(
    State(tokens): State<crate::auth::TokenStore>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some((service, method)) = route_as_grpc(request.uri().path()) else {
        return next.run(request).await;
    };
    let token = crate::auth::bearer(request.headers())
        .map(str::to_string)
        .or_else(|| {
            Query::<HashMap<String, String>>::try_from_uri(request.uri())
                .ok()
                .and_then(|Query(mut q)| q.remove("access_token"))
        });
    let Some(token) = token else {
        return error(
            StatusCode::UNAUTHORIZED,
            "this node needs a token: authorization: Bearer TOKEN, or ?access_token=TOKEN (the dashboard: open /?token=TOKEN)",
        );
    };
    match tokens.role_of(token.trim()) {
        None => error(StatusCode::UNAUTHORIZED, "unknown token"),
        Some(role) if role.allows(service, method) => next.run(request).await,
        Some(role) => error(
            StatusCode::FORBIDDEN,
            format!(
                "{} reads as {service}.{method}, which role {} may not make",
                request.uri().path(),
                role.as_str()
            ),
        ),
    }
}

/// The router of the HTTP listener; with `tokens`, the guarded routes need
/// one (see the module docs).
pub fn router(
    ctx: NodeContext,
    metrics: Arc<NodeMetrics>,
    tokens: Option<crate::auth::TokenStore>,
) -> Router {
    let router = Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/cluster", get(api_cluster))
        .route("/api/stats", get(api_stats))
        .route("/api/work", get(api_work))
        .route("/api/work/{id}", get(api_item))
        .route("/api/work/{id}/watch", get(api_watch))
        .route("/api/claims", get(api_claims))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .with_state(App { ctx, metrics });
    match tokens {
        Some(tokens) => router.layer(axum::middleware::from_fn_with_state(tokens, require_token)),
        None => router,
    }
}

/// Serves `router` on `listener` until `stop` resolves: HTTPS when `tls`
/// is given.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(acceptor) => {
            axum::serve(TlsListener::start(listener, acceptor)?, router)
                .with_graceful_shutdown(stop)
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
        }
    }
}

/// How long a client has to finish its TLS handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// HTTPS connections: every accepted TCP connection goes through a TLS
/// handshake on a task of its own, so a slow or silent client holds up no
/// other; one whose handshake fails is logged at debug and dropped.
struct TlsListener {
    local: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        std::net::SocketAddr,
    )>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn start(
        listener: tokio::net::TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(error = %e, "https accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "https handshake failed"),
                        Err(_) => tracing::debug!(%peer, "https handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            local,
            ready,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task is gone (only when this listener is
            // dropped): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

// ---------------------------------------------------------------------------
// Dashboard assets

#[derive(rust_embed::RustEmbed)]
#[folder = "assets/"]
struct Assets;

fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn embedded(file: &str) -> Response {
    match Assets::get(file) {
        Some(f) => (
            [
                (header::CONTENT_TYPE, content_type(file)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            f.data.into_owned(),
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no asset {file:?}")),
    }
}

async fn index() -> Response {
    embedded("index.html")
}

async fn asset(Path(file): Path<String>) -> Response {
    embedded(&file)
}

// ---------------------------------------------------------------------------
// Metrics and health

async fn render_metrics(State(app): State<App>) -> Response {
    match app.metrics.render(&app.ctx) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encode metrics: {e}"),
        ),
    }
}

/// Why this node is not ready, if it is not.
fn not_ready(ctx: &NodeContext) -> Option<String> {
    let s = ctx.cluster.status();
    if s.member(s.id).is_none() {
        return Some(format!("node {} is not a member of a cluster", s.id));
    }
    if s.leader().is_none() {
        return Some("no known leader".into());
    }
    let behind = s.commit_index.saturating_sub(s.last_applied);
    if behind > READY_LAG {
        return Some(format!(
            "applied index {} is {behind} entries behind the commit index {} (ready within {READY_LAG})",
            s.last_applied, s.commit_index
        ));
    }
    None
}

async fn readyz(State(app): State<App>) -> Response {
    match not_ready(&app.ctx) {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------------------
// Cluster

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Learner => "learner",
        Role::Candidate => "candidate",
        Role::Shutdown => "shutdown",
    }
}

/// A member's own status, asked over gRPC (this node answers locally).
async fn member_status(
    ctx: &NodeContext,
    id: u64,
    addr: &str,
) -> Option<pb::ClusterStatusResponse> {
    if id == ctx.config.id {
        let s = ctx.cluster.status();
        return Some(pb::ClusterStatusResponse {
            leader_id: s.leader().unwrap_or(0),
            term: s.term,
            commit_index: s.commit_index,
            last_applied: s.last_applied,
            node_id: s.id,
            ..Default::default()
        });
    }
    let channel = ctx.peers.get(addr).ok()?;
    let mut client = AdminServiceClient::new(channel);
    let call = client.cluster_status(pb::ClusterStatusRequest::default());
    match tokio::time::timeout(MEMBER_TIMEOUT, call).await {
        Ok(Ok(r)) => Some(r.into_inner()),
        _ => None,
    }
}

async fn api_cluster(State(app): State<App>) -> Response {
    let ctx = &app.ctx;
    let status = ctx.cluster.status();
    let answers = futures::future::join_all(
        status
            .members
            .iter()
            .map(|m| member_status(ctx, m.id, &m.addr)),
    )
    .await;
    let leader = status.leader();
    // A follower knows no member's lag: the leader's own answer does.
    let leader_lag: HashMap<u64, Option<u64>> = status
        .members
        .iter()
        .zip(&answers)
        .find(|(m, _)| Some(m.id) == leader && m.id != status.id)
        .and_then(|(_, own)| own.as_ref())
        .map(|o| o.members.iter().map(|m| (m.id, m.lag)).collect())
        .unwrap_or_default();
    let members: Vec<Value> = status
        .members
        .iter()
        .zip(answers)
        .map(|(m, own)| {
            let role = match &own {
                None => "unknown",
                Some(o) if o.node_id == m.id && o.leader_id == m.id => "leader",
                Some(_) if m.id == status.id => role_name(status.role),
                Some(_) if !m.voter => "learner",
                Some(_) => "follower",
            };
            let lag = if status.is_leader() {
                m.matched
                    .map(|matched| status.last_log_index.saturating_sub(matched))
            } else if Some(m.id) == leader {
                // The leader is its own log's end.
                own.as_ref().map(|_| 0)
            } else {
                leader_lag.get(&m.id).copied().flatten()
            };
            json!({
                "id": m.id,
                "addr": m.addr,
                "peer_addr": m.peer_addr,
                "voter": m.voter,
                "role": role,
                "reachable": own.is_some(),
                "term": own.as_ref().map(|o| o.term),
                "commit_index": own.as_ref().map(|o| o.commit_index),
                "applied_index": own.as_ref().map(|o| o.last_applied),
                "matched_index": m.matched.filter(|_| status.is_leader()),
                "lag": lag,
                "last_heartbeat_ms": m.last_heartbeat.map(|d| d.as_millis() as u64),
            })
        })
        .collect();
    let (items, live_claims, removed) = ctx.state.read(|s| (s.len(), s.live_claims(), s.removed()));
    Json(json!({
        "node_id": status.id,
        "leader_id": leader,
        "term": status.term,
        "commit_index": status.commit_index,
        "applied_index": status.last_applied,
        "items": items,
        "live_claims": live_claims,
        "items_removed": removed,
        "members": members,
    }))
    .into_response()
}

// ---------------------------------------------------------------------------
// Work

fn status_counts(c: &pb::StatusCounts) -> Value {
    json!({
        "pending": c.pending,
        "claimed": c.claimed,
        "completed": c.completed,
        "failed": c.failed,
        "cancelled": c.cancelled,
    })
}

/// `WorkStats` as JSON: the same answer the gRPC call gives.
async fn api_stats(State(app): State<App>) -> Response {
    let now = now_millis();
    let stats = app.ctx.state.read(|s| crate::convert::stats_to_pb(s, now));
    let by_type: serde_json::Map<String, Value> = stats
        .by_type
        .iter()
        .map(|(k, c)| (k.clone(), status_counts(c)))
        .collect();
    Json(json!({
        "total": stats.total,
        "by_status": stats.by_status.as_ref().map(status_counts),
        "by_type": by_type,
        "oldest_pending_age_ms": stats.oldest_pending_age_ms,
        "oldest_pending_age_ms_by_type": stats.oldest_pending_age_ms_by_type,
    }))
    .into_response()
}

fn parse_status(s: &str) -> Result<Option<WorkStatus>, String> {
    Ok(Some(match s {
        "" => return Ok(None),
        "pending" => WorkStatus::Pending,
        "claimed" => WorkStatus::Claimed,
        "completed" => WorkStatus::Completed,
        "failed" => WorkStatus::Failed,
        "cancelled" => WorkStatus::Cancelled,
        other => {
            return Err(format!(
                "status {other:?} is not one of pending, claimed, completed, failed, cancelled"
            ));
        }
    }))
}

const KNOWN_PARAMS: [&str; 5] = ["status", "type", "holder", "limit", "page_token"];

fn page_query(q: &HashMap<String, String>) -> Result<ListQuery, String> {
    if let Some(unknown) = q.keys().find(|k| !KNOWN_PARAMS.contains(&k.as_str())) {
        return Err(format!(
            "unknown parameter {unknown:?} (the parameters are {})",
            KNOWN_PARAMS.join(", ")
        ));
    }
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let limit = match get("limit") {
        "" => DEFAULT_PAGE,
        text => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(format!(
                    "limit {text:?} is not a number from 1 to {MAX_PAGE}"
                ));
            }
        },
    };
    let after = decode_page_token(get("page_token")).map_err(|_| {
        format!(
            "page_token {:?} is not a token a page gave",
            get("page_token")
        )
    })?;
    Ok(ListQuery {
        status: parse_status(get("status"))?,
        kind: get("type").to_string(),
        holder: get("holder").to_string(),
        after,
        limit,
        dead_letter: matches!(get("dead_letter"), "true" | "1"),
    })
}

fn lease_remaining(item: &WorkItem, now: u64) -> Option<u64> {
    item.lease
        .as_ref()
        .map(|l| l.expires_at.saturating_sub(now))
}

fn item_row(item: &WorkItem, now: u64) -> Value {
    json!({
        "id": &*item.id,
        "type": &*item.kind,
        "status": item.status.as_str(),
        "priority": item.priority,
        "attempt": item.attempt,
        "max_attempts": item.max_attempts,
        "agent": item.lease.as_ref().map(|l| &*l.agent),
        "token": item.lease.as_ref().map(|l| l.token),
        "lease_remaining_ms": lease_remaining(item, now),
        "progress": item.lease.as_ref().and_then(|l| l.progress.as_deref()),
        "submitted_at_ms": item.submitted_at,
        "updated_at_ms": item.updated_at,
    })
}

/// Items after the query's position that match, at most `limit` of them,
/// and the token of the next page ("" after the last).
fn page<'a>(
    s: &'a WorkState,
    q: &ListQuery,
    filter: impl Fn(&WorkItem) -> bool,
) -> (Vec<&'a WorkItem>, String) {
    let mut out = Vec::new();
    let mut last_seen: Option<&WorkItem> = None;
    let mut scanned = 0;
    let mut rest = s.items_after(q.after.as_deref()).peekable();
    while let Some(&item) = rest.peek() {
        if out.len() == q.limit || scanned == SCAN_BUDGET {
            break;
        }
        rest.next();
        scanned += 1;
        last_seen = Some(item);
        if filter(item) {
            out.push(item);
        }
    }
    let next = match (last_seen, rest.peek()) {
        (Some(last), Some(_)) => encode_page_token(&last.id),
        _ => String::new(),
    };
    (out, next)
}

async fn api_work(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let q = match page_query(&params) {
        Ok(q) => q,
        Err(e) => return bad_request(e),
    };
    let now = now_millis();
    let body = app.ctx.state.read(|s| {
        let (items, next) = page(s, &q, |i| q.matches(i));
        json!({
            "items": items.iter().map(|i| item_row(i, now)).collect::<Vec<_>>(),
            "next_page_token": next,
        })
    });
    Json(body).into_response()
}

async fn api_claims(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let q = match page_query(&params) {
        // An item has a live claim exactly while it is claimed.
        Ok(q) => ListQuery {
            status: Some(WorkStatus::Claimed),
            ..q
        },
        Err(e) => return bad_request(e),
    };
    let now = now_millis();
    let body = app.ctx.state.read(|s| {
        let (items, next) = page(s, &q, |i| q.matches(i));
        let claims: Vec<Value> = items
            .iter()
            .filter_map(|i| {
                let l = i.lease.as_ref()?;
                Some(json!({
                    "id": &*i.id,
                    "type": &*i.kind,
                    "agent": &*l.agent,
                    "token": l.token,
                    "granted_at_ms": l.granted_at,
                    "lease_expires_at_ms": l.expires_at,
                    "lease_remaining_ms": l.expires_at.saturating_sub(now),
                    "lease_ms": l.lease_ms,
                    "progress": l.progress.as_deref(),
                }))
            })
            .collect();
        json!({ "claims": claims, "next_page_token": next })
    });
    Json(body).into_response()
}

/// A JSON text as a value, or the text itself when it is not JSON.
fn json_or_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// A workflow item's steps: the spec's DAG with each step's state from the
/// journal and the node that recorded it.
fn workflow_view(item: &WorkItem) -> Option<Value> {
    if *item.kind != *swarm_claims::WORKFLOW_KIND {
        return None;
    }
    let (_, workflow) = WorkflowPayload::load(&item.payload).ok()?;
    let agents: HashMap<u64, swarm_claims::Text> =
        item.holders().map(|h| (h.token, h.agent.clone())).collect();
    let board = StepBoard::from_journal(
        &item.id,
        item.journal().iter().map(|j| (j.token, j.outcome.as_str())),
        |token| agents.get(&token).map(|a| a.to_string()),
    );
    let mut steps = Vec::new();
    dag_steps(&workflow, "", None, &board, &mut steps);
    Some(json!({ "name": workflow.name(), "steps": steps }))
}

/// The steps of `workflow` as the DAG draws them, each named by its path
/// (`prefix` + name), and after each `switch` the steps of its branches
/// (`route/approve/notify`), whose first steps come after the switch.
/// `entry` is what a step with no dependency of its own comes after.
fn dag_steps(
    workflow: &swarm_reactor::Workflow,
    prefix: &str,
    entry: Option<&str>,
    board: &StepBoard,
    out: &mut Vec<Value>,
) {
    for step in &workflow.spec().steps {
        let name = format!("{prefix}{}", step.name);
        // After a switch means after its branch: drawn from each branch's last steps.
        let mut depends_on: Vec<String> = workflow
            .dependencies(&step.name)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|d| last_steps(workflow, d, prefix))
            .collect();
        if depends_on.is_empty() {
            depends_on.extend(entry.map(str::to_string));
        }
        let row = board.row(&name);
        out.push(json!({
            "name": name,
            "run": step.run,
            "depends_on": depends_on,
            "state": row.map_or("pending", |r| r.state.as_str()),
            "attempts": row.map_or(0, |r| r.attempts),
            "node": row.and_then(|r| r.node.clone()),
        }));
        for (branch, inner, _) in workflow.branches(&step.name).unwrap_or_default() {
            let inner_prefix = format!("{name}/{branch}/");
            dag_steps(inner, &inner_prefix, Some(&name), board, out);
        }
    }
}

/// What a step after `step` is drawn after: `step` itself, or for a
/// `switch` the last steps of each of its branches (those no other step of
/// the branch comes after).
fn last_steps(workflow: &swarm_reactor::Workflow, step: &str, prefix: &str) -> Vec<String> {
    let Some(branches) = workflow.branches(step) else {
        return vec![format!("{prefix}{step}")];
    };
    let mut out = Vec::new();
    for (branch, inner, _) in branches {
        let inner_prefix = format!("{prefix}{step}/{branch}/");
        let names = inner.step_names();
        for name in &names {
            let is_last = !names.iter().any(|other| {
                inner
                    .dependencies(other)
                    .is_some_and(|deps| deps.contains(name))
            });
            if is_last {
                out.extend(last_steps(inner, name, &inner_prefix));
            }
        }
    }
    out
}

fn item_view(item: &WorkItem, now: u64) -> Value {
    let events: Vec<Value> = item
        .events()
        .enumerate()
        .map(|(i, e)| {
            json!({
                "seq": item.event_seq(i),
                "at_ms": e.at,
                "kind": e.kind.as_str(),
                "agent": e.agent.as_deref(),
                "token": e.token(),
                "step": e.step(),
                "detail": e.detail(),
            })
        })
        .collect();
    json!({
        "id": &*item.id,
        "type": &*item.kind,
        "status": item.status.as_str(),
        "priority": item.priority,
        "attempt": item.attempt,
        "max_attempts": item.max_attempts,
        "token": item.token,
        "idempotency_key": &*item.idempotency_key,
        "submitted_at_ms": item.submitted_at,
        "updated_at_ms": item.updated_at,
        "payload": json_or_text(&item.payload),
        "result": item.result.as_deref().map(json_or_text),
        "error": item.error(),
        "cancel_requested": item.cancel_requested(),
        "claim": item.lease.as_ref().map(|l| json!({
            "agent": &*l.agent,
            "token": l.token,
            "granted_at_ms": l.granted_at,
            "lease_expires_at_ms": l.expires_at,
            "lease_remaining_ms": l.expires_at.saturating_sub(now),
            "lease_ms": l.lease_ms,
            "progress": l.progress.as_deref(),
        })),
        "history": item.holders().map(|h| json!({
            "agent": &*h.agent,
            "token": h.token,
            "granted_at_ms": h.granted_at,
            "ended": h.ended.map(|e| e.as_str()),
        })).collect::<Vec<_>>(),
        "events": events,
        "workflow": workflow_view(item),
    })
}

fn not_found(ctx: &NodeContext, id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        crate::convert::not_found_text(id, ctx.config.retention),
    )
}

/// Why `id` cannot be an item id, as a 400, if it cannot.
fn bad_id(ctx: &NodeContext, id: &str) -> Option<Response> {
    ctx.limits
        .name("id", id)
        .err()
        .map(|e| bad_request(e.to_string()))
}

async fn api_item(State(app): State<App>, Path(id): Path<String>) -> Response {
    if let Some(r) = bad_id(&app.ctx, &id) {
        return r;
    }
    let now = now_millis();
    match app
        .ctx
        .state
        .read(|s| s.get(&id).map(|i| item_view(i, now)))
    {
        Some(view) => Json(view).into_response(),
        None => not_found(&app.ctx, &id),
    }
}

/// How often a watch looks again even when nothing was applied (a lease's
/// remaining time moves).
const WATCH_TICK: Duration = Duration::from_secs(1);

fn watch_events(ctx: NodeContext, id: String) -> impl Stream<Item = Result<Event, Infallible>> {
    let state = ctx.state.clone();
    let applied = state.applied_index();
    // (the last version sent: updated_at, events recorded), done
    futures::stream::unfold(
        (applied, None::<(u64, u64)>, false),
        move |(mut applied, mut last, done)| {
            let state = state.clone();
            let ctx = ctx.clone();
            let id = id.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    let now = now_millis();
                    let seen = state.read(|s| {
                        s.get(&id).map(|i| {
                            (
                                (i.updated_at, i.events_recorded()),
                                i.status.is_terminal(),
                                item_view(i, now),
                            )
                        })
                    });
                    let Some((version, terminal, view)) = seen else {
                        let msg = json!({
                            "error": crate::convert::not_found_text(&id, ctx.config.retention)
                        });
                        let event = Event::default().event("error").data(msg.to_string());
                        return Some((Ok(event), (applied, last, true)));
                    };
                    if terminal {
                        let event = Event::default().event("end").data(view.to_string());
                        return Some((Ok(event), (applied, Some(version), true)));
                    }
                    if last != Some(version) {
                        last = Some(version);
                        let event = Event::default().event("item").data(view.to_string());
                        return Some((Ok(event), (applied, last, false)));
                    }
                    tokio::select! {
                        changed = applied.changed() => if changed.is_err() { return None },
                        _ = tokio::time::sleep(WATCH_TICK) => {
                            // Lease countdowns move: send the item again.
                            last = None;
                        }
                    }
                }
            }
        },
    )
}

async fn api_watch(State(app): State<App>, Path(id): Path<String>) -> Response {
    if let Some(r) = bad_id(&app.ctx, &id) {
        return r;
    }
    if app.ctx.state.read(|s| s.get(&id).is_none()) {
        return not_found(&app.ctx, &id);
    }
    Sse::new(watch_events(app.ctx.clone(), id))
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bad_query_parameters_are_named() {
        let err = |p: &[(&str, &str)]| page_query(&params(p)).err().unwrap();
        assert!(err(&[("limit", "0")]).contains("limit"));
        assert!(err(&[("limit", "abc")]).contains("limit"));
        assert!(err(&[("limit", "1001")]).contains("1 to 1000"));
        assert!(err(&[("status", "done")]).contains("status \"done\""));
        assert!(err(&[("page_token", "!!")]).contains("page_token"));
        assert!(err(&[("colour", "red")]).contains("unknown parameter \"colour\""));
        let q = page_query(&params(&[("status", "claimed"), ("limit", "7")])).unwrap();
        assert_eq!((q.status, q.limit), (Some(WorkStatus::Claimed), 7));
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
