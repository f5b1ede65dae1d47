//! `WorkService`: the client API. Every write is validated here, then
//! proposed through the node's group-commit proposer (which forwards to the
//! leader when this node follows). Reads are linearizable unless the caller
//! asks for the local replica.

use swarm_claims::command::{
    Cancel, Claim, Complete, Fail, Handoff, Pause, Release, Renew, Resume, Retry, Signal, Submit,
    SubmitControl,
};
use swarm_claims::request::SubmitWith;
use swarm_claims::{Request as Write, WorkItem};
use swarm_proto::MAX_MESSAGE_BYTES;
use swarm_proto::v1 as pb;
use swarm_proto::v1::work_service_server::WorkService;
use tonic::{Request, Response, Status};

use crate::convert::{
    claim_error_status, event_to_pb, item_to_pb, read_error_status, stats_to_pb, work_not_found,
    work_removed_while_watched,
};
use crate::listing::{ListQuery, check_fits, list_page};
use crate::node::NodeContext;

#[derive(Clone)]
pub struct WorkApi {
    ctx: NodeContext,
    /// Long-poll claims waiting for work ([`crate::long_poll`]).
    waiting: std::sync::Arc<crate::long_poll::ClaimLines>,
}

impl WorkApi {
    pub fn new(ctx: NodeContext) -> WorkApi {
        WorkApi {
            ctx,
            waiting: std::sync::Arc::default(),
        }
    }

    /// A claim that may wait up to `wait` for matching work (see
    /// [`crate::long_poll`]): proposed only once this replica shows some,
    /// again if another agent took it first, until the wait ends.
    async fn claim_waiting(
        &self,
        claim: Claim,
        wait: std::time::Duration,
    ) -> Result<Vec<WorkItem>, Status> {
        // Bad input is refused now, not after the wait.
        self.ctx
            .limits
            .check(&claim.clone().into_command())
            .map_err(|e| claim_error_status(&e))?;
        let deadline = tokio::time::Instant::now() + wait;
        let line = self.waiting.line(&claim.kinds, &claim.capabilities);
        let Ok(_turn) = tokio::time::timeout_at(deadline, line.lock()).await else {
            return Ok(Vec::new());
        };
        let mut applied = self.ctx.state.applied_index();
        loop {
            let ready = self
                .ctx
                .state
                .read(|s| s.has_claimable(&claim.kinds, &claim.capabilities));
            if ready {
                let granted = self.ctx.write(claim.clone()).await?;
                if !granted.is_empty() || tokio::time::Instant::now() >= deadline {
                    return Ok(granted);
                }
            }
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => {}
                // The wait is over, or the replica is gone (shutting down).
                _ => return Ok(Vec::new()),
            }
        }
    }

    /// For an agent token: refuses a call on item `id` held by an agent the
    /// token may not act as (as this replica knows the holder; the state
    /// machine still checks the fencing token).
    fn check_holder<T>(&self, request: &Request<T>, id: &str) -> Result<(), Status> {
        let Some(caller) = crate::auth::caller(request) else {
            return Ok(());
        };
        let holder = self.ctx.state.read(|s| {
            s.get(id)
                .and_then(|item| item.lease.as_ref())
                .map(|lease| lease.agent.to_string())
        });
        match holder {
            Some(agent) => caller.check_agent(&agent).map_err(|_| {
                Status::permission_denied(format!(
                    "work item {id:?} is held by agent {agent:?}, which this token may not act as"
                ))
            }),
            None => Ok(()),
        }
    }

    /// A write on one item, answered with the item after it.
    async fn write_item<R: Write<Answer = WorkItem>>(
        &self,
        request: R,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        let item = self.ctx.write(request).await?;
        Ok(Response::new(pb::WorkResponse {
            item: Some(item_to_pb(&item)),
        }))
    }
}

fn items(list: &[WorkItem]) -> Vec<pb::WorkItem> {
    list.iter().map(item_to_pb).collect()
}

