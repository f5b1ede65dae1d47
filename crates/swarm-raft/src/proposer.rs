//! Group commit and forwarding. Every write of a node goes through its
//! [`Proposer`]: commands that arrive while an entry is in flight are
//! coalesced into one `Batch` entry, so one disk flush and one replication
//! round serve many claims. On a follower, the proposer forwards the command
//! to the leader's proposer over gRPC, so a client never sees "not leader".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;

use openraft::errors::{ClientWriteError, RaftError};
use swarm_claims::{Command, Response};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

use crate::codec::{ForwardedAnswer, decode, encode, from_wire};
use crate::error::ClusterError;
use crate::metrics::RaftMetrics;
use crate::network::PeerChannels;
use crate::{ApplyResult, NodeId, Raft, TypeConfig};
use openraft::type_config::async_runtime::WatchReceiver as _;

/// Tuning of group commit.
#[derive(Debug, Clone)]
pub struct ProposerConfig {
    /// Most commands in one `Batch` entry.
    pub max_batch: usize,
    /// Most bytes (by [`Command::weight`]) in one entry.
    pub max_batch_bytes: usize,
    /// Entries proposed concurrently; commands wait and coalesce meanwhile.
    pub max_in_flight: usize,
    /// How long a proposal waits for a leader to be known or reachable.
    pub leader_wait: Duration,
    /// Traces proposals: a span per entry (a child of a proposer's span),
    /// and this adds the trace context to each proposal forwarded to the
    /// leader. `None`: no spans, and no cost per proposal.
    pub trace: Option<fn(&mut tonic::metadata::MetadataMap)>,
}

impl Default for ProposerConfig {
    fn default() -> Self {
        ProposerConfig {
            max_batch: 1024,
            max_batch_bytes: 4 * 1024 * 1024,
            max_in_flight: 2,
            leader_wait: Duration::from_secs(5),
            trace: None,
        }
    }
}

struct Pending {
    cmd: Command,
    reply: oneshot::Sender<Result<ApplyResult, ClusterError>>,
    /// The proposer's span: the entry's span descends from one of them and
    /// follows from the others.
    span: tracing::Span,
}

/// Most proposals an entry's span names as links besides its parent: a
/// full batch has a thousand.
const MAX_SPAN_LINKS: usize = 32;

/// A write a follower forwards over a leader's stream, and where its
/// outcome goes.
type Forward = (Command, oneshot::Sender<Result<Response, ClusterError>>);

/// The write path of one node.
#[derive(Clone)]
pub(crate) struct Proposer {
    tx: mpsc::Sender<Pending>,
    peers: PeerChannels,
    /// Per leader peer address: the task that owns the forwarding stream.
    streams: Arc<Mutex<HashMap<String, mpsc::Sender<Forward>>>>,
    raft: Raft,
    config: Arc<ProposerConfig>,
    metrics: RaftMetrics,
}

