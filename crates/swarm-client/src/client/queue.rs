//! The calls of `ScheduleService` (cron schedules) and `LimitService`
//! (limits on concurrency keys), through the same call loop as the work
//! calls. Every one is repeatable but `trigger_schedule`, which submits an
//! item each time it is applied.

use swarm_proto::MAX_MESSAGE_BYTES;
use swarm_proto::v1::limit_service_client::LimitServiceClient;
use swarm_proto::v1::schedule_service_client::ScheduleServiceClient;
use swarm_proto::v1::{
    CreateScheduleRequest, Limit, LimitKey, LimitResponse, ListLimitsRequest, ListSchedulesRequest,
    Schedule, ScheduleName, ScheduleResponse, SetLimitRequest, TriggerScheduleResponse,
};
use tonic::transport::Channel;

use super::SwarmClient;
use crate::ClientError;
use crate::retry::Rpc;

impl SwarmClient {
    // ----- ScheduleService -----

    /// Creates a cron schedule. Creating the same schedule again (same name
    /// and spec) answers as the first create did, so the call is retried
    /// freely; a different spec under the same name is refused.
    pub async fn create_schedule(
        &self,
        req: CreateScheduleRequest,
    ) -> Result<Schedule, ClientError> {
        let resp = self
            .call(Rpc::CreateSchedule, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { schedules(ch).create_schedule(req).await }
            })
            .await;
        schedule_of(resp?, "create schedule")
    }

    /// Reads one schedule (a linearizable read).
    pub async fn get_schedule(&self, name: &str) -> Result<Schedule, ClientError> {
        let resp = self
            .call(Rpc::GetSchedule, |ch, t| {
                let req = self.request(schedule_name(name), t);
                async move { schedules(ch).get_schedule(req).await }
            })
            .await;
        schedule_of(resp?, "get schedule")
    }

    /// Every schedule, in name order.
    pub async fn list_schedules(
        &self,
        req: ListSchedulesRequest,
    ) -> Result<Vec<Schedule>, ClientError> {
        let resp = self
            .call(Rpc::ListSchedules, |ch, t| {
                let req = self.request(req, t);
                async move { schedules(ch).list_schedules(req).await }
            })
            .await?;
        Ok(resp.schedules)
    }

    /// Stops a schedule firing until it is resumed. Pausing a paused
    /// schedule changes nothing.
    pub async fn pause_schedule(&self, name: &str) -> Result<Schedule, ClientError> {
        let resp = self
            .call(Rpc::PauseSchedule, |ch, t| {
                let req = self.request(schedule_name(name), t);
                async move { schedules(ch).pause_schedule(req).await }
            })
            .await;
        schedule_of(resp?, "pause schedule")
    }

    /// Lets a paused schedule fire again, from its next fire time after
    /// now (the fire times it was paused for are not made up).
    pub async fn resume_schedule(&self, name: &str) -> Result<Schedule, ClientError> {
        let resp = self
            .call(Rpc::ResumeSchedule, |ch, t| {
                let req = self.request(schedule_name(name), t);
                async move { schedules(ch).resume_schedule(req).await }
            })
            .await;
        schedule_of(resp?, "resume schedule")
    }

    /// Deletes a schedule; `false` when there was none by that name. After
    /// an ambiguous attempt the call is repeated, and the repeat of a
    /// delete that was applied answers `false` too.
    pub async fn delete_schedule(&self, name: &str) -> Result<bool, ClientError> {
        let resp = self
            .call(Rpc::DeleteSchedule, |ch, t| {
                let req = self.request(schedule_name(name), t);
                async move { schedules(ch).delete_schedule(req).await }
            })
            .await?;
        Ok(resp.deleted)
    }

    /// Fires a schedule now, once, without moving its next fire time. The
    /// answer's `item` is unset when the fire was skipped (overlap). Not
    /// retried after an ambiguous failure: each repeat would submit one
    /// more item.
    pub async fn trigger_schedule(
        &self,
        name: &str,
    ) -> Result<TriggerScheduleResponse, ClientError> {
        let resp = self
            .call(Rpc::TriggerSchedule, |ch, t| {
                let req = self.request(schedule_name(name), t);
                async move { schedules(ch).trigger_schedule(req).await }
            })
            .await?;
        if resp.schedule.is_none() {
            return Err(missing_schedule("trigger schedule"));
        }
        Ok(resp)
    }

    // ----- LimitService -----

    /// Sets (replaces) the limit on a concurrency key and returns it.
    /// Setting the same limit again changes nothing, so the call is retried
    /// freely.
    pub async fn set_limit(&self, req: SetLimitRequest) -> Result<Limit, ClientError> {
        let resp = self
            .call(Rpc::SetLimit, |ch, t| {
                let req = self.request(req.clone(), t);
                async move { limits(ch).set_limit(req).await }
            })
            .await;
        limit_of(resp?, "set limit")
    }

    /// Reads the limit on one key, with its running and pending counts.
    pub async fn get_limit(&self, key: &str) -> Result<Limit, ClientError> {
        let resp = self
            .call(Rpc::GetLimit, |ch, t| {
                let req = self.request(limit_key(key), t);
                async move { limits(ch).get_limit(req).await }
            })
            .await;
        limit_of(resp?, "get limit")
    }

    /// Every limit, in key order.
    pub async fn list_limits(&self, req: ListLimitsRequest) -> Result<Vec<Limit>, ClientError> {
        let resp = self
            .call(Rpc::ListLimits, |ch, t| {
                let req = self.request(req, t);
                async move { limits(ch).list_limits(req).await }
            })
            .await?;
        Ok(resp.limits)
    }

    /// Deletes the limit on a key (its items are then claimed without
    /// one); `false` when the key had none. Repeated after an ambiguous
    /// attempt, like [`SwarmClient::delete_schedule`].
    pub async fn delete_limit(&self, key: &str) -> Result<bool, ClientError> {
        let resp = self
            .call(Rpc::DeleteLimit, |ch, t| {
                let req = self.request(limit_key(key), t);
                async move { limits(ch).delete_limit(req).await }
            })
            .await?;
        Ok(resp.deleted)
    }
}

fn schedules(channel: Channel) -> ScheduleServiceClient<Channel> {
    ScheduleServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn limits(channel: Channel) -> LimitServiceClient<Channel> {
    LimitServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

fn schedule_name(name: &str) -> ScheduleName {
    ScheduleName {
        name: name.to_string(),
    }
}

fn limit_key(key: &str) -> LimitKey {
    LimitKey {
        key: key.to_string(),
    }
}

fn schedule_of(resp: ScheduleResponse, call: &str) -> Result<Schedule, ClientError> {
    resp.schedule.ok_or_else(|| missing_schedule(call))
}

fn missing_schedule(call: &str) -> ClientError {
    ClientError::MalformedResponse(format!("{call} response has no schedule"))
}

fn limit_of(resp: LimitResponse, call: &str) -> Result<Limit, ClientError> {
    resp.limit
        .ok_or_else(|| ClientError::MalformedResponse(format!("{call} response has no limit")))
}
