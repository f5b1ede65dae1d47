//! `ScheduleService` and `LimitService`: cron schedules and concurrency-key
//! limits, kept in the replicated state machine. Cron expressions and time
//! zones are checked and evaluated here, at the edge ([`crate::cron`]); the
//! leader fires due schedules ([`fire_due_schedules`]).

use std::time::Duration;

use swarm_claims::command::{
    CreateSchedule, DeleteLimit, DeleteSchedule, FireSchedule, PauseSchedule, SetLimit,
};
use swarm_claims::{ClaimError, Overlap, Rate, Schedule, ScheduleSpec, State};
use swarm_proto::v1 as pb;
use swarm_proto::v1::limit_service_server::LimitService;
use swarm_proto::v1::schedule_service_server::ScheduleService;
use tonic::{Request, Response, Status};

use crate::convert::{claim_error_status, item_to_pb};
use crate::cron::CronRule;
use crate::node::NodeContext;
use swarm_raft::now_millis;

#[derive(Clone)]
pub struct QueueApi {
    ctx: NodeContext,
}

impl QueueApi {
    pub fn new(ctx: NodeContext) -> QueueApi {
        QueueApi { ctx }
    }

    /// The schedule's rule, as it was checked when the schedule was made.
    fn rule_of(&self, name: &str) -> Result<CronRule, Status> {
        let spec = self
            .ctx
            .state
            .read(|s| s.schedule(name).map(|sc| sc.spec.clone()))
            .ok_or_else(|| unknown_schedule(name))?;
        CronRule::parse(&spec.cron, &spec.timezone).map_err(|e| Status::internal(e.to_string()))
    }

    fn schedule_answer(schedule: &Schedule) -> Response<pb::ScheduleResponse> {
        Response::new(pb::ScheduleResponse {
            schedule: Some(schedule_to_pb(schedule)),
        })
    }
}

fn unknown_schedule(name: &str) -> Status {
    claim_error_status(&ClaimError::Unknown {
        what: "schedule".into(),
        name: name.to_string(),
    })
}

fn invalid(field: &str, reason: impl Into<String>) -> Status {
    claim_error_status(&ClaimError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    })
}

pub fn schedule_to_pb(s: &Schedule) -> pb::Schedule {
    let spec = &s.spec;
    pb::Schedule {
        name: spec.name.clone(),
        cron: spec.cron.clone(),
        timezone: spec.timezone.clone(),
        r#type: spec.kind.clone(),
        payload_json: spec.payload.clone(),
        priority: spec.priority,
        requires: spec.requires.clone(),
        max_attempts: spec.max_attempts,
        concurrency_key: spec.concurrency_key.clone(),
        overlap: match spec.overlap {
            Overlap::Skip => pb::Overlap::Skip,
            Overlap::Allow => pb::Overlap::Allow,
        } as i32,
        paused: s.paused,
        next_fire_ms: s.next_fire,
        created_at_ms: s.created_at,
        last_fire_ms: s.last_fire.unwrap_or(0),
        last_item_id: s.last_item.clone().unwrap_or_default(),
        fires: s.fires,
        skipped: s.skipped,
        missed: s.missed,
    }
}