/// The names the `signal` steps of a workflow item wait for (its steps and
/// its switches' branches'); none for an item that is not a workflow.
fn signal_names(item: &WorkItem) -> Vec<String> {
    fn collect(workflow: &swarm_reactor::Workflow, names: &mut Vec<String>) {
        for step in &workflow.spec().steps {
            if step.run == "signal"
                && let Some(name) = step.with.get("name").and_then(|n| n.as_str())
            {
                names.push(name.to_string());
            }
            for (_, branch, _) in workflow.branches(&step.name).unwrap_or_default() {
                collect(branch, names);
            }
        }
    }
    if *item.kind != *swarm_claims::WORKFLOW_KIND {
        return Vec::new();
    }
    let Ok((_, workflow)) = swarm_reactor::WorkflowPayload::load(&item.payload) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    collect(&workflow, &mut names);
    names
}

/// A JSON text as the state machine stores it: empty means `null`.
pub fn json_or_null(text: String) -> String {
    if text.trim().is_empty() {
        "null".to_string()
    } else {
        text
    }
}

/// Most dead letters one `RetryWork` with `all` puts back; call again for
/// more.
const MAX_RETRIED: usize = 10_000;

/// How often a watch re-reads an item that shows no change, in case an
/// apply notification was missed.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(500);

type EventStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::WorkEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl WorkService for WorkApi {
    type WatchWorkStream = EventStream;

    async fn watch_work(
        &self,
        request: Request<pb::WatchWorkRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let r = request.into_inner();
        self.ctx
            .limits
            .name("id", &r.id)
            .map_err(|e| claim_error_status(&e))?;
        self.ctx
            .read_barrier(pb::ReadConsistency::Linearizable as i32)
            .await?;
        let state = self.ctx.state.clone();
        let retention = self.ctx.config.retention;
        let start = state
            .read(|s| s.get(&r.id).map(WorkItem::events_recorded))
            .ok_or_else(|| work_not_found(&r.id, retention))?;
        // The sequence number of the next event to send.
        let mut next = if r.from_start { 0 } else { start };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let id = r.id;
        // Subscribed before the first read: no change falls between.
        let mut changes = state.item_changes(&id);
        tokio::spawn(async move {
            loop {
                let (batch, done) = state.read(|s| match s.get(&id) {
                    Some(item) => (
                        (0..item.event_count())
                            .filter(|&i| item.event_seq(i) >= next)
                            .filter_map(|i| event_to_pb(item, i))
                            .collect::<Vec<_>>(),
                        Some(item.status.is_terminal()),
                    ),
                    None => (Vec::new(), None),
                });
                // Only a finished item is ever removed: one that went
                // between two reads (this replica caught up past its end and
                // its removal at once) ended, and the watcher is told so.
                let Some(done) = done else {
                    let _ = tx
                        .send(Err(work_removed_while_watched(&id, retention)))
                        .await;
                    return;
                };
                for ev in batch {
                    if let Err(e) = check_fits(&id, &ev, MAX_MESSAGE_BYTES) {
                        let _ = tx.send(Err(read_error_status(&e))).await;
                        return;
                    }
                    next = ev.seq + 1;
                    if tx.send(Ok(ev)).await.is_err() {
                        return;
                    }
                }
                if done {
                    return;
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(WATCH_POLL) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let mut r = request.into_inner();
        if r.r#type == swarm_claims::WORKFLOW_KIND {
            let (mut payload, _) = swarm_reactor::WorkflowPayload::load(&r.payload_json)
                .map_err(Status::invalid_argument)?;
            // Runs of the workflow, wherever they happen, join this
            // request's trace, unless the submitter chose one.
            if payload.trace.is_none()
                && let Some(trace) = crate::telemetry::current_trace()
            {
                payload.trace = Some(trace);
                r.payload_json = payload
                    .to_json()
                    .map_err(|e| Status::internal(format!("encode the workflow payload: {e}")))?;
            }
        }
        let submit = Submit {
            id: uuid::Uuid::new_v4().to_string(),
            idempotency_key: r.idempotency_key,
            kind: r.r#type,
            priority: r.priority,
            requires: r.requires,
            payload: json_or_null(r.payload_json),
            max_attempts: r.max_attempts,
            now: 0,
        };
        let control = SubmitControl {
            not_before: r.not_before_ms,
            delay_ms: r.delay_ms,
            concurrency_key: r.concurrency_key,
        };
        // A plain submit stays the command it always was.
        let submitted = if control == SubmitControl::default() {
            self.ctx.write(submit).await?
        } else {
            self.ctx.write(SubmitWith(submit, control)).await?
        };
        Ok(Response::new(pb::SubmitResponse {
            item: Some(item_to_pb(&submitted.item)),
            created: submitted.created,
        }))
    }

    async fn claim(
        &self,
        request: Request<pb::ClaimRequest>,
    ) -> Result<Response<pb::ClaimResponse>, Status> {
        if let Some(caller) = crate::auth::caller(&request) {
            caller.check_agent(&request.get_ref().agent)?;
        }
        let r = request.into_inner();
        let lease_ms = if r.lease_ms == 0 {
            self.ctx.config.default_lease.as_millis() as u64
        } else {
            r.lease_ms
        };
        let claim = Claim {
            agent: r.agent,
            kinds: r.types,
            capabilities: r.capabilities,
            max: r.max.max(1),
            lease_ms,
            now: 0,
        };
        let wait = std::time::Duration::from_millis(u64::from(r.wait_ms))
            .min(self.ctx.config.max_claim_wait);
        let granted = if wait.is_zero() {
            self.ctx.write(claim).await?
        } else {
            self.claim_waiting(claim, wait).await?
        };
        Ok(Response::new(pb::ClaimResponse {
            items: items(&granted),
        }))
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewResponse>, Status> {
        if let Some(caller) = crate::auth::caller(&request) {
            caller.check_agent(&request.get_ref().agent)?;
        }
        let r = request.into_inner();
        let renewal = self
            .ctx
            .write(Renew {
                agent: r.agent,
                tokens: r.tokens,
                progress: r.progress,
                now: 0,
            })
            .await?;
        Ok(Response::new(pb::RenewResponse {
            renewed: items(&renewal.renewed),
            rejected: renewal
                .rejected
                .into_iter()
                .map(|(token, e)| pb::RenewFailure {
                    token,
                    error: e.to_string(),
                })
                .collect(),
        }))
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        self.check_holder(&request, &request.get_ref().id)?;
        let r = request.into_inner();
        self.write_item(Complete {
            id: r.id,
            token: r.token,
            result: json_or_null(r.result_json),
            now: 0,
        })
        .await
    }

    async fn fail(
        &self,
        request: Request<pb::FailRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        self.check_holder(&request, &request.get_ref().id)?;
        let r = request.into_inner();
        self.write_item(Fail {
            id: r.id,
            token: r.token,
            error: r.error,
            retry: r.retry,
            now: 0,
        })
        .await
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        self.check_holder(&request, &request.get_ref().id)?;
        let r = request.into_inner();
        self.write_item(Release {
            id: r.id,
            token: r.token,
            now: 0,
        })
        .await
    }

    async fn handoff(
        &self,
        request: Request<pb::HandoffRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        self.check_holder(&request, &request.get_ref().id)?;
        let r = request.into_inner();
        self.write_item(Handoff {
            id: r.id,
            token: r.token,
            to_agent: r.to_agent,
            now: 0,
        })
        .await
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        let r = request.into_inner();
        let reason = if r.reason.is_empty() {
            "cancelled by request".to_string()
        } else {
            r.reason
        };
        self.write_item(Cancel {
            id: r.id,
            reason,
            now: 0,
        })
        .await
    }

    async fn get_work(
        &self,
        request: Request<pb::GetWorkRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        let r = request.into_inner();
        self.ctx
            .limits
            .name("id", &r.id)
            .map_err(|e| claim_error_status(&e))?;
        self.ctx.read_barrier(r.consistency).await?;
        let item = self
            .ctx
            .state
            .read(|s| s.get(&r.id).map(item_to_pb))
            .ok_or_else(|| work_not_found(&r.id, self.ctx.config.retention))?;
        let answer = pb::WorkResponse { item: Some(item) };
        check_fits(&r.id, &answer, MAX_MESSAGE_BYTES).map_err(|e| read_error_status(&e))?;
        Ok(Response::new(answer))
    }

    async fn list_work(
        &self,
        request: Request<pb::ListWorkRequest>,
    ) -> Result<Response<pb::ListWorkResponse>, Status> {
        let r = request.into_inner();
        let query = ListQuery::from_pb(&r).map_err(|e| read_error_status(&e))?;
        self.ctx.read_barrier(r.consistency).await?;
        let page = self
            .ctx
            .state
            .read(|s| list_page(s, &query, MAX_MESSAGE_BYTES))
            .map_err(|e| read_error_status(&e))?;
        Ok(Response::new(page))
    }

    async fn retry_work(
        &self,
        request: Request<pb::RetryWorkRequest>,
    ) -> Result<Response<pb::RetryWorkResponse>, Status> {
        let r = request.into_inner();
        let retry = |id: String| Retry {
            id,
            reset_attempts: r.reset_attempts,
            now: 0,
        };
        match (r.id.is_empty(), r.all) {
            (false, false) => {
                let item = self.ctx.write(retry(r.id)).await?;
                return Ok(Response::new(pb::RetryWorkResponse {
                    items: vec![item_to_pb(&item)],
                }));
            }
            (true, true) => {}
            _ => {
                return Err(Status::invalid_argument(
                    "invalid id: give one item's id, or all (with an optional type) for every dead letter, not both",
                ));
            }
        }
        self.ctx
            .read_barrier(pb::ReadConsistency::Linearizable as i32)
            .await?;
        let ids: Vec<String> = self.ctx.state.read(|s| {
            s.items()
                .filter(|i| i.dead_letter() && (r.r#type.is_empty() || *i.kind == *r.r#type))
                .take(MAX_RETRIED)
                .map(|i| i.id.to_string())
                .collect()
        });
        // Proposed together, so the proposer commits them in few entries.
        let mut retried = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(256) {
            let writes = chunk.iter().map(|id| self.ctx.write(retry(id.clone())));
            for outcome in futures::future::join_all(writes).await {
                match outcome {
                    Ok(item) => retried.push(item_to_pb(&item)),
                    // Retried (or removed) by someone else meanwhile.
                    Err(e)
                        if matches!(
                            e.code(),
                            tonic::Code::FailedPrecondition | tonic::Code::NotFound
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Response::new(pb::RetryWorkResponse { items: retried }))
    }

    async fn pause_work(
        &self,
        request: Request<pb::PauseWorkRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        let r = request.into_inner();
        let reason = if r.reason.trim().is_empty() {
            "paused by request".to_string()
        } else {
            r.reason
        };
        self.write_item(Pause {
            id: r.id,
            reason,
            now: 0,
        })
        .await
    }

    async fn signal_work(
        &self,
        request: Request<pb::SignalWorkRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        let r = request.into_inner();
        self.ctx
            .limits
            .name("signal", &r.name)
            .map_err(|e| claim_error_status(&e))?;
        self.ctx
            .read_barrier(pb::ReadConsistency::Linearizable as i32)
            .await?;
        let item = self
            .ctx
            .state
            .read(|s| s.get(&r.id).cloned())
            .ok_or_else(|| work_not_found(&r.id, self.ctx.config.retention))?;
        if item.status.is_terminal() {
            return Err(Status::failed_precondition(format!(
                "work item {:?} is {}: it takes no signal",
                r.id, item.status
            )));
        }
        let names = signal_names(&item);
        if !names.contains(&r.name) {
            return Err(Status::invalid_argument(format!(
                "invalid signal: work item {:?} waits for no signal named {:?} ({})",
                r.id,
                r.name,
                match names.is_empty() {
                    true => "it has no signal step".to_string(),
                    false => format!("its signal steps wait for: {}", names.join(", ")),
                }
            )));
        }
        self.write_item(Signal {
            id: r.id,
            name: r.name,
            payload: json_or_null(r.payload_json),
            now: 0,
        })
        .await
    }

    async fn resume_work(
        &self,
        request: Request<pb::ResumeWorkRequest>,
    ) -> Result<Response<pb::WorkResponse>, Status> {
        self.write_item(Resume {
            id: request.into_inner().id,
            now: 0,
        })
        .await
    }

    async fn work_stats(
        &self,
        request: Request<pb::WorkStatsRequest>,
    ) -> Result<Response<pb::WorkStatsResponse>, Status> {
        let r = request.into_inner();
        self.ctx.read_barrier(r.consistency).await?;
        let now = swarm_raft::now_millis();
        let stats = self.ctx.state.read(|s| stats_to_pb(s, now));
        Ok(Response::new(stats))
    }
}