/// Milliseconds since the Unix epoch on this node's clock.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Proposer {
    /// Starts the batching task of `raft`.
    pub fn start(
        raft: Raft,
        peers: PeerChannels,
        config: ProposerConfig,
        metrics: RaftMetrics,
    ) -> Proposer {
        let (tx, rx) = mpsc::channel(16 * 1024);
        let config = Arc::new(config);
        tokio::spawn(batch_loop(
            raft.clone(),
            rx,
            config.clone(),
            metrics.clone(),
        ));
        Proposer {
            tx,
            peers,
            streams: Arc::default(),
            raft,
            config,
            metrics,
        }
    }

    /// Proposes `cmd` through this node if it leads, or through the leader
    /// otherwise, and waits for the state machine's answer.
    pub async fn propose(&self, cmd: Command) -> Result<Response, ClusterError> {
        let deadline = tokio::time::Instant::now() + self.config.leader_wait;
        let mut last_error;
        loop {
            // A follower that knows the leader forwards at once: the local
            // attempt would only come back "not leader". (Traced proposals
            // still make it, for its span.)
            let attempt = match self.leader_elsewhere() {
                Some(known) if self.config.trace.is_none() => Err(known),
                _ => self.propose_local(cmd.clone()).await,
            };
            match attempt {
                Err(ClusterError::NotLeader {
                    leader_id,
                    leader_addr: Some(addr),
                }) => match self.forward(&self.peer_addr(leader_id, &addr), &cmd).await {
                    Ok(result) => return Ok(result),
                    // The leader moved or was never reached: nothing was
                    // appended, so trying again is safe.
                    Err(e @ ClusterError::NotLeader { .. }) => last_error = e,
                    Err(ClusterError::Unavailable(msg)) => {
                        last_error = ClusterError::Unavailable(format!(
                            "leader node {leader_id:?} at {addr}: {msg}"
                        ))
                    }
                    Err(e) => return Err(e),
                },
                Err(e @ ClusterError::NotLeader { .. }) => last_error = e,
                other => return other,
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(match last_error {
                    ClusterError::NotLeader { .. } => ClusterError::Unavailable(format!(
                        "no leader elected within {:?}",
                        self.config.leader_wait
                    )),
                    e => e,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Proposes through this node only; answers `NotLeader` on a follower.
    pub async fn propose_local(&self, cmd: Command) -> Result<Response, ClusterError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                cmd,
                reply,
                span: match self.config.trace {
                    Some(_) => tracing::Span::current(),
                    None => tracing::Span::none(),
                },
            })
            .await
            .map_err(|_| ClusterError::Unavailable("proposer stopped".into()))?;
        let applied = rx.await.map_err(|_| {
            ClusterError::Unknown("proposer dropped the command while it was in flight".into())
        })??;
        applied.map_err(ClusterError::Refused)
    }

    /// `NotLeader`, naming the leader, when this node's metrics show another
    /// node leading.
    fn leader_elsewhere(&self) -> Option<ClusterError> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let leader = m.current_leader.filter(|l| *l != m.id)?;
        let node = m.membership_config.membership().get_node(&leader)?;
        Some(ClusterError::NotLeader {
            leader_id: Some(leader),
            leader_addr: Some(node.addr.clone()),
        })
    }

    /// Where peers reach the leader `id`, whose client address is `addr`:
    /// its peer port as membership records it.
    fn peer_addr(&self, id: Option<NodeId>, addr: &str) -> String {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        id.and_then(|id| metrics.membership_config.membership().get_node(&id))
            .map_or_else(|| addr.to_string(), |node| node.peer().to_string())
    }

    async fn forward(&self, addr: &str, cmd: &Command) -> Result<Response, ClusterError> {
        self.metrics.forwarded.inc();
        if self.config.trace.is_none() {
            return self.forward_on_stream(addr, cmd).await;
        }
        // Traced: a call of its own, which carries the trace context.
        let data = encode(cmd).map_err(|s| ClusterError::Unavailable(s.message().to_string()))?;
        let mut client = self
            .peers
            .raft_client(addr)
            .map_err(|s| ClusterError::Unavailable(s.message().to_string()))?;
        let mut request = tonic::Request::new(swarm_proto::v1::RaftMessage { data });
        if let Some(add) = self.config.trace {
            add(request.metadata_mut());
        }
        match client.propose(request).await {
            Ok(reply) => from_wire(
                decode::<ForwardedAnswer>(&reply.into_inner().data)
                    .map_err(|s| ClusterError::Unknown(s.message().to_string()))?,
            ),
            // Only a connection that never opened proves the leader did
            // not get the command.
            Err(s) if crate::network::never_connected(&s) => {
                Err(ClusterError::Unavailable(s.message().to_string()))
            }
            Err(s) => Err(ClusterError::Unknown(format!(
                "forward to leader at {addr}: {s}"
            ))),
        }
    }

    /// Forwards `cmd` over the stream to `addr`, opening one if there is
    /// none (or the last one ended).
    async fn forward_on_stream(&self, addr: &str, cmd: &Command) -> Result<Response, ClusterError> {
        let (reply, outcome) = oneshot::channel();
        let mut forward = (cmd.clone(), reply);
        for _ in 0..2 {
            let sender = {
                let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
                match streams.get(addr) {
                    Some(s) if !s.is_closed() => s.clone(),
                    _ => {
                        let client = self
                            .peers
                            .raft_client(addr)
                            .map_err(|s| ClusterError::Unavailable(s.message().to_string()))?;
                        let (tx, rx) = mpsc::channel(4096);
                        tokio::spawn(forward_stream(client, addr.to_string(), rx));
                        streams.insert(addr.to_string(), tx.clone());
                        tx
                    }
                }
            };
            match sender.send(forward).await {
                Ok(()) => {
                    return outcome.await.unwrap_or_else(|_| {
                        Err(ClusterError::Unknown(format!(
                            "the stream to the leader at {addr} ended with the write in flight"
                        )))
                    });
                }
                // That stream had just ended, before taking the command.
                Err(mpsc::error::SendError(back)) => forward = back,
            }
        }
        Err(ClusterError::Unavailable(format!(
            "no stream to the leader at {addr}"
        )))
    }

    /// The log index up to which a read from this node's replica is
    /// linearizable: the leader's commit index, confirmed by a quorum
    /// (ReadIndex). A follower asks the leader for it.
    pub async fn read_index(&self) -> Result<u64, ClusterError> {
        let deadline = tokio::time::Instant::now() + self.config.leader_wait;
        loop {
            let err = match self.read_index_local().await {
                Ok(index) => return Ok(index),
                Err(ClusterError::NotLeader {
                    leader_id,
                    leader_addr: Some(addr),
                }) => match self
                    .forward_read_index(&self.peer_addr(leader_id, &addr))
                    .await
                {
                    Ok(index) => return Ok(index),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(match err {
                    ClusterError::NotLeader { .. } => ClusterError::Unavailable(format!(
                        "no leader elected within {:?}",
                        self.config.leader_wait
                    )),
                    e => e,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The read index, if this node leads.
    pub async fn read_index_local(&self) -> Result<u64, ClusterError> {
        match self
            .raft
            .get_read_linearizer(openraft::raft::ReadPolicy::ReadIndex)
            .await
        {
            Ok(linearizer) => Ok(linearizer.read_log_id().index()),
            Err(e) => Err(match e.forward_to_leader() {
                Some(f) => ClusterError::NotLeader {
                    leader_id: f.leader_id,
                    leader_addr: f.leader_node.as_ref().map(|n| n.addr.clone()),
                },
                None => ClusterError::Unavailable(e.to_string()),
            }),
        }
    }

    async fn forward_read_index(&self, addr: &str) -> Result<u64, ClusterError> {
        let mut client = self
            .peers
            .raft_client(addr)
            .map_err(|s| ClusterError::Unavailable(s.message().to_string()))?;
        let reply = client
            .read_index(swarm_proto::v1::RaftMessage { data: Vec::new() })
            .await
            .map_err(|s| {
                ClusterError::Unavailable(format!(
                    "read index from leader at {addr}: {}",
                    s.message()
                ))
            })?;
        decode::<Result<u64, ClusterError>>(&reply.into_inner().data)
            .map_err(|s| ClusterError::Unavailable(s.message().to_string()))?
    }
}

async fn batch_loop(
    raft: Raft,
    mut rx: mpsc::Receiver<Pending>,
    config: Arc<ProposerConfig>,
    metrics: RaftMetrics,
) {
    let slots = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut bytes = first.cmd.weight();
        let mut batch = vec![first];
        while batch.len() < config.max_batch && bytes < config.max_batch_bytes {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.cmd.weight();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        metrics.batch_size.observe(batch.len() as f64);
        metrics
            .queue_depth
            .set(i64::try_from(rx.len()).unwrap_or(i64::MAX));
        let raft = raft.clone();
        let metrics = metrics.clone();
        let traced = config.trace.is_some();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            write_batch(&raft, batch, traced).await;
            metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            drop(slot);
        });
    }
}

async fn write_batch(raft: &Raft, batch: Vec<Pending>, traced: bool) {
    let span = if traced {
        entry_span(&batch)
    } else {
        tracing::Span::none()
    };
    let now = now_millis();
    let (mut cmds, replies): (Vec<Command>, Vec<_>) =
        batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    cmds.iter_mut().for_each(|c| c.stamp(now));
    let (entry, shapes) = flatten(cmds);
    let outcome = raft
        .client_write(entry)
        .instrument(span.clone())
        .await
        .map(|resp| {
            span.record("log_index", resp.log_id.index());
            resp.data
        })
        .map_err(propose_error);
    match &outcome {
        Ok(_) => span.record("outcome", "committed"),
        Err(e) => span.record("outcome", tracing::field::display(e)),
    };
    match outcome {
        Ok(result) => {
            for (r, result) in replies.into_iter().zip(split(result, &shapes)) {
                let _ = r.send(Ok(result));
            }
        }
        Err(e) => {
            for r in replies {
                let _ = r.send(Err(e.clone()));
            }
        }
    }
}

/// The span of one proposed entry: a child of the first traced proposal's
/// span (a root when none is), following from the next few others. On a
/// follower it is the local attempt that ends `not leader` before the
/// proposal is forwarded.
fn entry_span(batch: &[Pending]) -> tracing::Span {
    let parent = batch.iter().find_map(|p| p.span.id());
    let span = tracing::info_span!(
        parent: parent.clone(),
        "raft.propose",
        proposals = batch.len(),
        log_index = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    if !span.is_disabled() {
        let mut linked = 0;
        for id in batch.iter().filter_map(|p| p.span.id()) {
            if linked == MAX_SPAN_LINKS {
                break;
            }
            if Some(&id) != parent.as_ref() {
                span.follows_from(id);
                linked += 1;
            }
        }
    }
    span
}

/// How many of an entry's commands one proposal contributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A single command: its result is one of the entry's.
    One,
    /// A `Batch` of this many: it gets their results as a `Batch`.
    Many(usize),
}

/// Lays proposals out as one log entry. A proposal that is itself a `Batch`
/// (commands that must commit together, such as a workflow step's journal
/// entries) contributes its commands in order, since batches do not nest
/// in the log; a lone single command is proposed bare.
fn flatten(cmds: Vec<Command>) -> (Command, Vec<Shape>) {
    let mut shapes = Vec::with_capacity(cmds.len());
    let mut flat = Vec::with_capacity(cmds.len());
    for cmd in cmds {
        match cmd {
            Command::Batch(inner) => {
                shapes.push(Shape::Many(inner.len()));
                flat.extend(inner);
            }
            one => {
                shapes.push(Shape::One);
                flat.push(one);
            }
        }
    }
    if shapes == [Shape::One]
        && let Some(only) = flat.pop()
    {
        return (only, shapes);
    }
    (Command::Batch(flat), shapes)
}

/// Hands each proposal of a [`flatten`]ed entry its share of the result.
fn split(result: ApplyResult, shapes: &[Shape]) -> Vec<ApplyResult> {
    if shapes == [Shape::One] {
        return vec![result];
    }
    let total: usize = shapes
        .iter()
        .map(|s| match s {
            Shape::One => 1,
            Shape::Many(n) => *n,
        })
        .sum();
    match result {
        Ok(Response::Batch(results)) if results.len() == total => {
            let mut results = results.into_iter();
            shapes
                .iter()
                .map(|shape| match shape {
                    Shape::One => results.next().unwrap_or_else(|| {
                        Err(swarm_claims::ClaimError::Invalid {
                            field: "batch".into(),
                            reason: "result missing".into(),
                        })
                    }),
                    Shape::Many(n) => Ok(Response::Batch(results.by_ref().take(*n).collect())),
                })
                .collect()
        }
        other => shapes.iter().map(|_| other.clone()).collect(),
    }
}

fn propose_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ClusterError::NotLeader {
            leader_id: f.leader_id,
            leader_addr: f.leader_node.map(|n| n.addr),
        },
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(f)) => {
            ClusterError::Unknown(format!("leader changed while the entry was in flight: {f}"))
        }
        RaftError::APIError(other) => ClusterError::Unavailable(other.to_string()),
        RaftError::Fatal(f) => ClusterError::Unknown(format!("raft stopped: {f}")),
    }
}

/// Owns one forwarding stream to the leader at `addr`: sends each command
/// from `rx` with an id, and hands each answer to the command's waiter.
/// When the stream cannot open, the commands are answered `Unavailable` if
/// no connection was made (they never left) and `Unknown` otherwise; when
/// it breaks, the commands sent on it are answered `Unknown` (the leader
/// may have applied them) and the ones not yet sent `Unavailable`. The task
/// then ends, and the next forward opens a new stream.
async fn forward_stream(
    mut client: swarm_proto::v1::raft_service_client::RaftServiceClient<tonic::transport::Channel>,
    addr: String,
    mut rx: mpsc::Receiver<Forward>,
) {
    let (out, out_rx) = mpsc::channel::<swarm_proto::v1::RaftMessage>(4096);
    let opened = client
        .propose_stream(tokio_stream::wrappers::ReceiverStream::new(out_rx))
        .await;
    let mut answers = match opened {
        Ok(r) => r.into_inner(),
        Err(status) => {
            rx.close();
            let never = crate::network::never_connected(&status);
            while let Some((_, reply)) = rx.recv().await {
                let msg = format!("forward to leader at {addr}: {status}");
                let _ = reply.send(Err(if never {
                    ClusterError::Unavailable(msg)
                } else {
                    ClusterError::Unknown(msg)
                }));
            }
            return;
        }
    };
    let mut waiting: HashMap<u64, oneshot::Sender<Result<Response, ClusterError>>> = HashMap::new();
    let mut next_id = 0u64;
    let why = loop {
        tokio::select! {
            forward = rx.recv() => {
                let Some((cmd, reply)) = forward else { break None };
                let id = next_id;
                next_id += 1;
                let data = match encode(&(id, &cmd)) {
                    Ok(data) => data,
                    Err(s) => {
                        let _ = reply.send(Err(ClusterError::Unavailable(s.message().to_string())));
                        continue;
                    }
                };
                if out.send(swarm_proto::v1::RaftMessage { data }).await.is_err() {
                    let _ = reply.send(Err(ClusterError::Unavailable(format!(
                        "the stream to the leader at {addr} closed"
                    ))));
                    break Some("the request side closed".to_string());
                }
                waiting.insert(id, reply);
            }
            answer = answers.next() => {
                let msg = match answer {
                    Some(Ok(msg)) => msg,
                    Some(Err(status)) => break Some(status.to_string()),
                    None => break Some("the leader ended the stream".to_string()),
                };
                match decode::<(u64, ForwardedAnswer)>(&msg.data) {
                    Ok((id, answer)) => {
                        if let Some(reply) = waiting.remove(&id) {
                            let _ = reply.send(from_wire(answer));
                        }
                    }
                    Err(s) => break Some(format!("undecodable answer: {}", s.message())),
                }
            }
        }
    };
    rx.close();
    let why = why.unwrap_or_else(|| "the proposer stopped".to_string());
    for (_, reply) in waiting {
        let _ = reply.send(Err(ClusterError::Unknown(format!(
            "forward to leader at {addr}: {why}"
        ))));
    }
    while let Some((_, reply)) = rx.recv().await {
        let _ = reply.send(Err(ClusterError::Unavailable(format!(
            "forward to leader at {addr}: {why}"
        ))));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use swarm_claims::State;

    use super::*;

    fn submit(id: &str) -> Command {
        Command::Submit(swarm_claims::command::Submit {
            id: id.into(),
            idempotency_key: String::new(),
            kind: "task".into(),
            priority: 0,
            requires: Vec::new(),
            payload: "{}".into(),
            max_attempts: 0,
            now: 1,
        })
    }

    fn ids(result: &ApplyResult) -> Vec<String> {
        match result {
            Ok(Response::Submitted { item, .. }) => vec![item.id.to_string()],
            Ok(Response::Batch(rs)) => rs.iter().flat_map(ids).collect(),
            Err(e) => vec![format!("error: {e}")],
            Ok(other) => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn a_lone_command_is_proposed_bare() {
        let (entry, shapes) = flatten(vec![submit("a")]);
        assert!(matches!(entry, Command::Submit(_)));
        let mut state = State::new();
        let out = split(swarm_claims::apply(&mut state, entry), &shapes);
        assert_eq!(out.iter().map(ids).collect::<Vec<_>>(), [["a"]]);
    }

    /// A proposal that is a batch joins a group-commit entry without nesting
    /// (which the state machine refuses) and gets back exactly its results.
    #[test]
    fn batch_proposals_are_flattened_into_the_entry_and_answered_in_order() {
        let (entry, shapes) = flatten(vec![
            submit("a"),
            Command::Batch(vec![submit("b"), submit("c")]),
            Command::Batch(Vec::new()),
            submit("d"),
        ]);
        let Command::Batch(flat) = &entry else {
            panic!("expected one batch entry, got {entry:?}");
        };
        assert_eq!(flat.len(), 4);
        assert!(flat.iter().all(|c| !matches!(c, Command::Batch(_))));
        let mut state = State::new();
        let out = split(swarm_claims::apply(&mut state, entry), &shapes);
        let got: Vec<Vec<String>> = out.iter().map(ids).collect();
        assert_eq!(
            got,
            vec![
                vec!["a".to_string()],
                vec!["b".to_string(), "c".to_string()],
                vec![],
                vec!["d".to_string()]
            ]
        );
        assert!(matches!(out[1], Ok(Response::Batch(_))));
    }
}