/// A rate as an operator writes it: `10/s`, `600/m`, `5/90s`, `100/1h`.
pub fn parse_rate(text: &str, burst: u32) -> Result<Rate, Status> {
    let bad = |why: &str| {
        invalid(
            "rate",
            format!("{text:?} {why}: write COUNT/PERIOD, such as 10/s, 600/m or 5/90s"),
        )
    };
    let (count, period) = text.split_once('/').ok_or_else(|| bad("has no /"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| bad("does not start with a whole number"))?;
    let period = period.trim();
    let per_ms = match period {
        "s" | "sec" | "second" => 1_000,
        "m" | "min" | "minute" => 60_000,
        "h" | "hour" => 3_600_000,
        "d" | "day" => 86_400_000,
        other => {
            let d = humantime::parse_duration(other).map_err(|_| bad("has no unit of time"))?;
            u64::try_from(d.as_millis()).map_err(|_| bad("has too long a period"))?
        }
    };
    if count == 0 || per_ms == 0 {
        return Err(bad("must allow at least 1 per a period longer than 0ms"));
    }
    Ok(Rate {
        count,
        per_ms,
        burst: if burst == 0 { count } else { burst },
    })
}

/// A rate as [`parse_rate`] reads it.
pub fn rate_text(rate: &Rate) -> String {
    let period = match rate.per_ms {
        1_000 => "s".to_string(),
        60_000 => "m".to_string(),
        3_600_000 => "h".to_string(),
        86_400_000 => "d".to_string(),
        ms => humantime::format_duration(Duration::from_millis(ms))
            .to_string()
            .replace(' ', ""),
    };
    format!("{}/{period}", rate.count)
}

pub fn limit_to_pb(state: &State, key: &str, now: u64) -> Option<pb::Limit> {
    Some(limit_pb(state, key, state.limit(key)?, now))
}

/// `limit` on `key`, with the running and pending counts `state` shows.
fn limit_pb(state: &State, key: &str, limit: &swarm_claims::KeyLimit, now: u64) -> pb::Limit {
    let counts = state.counts().key(key);
    pb::Limit {
        key: key.to_string(),
        max_running: limit.max_running,
        rate: limit.rate.as_ref().map(rate_text).unwrap_or_default(),
        burst: limit.rate.map_or(0, |r| r.burst),
        running: counts.claimed,
        pending: counts.pending,
        tokens: limit.rate.map_or(0, |_| limit.tokens_at(now)),
    }
}

#[tonic::async_trait]
impl ScheduleService for QueueApi {
    async fn create_schedule(
        &self,
        request: Request<pb::CreateScheduleRequest>,
    ) -> Result<Response<pb::ScheduleResponse>, Status> {
        let r = request.into_inner();
        let rule =
            CronRule::parse(&r.cron, &r.timezone).map_err(|e| invalid_text(&e.to_string()))?;
        let next_fire = rule
            .next_after(now_millis())
            .ok_or_else(|| invalid("cron", format!("{:?} never fires again", r.cron)))?;
        let overlap = match pb::Overlap::try_from(r.overlap) {
            Ok(pb::Overlap::Skip) => Overlap::Skip,
            Ok(pb::Overlap::Allow) => Overlap::Allow,
            Err(_) => return Err(invalid("overlap", format!("unknown value {}", r.overlap))),
        };
        let payload = if r.payload_json.trim().is_empty() {
            "null".to_string()
        } else {
            r.payload_json
        };
        if r.r#type == swarm_claims::WORKFLOW_KIND {
            swarm_reactor::WorkflowPayload::load(&payload).map_err(Status::invalid_argument)?;
        }
        let spec = ScheduleSpec {
            name: r.name,
            cron: r.cron,
            timezone: r.timezone,
            kind: r.r#type,
            priority: r.priority,
            requires: r.requires,
            payload,
            max_attempts: r.max_attempts,
            concurrency_key: r.concurrency_key,
            overlap,
        };
        let schedule = self
            .ctx
            .write(CreateSchedule {
                spec,
                next_fire,
                now: 0,
            })
            .await?;
        Ok(Self::schedule_answer(&schedule))
    }

    async fn get_schedule(
        &self,
        request: Request<pb::ScheduleName>,
    ) -> Result<Response<pb::ScheduleResponse>, Status> {
        let name = request.into_inner().name;
        self.ctx
            .read_barrier(pb::ReadConsistency::Linearizable as i32)
            .await?;
        let schedule = self
            .ctx
            .state
            .read(|s| s.schedule(&name).cloned())
            .ok_or_else(|| unknown_schedule(&name))?;
        Ok(Self::schedule_answer(&schedule))
    }

    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        self.ctx.read_barrier(request.get_ref().consistency).await?;
        let schedules = self
            .ctx
            .state
            .read(|s| s.schedules().map(schedule_to_pb).collect());
        Ok(Response::new(pb::ListSchedulesResponse { schedules }))
    }

    async fn pause_schedule(
        &self,
        request: Request<pb::ScheduleName>,
    ) -> Result<Response<pb::ScheduleResponse>, Status> {
        let name = request.into_inner().name;
        let schedule = self
            .ctx
            .write(PauseSchedule {
                name,
                paused: true,
                next_fire: 0,
                now: 0,
            })
            .await?;
        Ok(Self::schedule_answer(&schedule))
    }

    async fn resume_schedule(
        &self,
        request: Request<pb::ScheduleName>,
    ) -> Result<Response<pb::ScheduleResponse>, Status> {
        let name = request.into_inner().name;
        self.ctx
            .read_barrier(pb::ReadConsistency::Linearizable as i32)
            .await?;
        let next_fire = self
            .rule_of(&name)?
            .next_after(now_millis())
            .ok_or_else(|| invalid("cron", "the schedule never fires again"))?;
        let schedule = self
            .ctx
            .write(PauseSchedule {
                name,
                paused: false,
                next_fire,
                now: 0,
            })
            .await?;
        Ok(Self::schedule_answer(&schedule))
    }

    async fn delete_schedule(
        &self,
        request: Request<pb::ScheduleName>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let name = request.into_inner().name;
        let deleted = self.ctx.write(DeleteSchedule { name, now: 0 }).await?;
        Ok(Response::new(pb::DeleteResponse { deleted }))
    }

    async fn trigger_schedule(
        &self,
        request: Request<pb::ScheduleName>,
    ) -> Result<Response<pb::TriggerScheduleResponse>, Status> {
        let name = request.into_inner().name;
        let fired = self
            .ctx
            .write(FireSchedule {
                name,
                fire_at: now_millis(),
                next_fire: 0,
                item_id: uuid::Uuid::new_v4().to_string(),
                manual: true,
                missed: 0,
                now: 0,
            })
            .await?;
        Ok(Response::new(pb::TriggerScheduleResponse {
            schedule: Some(schedule_to_pb(&fired.schedule)),
            item: fired.item.as_ref().map(item_to_pb),
        }))
    }
}

