//! [`SwarmClient`]: one lazily connected channel per node, and the loop that
//! sends a call to the node that last answered, follows leader hints and
//! retries within the [`RetryPolicy`](crate::RetryPolicy).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use rand::Rng;
use swarm_proto::MAX_MESSAGE_BYTES;
use swarm_proto::v1::admin_service_client::AdminServiceClient;
use swarm_proto::v1::work_service_client::WorkServiceClient;
use swarm_proto::v1::{
    AddNodeRequest, CancelRequest, ClaimRequest, ClusterStatusRequest, ClusterStatusResponse,
    CompleteRequest, FailRequest, GetWorkRequest, HandoffRequest, ListWorkRequest,
    ListWorkResponse, PauseWorkRequest, ReadConsistency, ReleaseRequest, RemoveNodeRequest,
    RenewRequest, RenewResponse, ResumeWorkRequest, RetryWorkRequest, SignalWorkRequest,
    SubmitRequest, SubmitResponse, TransferLeaderRequest, TransferLeaderResponse, WatchWorkRequest,
    WorkEvent, WorkItem, WorkResponse, WorkStatsRequest, WorkStatsResponse, WorkStatus,
};
use tokio::time::Instant;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};
use tracing::debug;

use crate::retry::{Failure, Rpc, classify};
use crate::{ClientConfig, ClientError, NodeAddr};

mod queue;

/// Grace on top of the per-attempt timeout before this process stops
/// waiting by itself: the transport's own `grpc-timeout` should fire first,
/// this only covers a connection handshake that hangs (a paused node).
const TIMEOUT_GRACE: Duration = Duration::from_millis(200);

/// The events of one work item, as [`SwarmClient::watch_work`] streams them.
/// Ends after the item's last event (it completed, failed or was cancelled),
/// or with an error.
pub type WorkEvents = Pin<Box<dyn Stream<Item = Result<WorkEvent, ClientError>> + Send>>;

/// The pages of a listing, as [`SwarmClient::list_work_pages`] streams them.
pub type WorkPages = Pin<Box<dyn Stream<Item = Result<ListWorkResponse, ClientError>> + Send>>;

/// A client for a Swarm cluster. Cheap to clone; clones share channels and
/// the memory of which node answered last.
#[derive(Clone)]
pub struct SwarmClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SwarmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmClient")
            .field("endpoints", &self.endpoints())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ClientConfig,
    nodes: Mutex<Nodes>,
}

struct Nodes {
    /// The order in which a call goes through the cluster: the endpoints the
    /// user gave, then leaders learned from hints.
    order: Vec<NodeAddr>,
    /// Index in `order` where the next call starts: the node that answered
    /// last, so that a client that found the leader keeps talking to it.
    preferred: usize,
    /// One channel per node ever talked to (probes of members included).
    /// Created on first use: `connect_lazy` needs a running tokio runtime.
    channels: HashMap<NodeAddr, Channel>,
}

/// What happened on the way to a call's result, for calls that reconcile an
/// ambiguous first attempt.
#[derive(Debug, Default)]
struct Trace {
    /// Some attempt failed after the request may have been applied.
    ambiguous: bool,
}

impl SwarmClient {
    /// A client for the nodes at `endpoints` (`host:port` or
    /// `http://host:port`) with the default [`ClientConfig`]. Nothing is
    /// connected until the first call.
    pub fn connect(endpoints: Vec<String>) -> Result<SwarmClient, ClientError> {
        SwarmClient::connect_with(endpoints, ClientConfig::default())
    }

    /// Like [`SwarmClient::connect`], with explicit timeouts and retry policy.
    pub fn connect_with(
        endpoints: Vec<String>,
        config: ClientConfig,
    ) -> Result<SwarmClient, ClientError> {
        let config = config.validate()?;
        let mut order: Vec<NodeAddr> = Vec::with_capacity(endpoints.len());
        for endpoint in &endpoints {
            let addr: NodeAddr = endpoint.parse()?;
            if !order.contains(&addr) {
                order.push(addr);
            }
        }
        if order.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        Ok(SwarmClient {
            inner: Arc::new(Inner {
                config,
                nodes: Mutex::new(Nodes {
                    order,
                    preferred: 0,
                    channels: HashMap::new(),
                }),
            }),
        })
    }

