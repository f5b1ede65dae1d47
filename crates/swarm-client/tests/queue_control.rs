//! Schedule and limit calls against fake nodes on real sockets: they follow
//! leader hints like the work calls, the named writes survive a timeout by
//! trying the next node, and a trigger (which submits an item) does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use swarm_client::proto::limit_service_server::{LimitService, LimitServiceServer};
use swarm_client::proto::schedule_service_server::{ScheduleService, ScheduleServiceServer};
use swarm_client::proto::*;
use swarm_client::{ClientConfig, ClientError, LEADER_ADDR_KEY, RetryPolicy, SwarmClient};
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

#[derive(Clone)]
enum Behaviour {
    /// Answers, knowing one schedule (`nightly`) and one limit (`db`).
    Serve,
    /// Refuses every call, naming `leader`.
    Redirect(String),
    /// Never answers in time.
    Hang,
}

#[derive(Clone)]
struct FakeNode {
    behaviour: Behaviour,
    calls: Arc<AtomicUsize>,
}

impl FakeNode {
    /// Counts the call and fails it the way the behaviour says.
    async fn admit(&self) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match &self.behaviour {
            Behaviour::Serve => Ok(()),
            Behaviour::Redirect(leader) => {
                let mut status = Status::unavailable("not leader");
                status.metadata_mut().insert(
                    LEADER_ADDR_KEY,
                    MetadataValue::try_from(leader.as_str()).unwrap(),
                );
                Err(status)
            }
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Err(Status::internal("too late"))
            }
        }
    }
}

fn schedule(name: &str) -> Schedule {
    Schedule {
        name: name.into(),
        cron: "0 3 * * *".into(),
        r#type: "backup".into(),
        next_fire_ms: 1_700_000_000_000,
        ..Default::default()
    }
}

fn known(name: &str) -> Result<Schedule, Status> {
    if name == "nightly" {
        Ok(schedule(name))
    } else {
        Err(Status::not_found(format!("schedule {name:?} not found")))
    }
}

fn answer(s: Schedule) -> Result<Response<ScheduleResponse>, Status> {
    Ok(Response::new(ScheduleResponse { schedule: Some(s) }))
}

#[tonic::async_trait]
impl ScheduleService for FakeNode {
    async fn create_schedule(
        &self,
        r: Request<CreateScheduleRequest>,
    ) -> Result<Response<ScheduleResponse>, Status> {
        self.admit().await?;
        let r = r.into_inner();
        answer(Schedule {
            cron: r.cron,
            r#type: r.r#type,
            ..schedule(&r.name)
        })
    }
    async fn get_schedule(
        &self,
        r: Request<ScheduleName>,
    ) -> Result<Response<ScheduleResponse>, Status> {
        self.admit().await?;
        answer(known(&r.into_inner().name)?)
    }
    async fn list_schedules(
        &self,
        _: Request<ListSchedulesRequest>,
    ) -> Result<Response<ListSchedulesResponse>, Status> {
        self.admit().await?;
        Ok(Response::new(ListSchedulesResponse {
            schedules: vec![schedule("nightly")],
        }))
    }
    async fn pause_schedule(
        &self,
        r: Request<ScheduleName>,
    ) -> Result<Response<ScheduleResponse>, Status> {
        self.admit().await?;
        let s = known(&r.into_inner().name)?;
        answer(Schedule { paused: true, ..s })
    }
    async fn resume_schedule(
        &self,
        r: Request<ScheduleName>,
    ) -> Result<Response<ScheduleResponse>, Status> {
        self.admit().await?;
        answer(known(&r.into_inner().name)?)
    }
    async fn delete_schedule(
        &self,
        r: Request<ScheduleName>,
    ) -> Result<Response<DeleteResponse>, Status> {
        self.admit().await?;
        Ok(Response::new(DeleteResponse {
            deleted: known(&r.into_inner().name).is_ok(),
        }))
    }
    async fn trigger_schedule(
        &self,
        r: Request<ScheduleName>,
    ) -> Result<Response<TriggerScheduleResponse>, Status> {
        self.admit().await?;
        let s = known(&r.into_inner().name)?;
        Ok(Response::new(TriggerScheduleResponse {
            schedule: Some(s),
            item: Some(WorkItem {
                id: "w1".into(),
                r#type: "backup".into(),
                ..Default::default()
            }),
        }))
    }
}