/// A cron error already names its field (`invalid cron: ...`).
fn invalid_text(text: &str) -> Status {
    Status::invalid_argument(text.to_string())
}

#[tonic::async_trait]
impl LimitService for QueueApi {
    async fn set_limit(
        &self,
        request: Request<pb::SetLimitRequest>,
    ) -> Result<Response<pb::LimitResponse>, Status> {
        let r = request.into_inner();
        let rate = match r.rate.trim() {
            "" if r.burst > 0 => return Err(invalid("burst", "needs a rate")),
            "" => None,
            text => Some(parse_rate(text, r.burst)?),
        };
        let key = r.key.clone();
        // The limit as the leader applied it; the counts as this replica
        // shows them.
        let set = self
            .ctx
            .write(SetLimit {
                key: r.key,
                max_running: r.max_running,
                rate,
                now: 0,
            })
            .await?;
        let limit = self
            .ctx
            .state
            .read(|s| limit_pb(s, &key, &set, now_millis()));
        Ok(Response::new(pb::LimitResponse { limit: Some(limit) }))
    }

    async fn get_limit(
        &self,
        request: Request<pb::LimitKey>,
    ) -> Result<Response<pb::LimitResponse>, Status> {
        let key = request.into_inner().key;
        self.ctx
            .read_barrier(pb::ReadConsistency::Linearizable as i32)
            .await?;
        let limit = self
            .ctx
            .state
            .read(|s| limit_to_pb(s, &key, now_millis()))
            .ok_or_else(|| {
                claim_error_status(&ClaimError::Unknown {
                    what: "limit on concurrency key".into(),
                    name: key.clone(),
                })
            })?;
        Ok(Response::new(pb::LimitResponse { limit: Some(limit) }))
    }