    /// The nodes a call goes through, starting with the one it tries first.
    pub fn endpoints(&self) -> Vec<NodeAddr> {
        self.rotation().into_iter().collect()
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    // ----- WorkService -----

    /// Submits a work item. With a non-empty `idempotency_key` the call is
    /// retried after any failure (the key makes a repeat return the same
    /// item); without one only when the request certainly reached no node.
    pub async fn submit(&self, req: SubmitRequest) -> Result<SubmitResponse, ClientError> {
        let rpc = Rpc::Submit {
            keyed: !req.idempotency_key.is_empty(),
        };
        let resp = self
            .call(rpc, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { work(ch).submit(req).await }
            })
            .await?;
        if resp.item.is_none() {
            return Err(missing_item("submit"));
        }
        Ok(resp)
    }

    /// Claims up to `max` claimable items; an empty list when there are none.
    /// Claims work; with `wait_ms`, the node holds the call until matching
    /// work appears (long poll), and so does the client's deadline.
    pub async fn claim(&self, req: ClaimRequest) -> Result<Vec<WorkItem>, ClientError> {
        let wait = Duration::from_millis(u64::from(req.wait_ms));
        let resp = self
            .call_waiting(Rpc::Claim, wait, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { work(ch).claim(req).await }
            })
            .await?;
        Ok(resp.items)
    }

    /// Renews the agent's leases (all of them when `tokens` is empty). A
    /// token that cannot be renewed is listed in `rejected`, not an error.
    pub async fn renew(&self, req: RenewRequest) -> Result<RenewResponse, ClientError> {
        self.call(Rpc::Renew, |ch, t| {
            let req = self.request(req.clone(), t);
            async move { work(ch).renew(req).await }
        })
        .await
    }

    /// Completes the item held under `token`.
    ///
    /// If an attempt failed ambiguously and a retry is refused as stale, the
    /// item is read back: when it was completed under this very token (the
    /// first attempt was applied after all), that is a success.
    pub async fn complete(&self, req: CompleteRequest) -> Result<WorkItem, ClientError> {
        let (result, trace) = self
            .call_traced(Rpc::Complete, Duration::ZERO, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { work(ch).complete(req).await }
            })
            .await;
        match result {
            Err(err) if err.is_stale_token() && trace.ambiguous => {
                let read = self
                    .get_work(GetWorkRequest {
                        id: req.id.clone(),
                        consistency: ReadConsistency::Linearizable as i32,
                    })
                    .await;
                match read {
                    Ok(item) if completed_under(&item, req.token) => Ok(item),
                    _ => Err(err),
                }
            }
            other => item_of(other?, "complete"),
        }
    }

    /// Fails the item held under `token`; with `retry` it goes back to
    /// pending (bounded by its max attempts).
    pub async fn fail(&self, req: FailRequest) -> Result<WorkItem, ClientError> {
        let resp = self
            .call(Rpc::Fail, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { work(ch).fail(req).await }
            })
            .await;
        item_of(resp?, "fail")
    }

    /// Gives the item held under `token` back, claimable again.
    pub async fn release(&self, req: ReleaseRequest) -> Result<WorkItem, ClientError> {
        let resp = self
            .call(Rpc::Release, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { work(ch).release(req).await }
            })
            .await;
        item_of(resp?, "release")
    }

    /// Moves the claim held under `token` to `to_agent`, with a new token.
    pub async fn handoff(&self, req: HandoffRequest) -> Result<WorkItem, ClientError> {
        let resp = self
            .call(Rpc::Handoff, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { work(ch).handoff(req).await }
            })
            .await;
        item_of(resp?, "handoff")
    }

    /// Cancels the item, whoever holds it. Cancelling a cancelled item
    /// succeeds, so the call is retried freely.
    pub async fn cancel(&self, req: CancelRequest) -> Result<WorkItem, ClientError> {
        let resp = self
            .call(Rpc::Cancel, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { work(ch).cancel(req).await }
            })
            .await;
        item_of(resp?, "cancel")
    }

    /// Pauses the item: a pending one waits until resumed, a running
    /// workflow stops at its next step boundary and waits with its journal.
    /// Pausing a paused item succeeds, so the call is retried freely.
    pub async fn pause_work(&self, req: PauseWorkRequest) -> Result<WorkItem, ClientError> {
        let resp = self
            .call(Rpc::PauseWork, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { work(ch).pause_work(req).await }
            })
            .await;
        item_of(resp?, "pause")
    }

    /// Delivers signal `name` (with a JSON payload) to a workflow run. The
    /// same signal again answers as the first did, so the call is retried.
    pub async fn signal_work(&self, req: SignalWorkRequest) -> Result<WorkItem, ClientError> {
        let resp = self
            .call(Rpc::SignalWork, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { work(ch).signal_work(req).await }
            })
            .await;
        item_of(resp?, "signal")
    }

    /// Makes a paused item claimable again.
    pub async fn resume_work(&self, req: ResumeWorkRequest) -> Result<WorkItem, ClientError> {
        let resp = self
            .call(Rpc::ResumeWork, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { work(ch).resume_work(req).await }
            })
            .await;
        item_of(resp?, "resume")
    }

    /// Reads one item.
    pub async fn get_work(&self, req: GetWorkRequest) -> Result<WorkItem, ClientError> {
        let resp = self
            .call(Rpc::GetWork, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { work(ch).get_work(req).await }
            })
            .await;
        item_of(resp?, "get work")
    }

    /// One page of the items matching the filters, from `req.page_token`
    /// (empty: the first page). `req.limit` caps the page (0: the node's
    /// default of 1,000; at most 10,000); a page may hold fewer items, even
    /// none, and still be followed by more: the listing is over when
    /// `next_page_token` is empty.
    pub async fn list_work_page(
        &self,
        req: ListWorkRequest,
    ) -> Result<ListWorkResponse, ClientError> {
        self.call(Rpc::ListWork, |ch, t| {
            let req = self.request(req.clone(), t);
            async move { work(ch).list_work(req).await }
        })
        .await
    }

    /// Every page of the items matching the filters, from `req.page_token`
    /// on, each fetched when the stream is polled for it. Each page is one
    /// call, retried like any read; an error ends the stream.
    pub fn list_work_pages(&self, req: ListWorkRequest) -> WorkPages {
        let client = self.clone();
        Box::pin(futures::stream::try_unfold(Some(req), move |next| {
            let client = client.clone();
            async move {
                let Some(req) = next else {
                    return Ok(None);
                };
                let page = client.list_work_page(req.clone()).await?;
                if !page.next_page_token.is_empty() && page.next_page_token == req.page_token {
                    return Err(ClientError::MalformedResponse(
                        "list work answered with the page token it was given".into(),
                    ));
                }
                let more = (!page.next_page_token.is_empty()).then(|| ListWorkRequest {
                    page_token: page.next_page_token.clone(),
                    ..req
                });
                Ok(Some((page, more)))
            }
        }))
    }

    /// Every item matching the filters (from `req.page_token` on), following
    /// the pages; `req.limit` is the page size.
    pub async fn list_work(&self, req: ListWorkRequest) -> Result<Vec<WorkItem>, ClientError> {
        let mut pages = self.list_work_pages(req);
        let mut items = Vec::new();
        while let Some(page) = pages.next().await {
            items.extend(page?.items);
        }
        Ok(items)
    }

    /// How many items there are, by status and by type, and how long the
    /// oldest pending one has waited.
    pub async fn work_stats(
        &self,
        req: WorkStatsRequest,
    ) -> Result<WorkStatsResponse, ClientError> {
        self.call(Rpc::WorkStats, |ch, t| {
            let req = self.request(req, t);
            async move { work(ch).work_stats(req).await }
        })
        .await
    }

    /// Streams the events of work item `id`: every one since it was
    /// submitted when `from_start`, then the live ones, until it ends.
    ///
    /// Opening the stream goes round the endpoints like any read. Once it
    /// has started nothing is retried: if the node dies the stream yields
    /// [`ClientError::WatchInterrupted`] and ends; watch again with
    /// `from_start` and skip the events already seen (by `seq`).
    pub async fn watch_work(&self, id: &str, from_start: bool) -> Result<WorkEvents, ClientError> {
        let req = WatchWorkRequest {
            id: id.to_string(),
            from_start,
        };
        let stream = self
            .call(Rpc::WatchWork, |ch, _| {
                // No deadline: it would end a stream that is meant to stay
                // open as long as the item runs. The call loop still bounds
                // the wait for the node's first answer.
                let req = self.authorized(tonic::Request::new(req.clone()));
                async move { work(ch).watch_work(req).await }
            })
            .await?;
        // The node that opened the stream is now the preferred one.
        let endpoint = self
            .endpoints()
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        Ok(Box::pin(stream.map(move |event| {
            event.map_err(|status| match classify(&status) {
                Failure::Answered => ClientError::from_answer(status, Rpc::WatchWork),
                _ => ClientError::WatchInterrupted {
                    endpoint: endpoint.clone(),
                    status,
                },
            })
        })))
    }

    /// Puts failed items back to pending, their history kept: the item
    /// `id`, or with `all` every dead letter (of `type`, when given).
    /// Returns the items put back. Not retried after an ambiguous failure:
    /// a repeat of one that was applied is refused (the item is pending
    /// now), and a repeat of `all` would put back items that died since.
    pub async fn retry_work(&self, req: RetryWorkRequest) -> Result<Vec<WorkItem>, ClientError> {
        let resp = self
            .call(Rpc::RetryWork, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { work(ch).retry_work(req).await }
            })
            .await?;
        Ok(resp.items)
    }

    // ----- AdminService -----

    /// Membership, leader, term and indexes, as whichever node answers sees them.
    pub async fn cluster_status(&self) -> Result<ClusterStatusResponse, ClientError> {
        self.call(Rpc::ClusterStatus, |ch, t| {
            let req = self.request(ClusterStatusRequest {}, t);
            async move { admin(ch).cluster_status(req).await }
        })
        .await
    }

    /// Asks the node at `endpoint` itself, once, within the probe timeout:
    /// no retry, no redirect. An error means the node did not answer.
    pub async fn cluster_status_of(
        &self,
        endpoint: &str,
    ) -> Result<ClusterStatusResponse, ClientError> {
        let addr: NodeAddr = endpoint.parse()?;
        let timeout = self.inner.config.probe_timeout;
        let channel = self.channel(&addr)?;
        let req = self.request(ClusterStatusRequest {}, timeout);
        let answer = tokio::time::timeout(timeout + TIMEOUT_GRACE, async move {
            admin(channel).cluster_status(req).await
        })
        .await
        .unwrap_or_else(|_| Err(no_answer(&addr, timeout)));
        match answer {
            Ok(resp) => Ok(resp.into_inner()),
            Err(status) => Err(match classify(&status) {
                Failure::Answered => ClientError::from_answer(status, Rpc::ClusterStatus),
                _ => ClientError::Unavailable {
                    attempts: 1,
                    endpoint: addr.to_string(),
                    last: self.with_tls_hint(status),
                },
            }),
        }
    }

    /// Adds a node (`voter: false` keeps it a learner) and returns the
    /// resulting status. Not retried after an ambiguous failure.
    pub async fn add_node(
        &self,
        req: AddNodeRequest,
    ) -> Result<ClusterStatusResponse, ClientError> {
        let resp = self
            .call(Rpc::AddNode, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { admin(ch).add_node(req).await }
            })
            .await?;
        resp.status
            .ok_or_else(|| ClientError::MalformedResponse("add node response has no status".into()))
    }

    /// Removes a node from the membership and returns the resulting status.
    pub async fn remove_node(
        &self,
        req: RemoveNodeRequest,
    ) -> Result<ClusterStatusResponse, ClientError> {
        let resp = self
            .call(Rpc::RemoveNode, |ch, t| {
                let req = self.request(req, t);
                async move { admin(ch).remove_node(req).await }
            })
            .await?;
        resp.status.ok_or_else(|| {
            ClientError::MalformedResponse("remove node response has no status".into())
        })
    }

    /// Asks the leader to hand leadership to `to` (0: any up-to-date voter).
    pub async fn transfer_leader(
        &self,
        req: TransferLeaderRequest,
    ) -> Result<TransferLeaderResponse, ClientError> {
        self.call(Rpc::TransferLeader, |ch, t| {
            let req = self.request(req, t);
            async move { admin(ch).transfer_leader(req).await }
        })
        .await
    }

    // ----- routing and retries -----

    async fn call<Resp, F, Fut>(&self, rpc: Rpc, attempt: F) -> Result<Resp, ClientError>
    where
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        self.call_traced(rpc, Duration::ZERO, attempt).await.0
    }

    /// [`SwarmClient::call`] for a call the node may hold for `wait` before
    /// it answers: every deadline is longer by that much.
    async fn call_waiting<Resp, F, Fut>(
        &self,
        rpc: Rpc,
        wait: Duration,
        attempt: F,
    ) -> Result<Resp, ClientError>
    where
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        self.call_traced(rpc, wait, attempt).await.0
    }

    /// Sends `attempt` to one node after another until one answers, a node
    /// gives a definite error, a failure is not safe to retry for `rpc`, or
    /// the retry policy runs out.
    async fn call_traced<Resp, F, Fut>(
        &self,
        rpc: Rpc,
        wait: Duration,
        mut attempt: F,
    ) -> (Result<Resp, ClientError>, Trace)
    where
        F: FnMut(Channel, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let config = &self.inner.config;
        let deadline = Instant::now() + config.retry.total_timeout + wait;
        let mut pauses = config.retry.backoffs();
        let mut trace = Trace::default();
        let mut attempts = 0u32;
        // Bounds ping-pong between nodes that name each other as leader.
        let mut hints_left = 2 * self.lock().order.len() + 2;
        let mut last: Option<(NodeAddr, Status)> = None;

        'rounds: for round in 0..config.retry.rounds {
            if round > 0 {
                let pause = jitter(pauses.next().unwrap_or_default());
                if Instant::now() + pause >= deadline {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            let mut queue = self.rotation();
            while let Some(addr) = queue.pop_front() {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break 'rounds;
                }
                let timeout = (config.request_timeout + wait).min(remaining);
                let channel = match self.channel(&addr) {
                    Ok(channel) => channel,
                    Err(err) => return (Err(err), trace),
                };
                attempts += 1;
                let answer =
                    tokio::time::timeout(timeout + TIMEOUT_GRACE, attempt(channel, timeout))
                        .await
                        .unwrap_or_else(|_| Err(no_answer(&addr, timeout)));
                let status = match answer {
                    Ok(resp) => {
                        self.remember(&addr);
                        return (Ok(resp.into_inner()), trace);
                    }
                    Err(status) => status,
                };
                let failure = classify(&status);
                debug!(
                    ?rpc,
                    node = %addr,
                    attempt = attempts,
                    ?failure,
                    code = ?status.code(),
                    message = status.message(),
                    "attempt failed"
                );
                if failure == Failure::Answered {
                    return (Err(ClientError::from_answer(status, rpc)), trace);
                }
                if !rpc.retries_after(&failure) {
                    let err = ClientError::OutcomeUnknown {
                        endpoint: addr.to_string(),
                        status,
                    };
                    return (Err(err), trace);
                }
                if failure == Failure::Ambiguous {
                    trace.ambiguous = true;
                }
                if let Failure::Refused {
                    leader: Some(leader),
                } = failure
                    && leader != addr
                    && hints_left > 0
                {
                    hints_left -= 1;
                    self.learn(&leader);
                    queue.retain(|a| *a != leader);
                    queue.push_front(leader);
                }
                last = Some((addr, status));
            }
        }
        let err = match last {
            Some((addr, status)) => ClientError::Unavailable {
                attempts,
                endpoint: addr.to_string(),
                last: self.with_tls_hint(status),
            },
            // The budget ran out before a single attempt: only possible with
            // a total timeout shorter than a pause.
            None => ClientError::Unavailable {
                attempts,
                endpoint: String::new(),
                last: Status::deadline_exceeded("retry budget exhausted before any attempt"),
            },
        };
        (Err(err), trace)
    }

    fn lock(&self) -> MutexGuard<'_, Nodes> {
        // The lock is never held across an await or a panic-prone call; a
        // poisoned lock still holds a consistent list.
        self.inner
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The nodes in calling order, starting with the preferred one.
    fn rotation(&self) -> VecDeque<NodeAddr> {
        let nodes = self.lock();
        let mut queue: VecDeque<NodeAddr> = nodes.order.iter().cloned().collect();
        queue.rotate_left(nodes.preferred.min(queue.len().saturating_sub(1)));
        queue
    }

    fn remember(&self, addr: &NodeAddr) {
        let mut nodes = self.lock();
        if let Some(i) = nodes.order.iter().position(|a| a == addr) {
            nodes.preferred = i;
        }
    }

    /// Adds a leader named by a hint to the calling order.
    fn learn(&self, addr: &NodeAddr) {
        let mut nodes = self.lock();
        if !nodes.order.contains(addr) {
            nodes.order.push(addr.clone());
        }
    }

    /// A connection that failed below gRPC (no status from a node) may be
    /// TLS meeting plaintext: the status says which side to look at.
    fn with_tls_hint(&self, status: Status) -> Status {
        let text = crate::error::text_with_causes(&status);
        let below_grpc = std::error::Error::source(&status).is_some()
            || text.contains("transport error")
            || text.contains("h2 protocol error");
        if !below_grpc {
            return status;
        }
        let hint = match self.inner.config.tls {
            None => "if the node serves TLS, give its CA certificate (swarmctl --ca or SWARM_CA)",
            Some(_) => {
                "TLS is on: is the node serving plaintext, or is its certificate from another CA or for another host?"
            }
        };
        Status::new(status.code(), format!("{text} ({hint})"))
    }

    /// `message` with the call's deadline and, if configured, the token.
    fn request<T>(&self, message: T, timeout: Duration) -> tonic::Request<T> {
        self.authorized(request(message, timeout))
    }

    /// `req` with the configured token, if any.
    fn authorized<T>(&self, mut req: tonic::Request<T>) -> tonic::Request<T> {
        if let Some(token) = &self.inner.config.token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            req.metadata_mut().insert("authorization", value);
        }
        req
    }

    fn channel(&self, addr: &NodeAddr) -> Result<Channel, ClientError> {
        let mut nodes = self.lock();
        if let Some(channel) = nodes.channels.get(addr) {
            return Ok(channel.clone());
        }
        let invalid = |e: tonic::transport::Error| ClientError::InvalidEndpoint {
            endpoint: addr.to_string(),
            reason: e.to_string(),
        };
        let tls = self.inner.config.tls.as_ref();
        let uri = match tls {
            Some(_) => format!("https://{}", addr.as_str()),
            None => addr.uri(),
        };
        let mut endpoint = Endpoint::from_shared(uri).map_err(invalid)?;
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls.clone().domain_name(addr.host()))
                .map_err(invalid)?;
        }
        let endpoint = endpoint
            .connect_timeout(self.inner.config.connect_timeout)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        nodes.channels.insert(addr.clone(), channel.clone());
        Ok(channel)
    }
}