#[tonic::async_trait]
impl LimitService for FakeNode {
    async fn set_limit(
        &self,
        r: Request<SetLimitRequest>,
    ) -> Result<Response<LimitResponse>, Status> {
        self.admit().await?;
        let r = r.into_inner();
        Ok(Response::new(LimitResponse {
            limit: Some(Limit {
                key: r.key,
                max_running: r.max_running,
                rate: r.rate,
                burst: r.burst,
                ..Default::default()
            }),
        }))
    }
    async fn get_limit(&self, r: Request<LimitKey>) -> Result<Response<LimitResponse>, Status> {
        self.admit().await?;
        let key = r.into_inner().key;
        if key != "db" {
            return Err(Status::not_found(format!("limit {key:?} not found")));
        }
        Ok(Response::new(LimitResponse {
            limit: Some(Limit {
                key,
                max_running: 2,
                ..Default::default()
            }),
        }))
    }
    async fn list_limits(
        &self,
        _: Request<ListLimitsRequest>,
    ) -> Result<Response<ListLimitsResponse>, Status> {
        self.admit().await?;
        Ok(Response::new(ListLimitsResponse {
            limits: vec![Limit {
                key: "db".into(),
                ..Default::default()
            }],
        }))
    }
    async fn delete_limit(&self, r: Request<LimitKey>) -> Result<Response<DeleteResponse>, Status> {
        self.admit().await?;
        Ok(Response::new(DeleteResponse {
            deleted: r.into_inner().key == "db",
        }))
    }
}

/// A fake node on 127.0.0.1:0; returns its address and call counter.
async fn spawn(behaviour: Behaviour) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let calls = Arc::new(AtomicUsize::new(0));
    let node = FakeNode {
        behaviour,
        calls: calls.clone(),
    };
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(ScheduleServiceServer::new(node.clone()))
            .add_service(LimitServiceServer::new(node))
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
    });
    (addr, calls)
}

fn client(endpoints: &[&str]) -> SwarmClient {
    let config = ClientConfig {
        request_timeout: Duration::from_millis(300),
        retry: RetryPolicy {
            rounds: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            total_timeout: Duration::from_secs(5),
        },
        ..ClientConfig::default()
    };
    SwarmClient::connect_with(endpoints.iter().map(|s| s.to_string()).collect(), config).unwrap()
}

fn calls(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

#[tokio::test]
async fn schedule_and_limit_calls_follow_the_leader_hint() {
    let (leader, leader_calls) = spawn(Behaviour::Serve).await;
    let (follower, follower_calls) = spawn(Behaviour::Redirect(leader.clone())).await;
    let c = client(&[&follower]);

    let created = c
        .create_schedule(CreateScheduleRequest {
            name: "hourly".into(),
            cron: "@hourly".into(),
            r#type: "report".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (created.name.as_str(), created.cron.as_str()),
        ("hourly", "@hourly")
    );
    assert_eq!((calls(&follower_calls), calls(&leader_calls)), (1, 1));

    // The leader is remembered: the next calls go straight to it.
    let limit = c
        .set_limit(SetLimitRequest {
            key: "db".into(),
            max_running: 3,
            rate: "10/s".into(),
            burst: 0,
        })
        .await
        .unwrap();
    assert_eq!((limit.max_running, limit.rate.as_str()), (3, "10/s"));
    assert!(c.pause_schedule("nightly").await.unwrap().paused);
    assert_eq!(c.list_schedules(Default::default()).await.unwrap().len(), 1);
    assert_eq!(
        c.list_limits(Default::default()).await.unwrap()[0].key,
        "db"
    );
    assert_eq!(calls(&follower_calls), 1);
    assert_eq!(calls(&leader_calls), 5);
}

#[tokio::test]
async fn named_writes_move_on_after_a_timeout() {
    let (hung, hung_calls) = spawn(Behaviour::Hang).await;
    let (live, live_calls) = spawn(Behaviour::Serve).await;

    let c = client(&[&hung, &live]);
    assert!(c.delete_schedule("nightly").await.unwrap());
    assert_eq!((calls(&hung_calls), calls(&live_calls)), (1, 1));

    let c = client(&[&hung, &live]);
    assert_eq!(c.resume_schedule("nightly").await.unwrap().name, "nightly");
    let c = client(&[&hung, &live]);
    assert!(!c.delete_limit("nope").await.unwrap());
    assert_eq!((calls(&hung_calls), calls(&live_calls)), (3, 3));
}

#[tokio::test]
async fn a_trigger_stops_after_a_timeout_with_outcome_unknown() {
    let (hung, hung_calls) = spawn(Behaviour::Hang).await;
    let (live, live_calls) = spawn(Behaviour::Serve).await;
    let c = client(&[&hung, &live]);
    let err = c.trigger_schedule("nightly").await.unwrap_err();
    assert!(matches!(err, ClientError::OutcomeUnknown { .. }), "{err}");
    assert_eq!((calls(&hung_calls), calls(&live_calls)), (1, 0));

    // Refused without being acted on: any call moves on, a trigger too.
    let (redirect, _) = spawn(Behaviour::Redirect(live.clone())).await;
    let fired = client(&[&redirect])
        .trigger_schedule("nightly")
        .await
        .unwrap();
    assert_eq!(fired.item.map(|i| i.id).as_deref(), Some("w1"));
}

#[tokio::test]
async fn unknown_names_are_not_found() {
    let (live, live_calls) = spawn(Behaviour::Serve).await;
    let c = client(&[&live]);
    let err = c.get_schedule("weekly").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.to_string(), r#"schedule "weekly" not found"#);
    let err = c.get_limit("queue").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(c.get_limit("db").await.unwrap().max_running, 2);
    assert_eq!(calls(&live_calls), 3);
}