    async fn list_limits(
        &self,
        request: Request<pb::ListLimitsRequest>,
    ) -> Result<Response<pb::ListLimitsResponse>, Status> {
        self.ctx.read_barrier(request.get_ref().consistency).await?;
        let now = now_millis();
        let limits = self.ctx.state.read(|s| {
            s.limits()
                .filter_map(|(key, _)| limit_to_pb(s, key, now))
                .collect()
        });
        Ok(Response::new(pb::ListLimitsResponse { limits }))
    }

    async fn delete_limit(
        &self,
        request: Request<pb::LimitKey>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let key = request.into_inner().key;
        let deleted = self.ctx.write(DeleteLimit { key, now: 0 }).await?;
        Ok(Response::new(pb::DeleteResponse { deleted }))
    }
}

/// The leader's duty for schedules: proposes a fire for every unpaused
/// schedule whose next fire time has come, with the fire time after now
/// as the next one. Fire times that passed while nothing fired them (the
/// cluster was down, or had no leader) are folded into this one fire and
/// counted as missed. A fire applies only while its fire time is still the
/// schedule's next, so a fire proposed twice (by a leader deposed in
/// between, say) submits once.
pub async fn fire_due_schedules(ctx: &NodeContext) {
    let now = now_millis();
    let due: Vec<(String, String, String, u64)> = ctx.state.read(|s| {
        s.schedules()
            .filter(|sc| !sc.paused && sc.next_fire <= now)
            .map(|sc| {
                (
                    sc.spec.name.clone(),
                    sc.spec.cron.clone(),
                    sc.spec.timezone.clone(),
                    sc.next_fire,
                )
            })
            .collect()
    });
    for (name, cron, timezone, fire_at) in due {
        let rule = match CronRule::parse(&cron, &timezone) {
            Ok(rule) => rule,
            Err(e) => {
                tracing::error!(schedule = %name, error = %e, "schedule cannot be evaluated");
                continue;
            }
        };
        let Some(next_fire) = rule.next_after(now.max(fire_at)) else {
            tracing::warn!(schedule = %name, "schedule never fires again");
            continue;
        };
        let fire = FireSchedule {
            name: name.clone(),
            fire_at,
            next_fire,
            item_id: uuid::Uuid::new_v4().to_string(),
            manual: false,
            missed: rule.count_between(fire_at, now),
            now: 0,
        };
        match ctx.cluster.request_if_leader(fire).await {
            Ok(fired) => match &fired.item {
                Some(item) => {
                    tracing::info!(schedule = %name, fire_at, item = %item.id, "schedule fired")
                }
                None => {
                    tracing::info!(schedule = %name, fire_at, "schedule fire skipped: the last item is still running")
                }
            },
            Err(e) => tracing::debug!(schedule = %name, error = %e, "schedule fire not committed"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn rates_read_and_print_alike() {
        for (text, count, per_ms) in [
            ("10/s", 10, 1_000),
            ("600/m", 600, 60_000),
            ("5/90s", 5, 90_000),
            ("100/1h", 100, 3_600_000),
        ] {
            let rate = parse_rate(text, 0).unwrap();
            assert_eq!(
                (rate.count, rate.per_ms, rate.burst),
                (count, per_ms, count)
            );
        }
        assert_eq!(rate_text(&parse_rate("10/s", 20).unwrap()), "10/s");
        assert_eq!(rate_text(&parse_rate("5/90s", 0).unwrap()), "5/1m30s");
    }

    #[test]
    fn a_bad_rate_names_the_field() {
        for bad in ["10", "10/", "x/s", "10/parsec", "0/s"] {
            let e = parse_rate(bad, 0).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(e.message().starts_with("invalid rate:"), "{}", e.message());
        }
    }
}