fn work(channel: Channel) -> WorkServiceClient<Channel> {
    WorkServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn admin(channel: Channel) -> AdminServiceClient<Channel> {
    AdminServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A request that tells the node (and this process's transport) how long
/// the caller waits.
fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(timeout);
    req
}

fn no_answer(addr: &NodeAddr, timeout: Duration) -> Status {
    Status::deadline_exceeded(format!("no answer from {addr} within {timeout:?}"))
}

/// Spreads retries of many clients apart: 80% to 120% of `pause`.
fn jitter(pause: Duration) -> Duration {
    if pause.is_zero() {
        return pause;
    }
    pause.mul_f64(rand::rng().random_range(0.8..1.2))
}

fn item_of(resp: WorkResponse, call: &str) -> Result<WorkItem, ClientError> {
    resp.item.ok_or_else(|| missing_item(call))
}

fn missing_item(call: &str) -> ClientError {
    ClientError::MalformedResponse(format!("{call} response has no work item"))
}

fn completed_under(item: &WorkItem, token: u64) -> bool {
    item.status == WorkStatus::Completed as i32
        && item
            .history
            .iter()
            .any(|h| h.token == token && h.ended == "completed")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use swarm_proto::v1::HolderRecord;

    use super::*;

    fn client(endpoints: &[&str]) -> SwarmClient {
        SwarmClient::connect(endpoints.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    #[test]
    fn connect_parses_and_dedups_endpoints() {
        let c = client(&["127.0.0.1:7101", "http://127.0.0.1:7101/", "127.0.0.1:7102"]);
        let names: Vec<_> = c.endpoints().iter().map(|a| a.to_string()).collect();
        assert_eq!(names, ["127.0.0.1:7101", "127.0.0.1:7102"]);
    }

    #[test]
    fn connect_refuses_bad_and_empty_lists() {
        let err = SwarmClient::connect(vec!["127.0.0.1:7101".into(), "nope".into()]).unwrap_err();
        assert!(matches!(err, ClientError::InvalidEndpoint { .. }), "{err}");
        let err = SwarmClient::connect(vec![]).unwrap_err();
        assert!(matches!(err, ClientError::NoEndpoints));
    }

    #[test]
    fn calls_start_at_the_node_that_answered_last_and_learn_leaders() {
        let c = client(&["a:1", "b:2", "c:3"]);
        c.remember(&"b:2".parse().unwrap());
        let order: Vec<_> = c.endpoints().iter().map(|a| a.to_string()).collect();
        assert_eq!(order, ["b:2", "c:3", "a:1"]);

        c.learn(&"d:4".parse().unwrap());
        c.learn(&"a:1".parse().unwrap());
        let order: Vec<_> = c.endpoints().iter().map(|a| a.to_string()).collect();
        assert_eq!(order, ["b:2", "c:3", "d:4", "a:1"]);
    }

    #[test]
    fn completed_under_looks_for_this_token_in_the_history() {
        let item = WorkItem {
            status: WorkStatus::Completed as i32,
            history: vec![
                HolderRecord {
                    agent: "a".into(),
                    token: 3,
                    granted_at_ms: 1,
                    ended: "expired".into(),
                },
                HolderRecord {
                    agent: "b".into(),
                    token: 5,
                    granted_at_ms: 2,
                    ended: "completed".into(),
                },
            ],
            ..WorkItem::default()
        };
        assert!(completed_under(&item, 5));
        assert!(!completed_under(&item, 3));
    }
}
