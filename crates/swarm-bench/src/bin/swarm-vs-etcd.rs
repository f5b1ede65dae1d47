//! `swarm-vs-etcd`: the same claim workload against Swarm and against etcd,
//! driven by `scripts/bench.sh`. Every subcommand prints one JSON object on
//! stdout; progress and errors go to stderr.
//!
//! - `claims`: N clients, each on its own HTTP/2 connection, looping
//!   submit → claim → complete for a duration; claims/s and latency
//!   percentiles from HDR histograms.
//! - `failover`: the same loop from a few clients as background load,
//!   SIGKILL of a given PID (the leader), and the time until the first write
//!   started after the kill is acknowledged.
//! - `fill`: submit and claim N items with long leases, for the memory figure.
//! - `workflows`: five-step no-op workflows started at a steady rate (Swarm
//!   only): completed/s and submit-to-completed latency.
//!
//! `--system ceiling` runs `claims` against `swarm-ceiling` (the same calls
//! and state machine from one process's memory: no Raft, no disk), the
//! ceiling of the bench's table.
//!
//! The etcd side (`--system etcd`) needs the `etcd` cargo feature: the
//! `etcd-client` crate over our own tonic channel (building that crate needs
//! a system `protoc`); without it only `--system swarm` works.
//!
//! etcd equivalents of the three calls, one long-lived lease per client:
//! submit = `Put(work/<id>)`; claim = `Txn(create_revision(claim/<id>) == 0 →
//! Put(claim/<id>, agent, lease))`; complete = `Txn(value(claim/<id>) ==
//! agent → Delete(claim/<id>), Put(done/<id>))`. Swarm's claim takes any
//! pending item of the type; an etcd client claims the items it submitted
//! itself, so clients never contend for one key.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use serde_json::json;
use swarm_bench::client::SwarmClaimer;
use swarm_proto::v1::SubmitRequest;
use swarm_proto::v1::work_service_client::WorkServiceClient;
use tonic::transport::{Channel, Endpoint};

#[derive(Parser)]
#[command(
    name = "swarm-vs-etcd",
    about = "the same claim workload against Swarm and etcd"
)]
struct Args {
    /// Swarm node addresses, comma separated; client i uses endpoint i mod n.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"
    )]
    swarm_endpoints: Vec<String>,
    /// The no-consensus server (`swarm-ceiling`) for `--system ceiling`.
    #[arg(long, default_value = "127.0.0.1:7401")]
    ceiling_endpoint: String,
    /// etcd member client addresses, comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379"
    )]
    etcd_endpoints: Vec<String>,
    /// The CA certificate (PEM) of a Swarm cluster that serves TLS: Swarm
    /// connections go over TLS, checked against it (etcd's stay plaintext).
    #[arg(long, env = "SWARM_CA")]
    swarm_ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

/// TLS for Swarm connections, from `--swarm-ca` (set once at start).
static SWARM_TLS: std::sync::OnceLock<tonic::transport::ClientTlsConfig> =
    std::sync::OnceLock::new();

/// A dedicated connection to a Swarm node: over TLS when `--swarm-ca` is
/// given, else as [`channel`].
fn swarm_channel(addr: &str) -> Result<Channel> {
    let Some(tls) = SWARM_TLS.get() else {
        return channel(addr);
    };
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    Ok(Endpoint::from_shared(format!("https://{addr}"))
        .with_context(|| format!("parse endpoint {addr}"))?
        .tls_config(tls.clone().domain_name(host))
        .with_context(|| format!("TLS for {addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy())
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum System {
    Swarm,
    Etcd,
    /// `swarm-ceiling`: Swarm's calls from memory, no Raft, no disk.
    Ceiling,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Swarm => "swarm",
            System::Etcd => "etcd",
            System::Ceiling => "ceiling",
        }
    }
}

impl Args {
    /// The Swarm-protocol endpoints of `system` (Swarm's nodes, or the
    /// ceiling server); etcd's are its own.
    fn endpoints(&self, system: System) -> Vec<String> {
        match system {
            System::Swarm => self.swarm_endpoints.clone(),
            System::Ceiling => vec![self.ceiling_endpoint.clone()],
            System::Etcd => self.etcd_endpoints.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Clients looping submit → claim → complete.
    Claims {
        #[arg(long, value_enum)]
        system: System,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// SIGKILL `--kill-pid` under load; time to the first acknowledged write.
    Failover {
        #[arg(long, value_enum)]
        system: System,
        #[arg(long)]
        kill_pid: i32,
        /// Clients of background load running across the kill.
        #[arg(long, default_value_t = 8)]
        load_clients: usize,
        /// Give up when no write is acknowledged for this long after the kill.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Submit and claim `--count` items with long leases (active claims).
    Fill {
        #[arg(long, value_enum)]
        system: System,
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        #[arg(long, default_value_t = 64)]
        clients: usize,
    },
    /// Five-step no-op workflows on Swarm at a steady offered rate.
    Workflows {
        /// Workflows started per second.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
}

/// One client of the claim workload, on its own connection.
trait Claimer: Send + 'static {
    /// A claimed item: what `complete` needs.
    type Claimed: Send;
    fn submit(&mut self) -> impl Future<Output = Result<()>> + Send;
    /// `None` when there was nothing to claim.
    fn claim(&mut self) -> impl Future<Output = Result<Option<Self::Claimed>>> + Send;
    fn complete(&mut self, claimed: Self::Claimed) -> impl Future<Output = Result<()>> + Send;
}

/// A dedicated HTTP/2 connection: each `connect_lazy` is its own channel.
fn channel(addr: &str) -> Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .with_context(|| format!("parse endpoint {addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy())
}

mod swarm_side {
    //! The Swarm side: [`SwarmClaimer`] from the library, one item per claim.

    use super::*;

    impl Claimer for SwarmClaimer {
        type Claimed = (String, u64);

        async fn submit(&mut self) -> Result<()> {
            SwarmClaimer::submit(self, "{}".into()).await
        }

        async fn claim(&mut self) -> Result<Option<(String, u64)>> {
            Ok(SwarmClaimer::claim(self, 1).await?.into_iter().next())
        }

        async fn complete(&mut self, (id, token): (String, u64)) -> Result<()> {
            SwarmClaimer::complete(self, id, token).await
        }
    }
}

#[cfg(feature = "etcd")]
mod etcd_side {
    //! etcd's KV and Lease calls through the `etcd-client` crate, each client
    //! built on its own tonic `Channel` from [`channel`] (etcd-client's
    //! `raw-channel` feature): the same gRPC stack as the Swarm client, one
    //! HTTP/2 connection per client.

    use std::collections::VecDeque;

    use etcd_client::{Client, Compare, CompareOp, KvClient, PutOptions, Txn, TxnOp};

    use super::*;

    /// An etcd client on `ch` alone. Without credentials this makes no call.
    async fn client(ch: Channel) -> Result<Client> {
        Client::from_channel(etcd_client::Channel::Tonic(ch), None)
            .await
            .context("build an etcd client")
    }

    pub struct EtcdClaimer {
        kv: KvClient,
        agent: String,
        /// This client's lease; claims are attached to it.
        lease: i64,
        /// Keeps the lease alive for as long as the client lives.
        keepalive: tokio::task::JoinHandle<()>,
        /// Ids this client submitted and has not claimed yet: its own range
        /// of `work/` keys, so clients do not fight over one key.
        pending: VecDeque<String>,
        /// Makes ids unique across runs and clients.
        prefix: String,
        next: u64,
    }

    impl Drop for EtcdClaimer {
        fn drop(&mut self) {
            self.keepalive.abort();
        }
    }

    impl EtcdClaimer {
        pub async fn connect(addr: &str, agent: String, run: &str, ttl_s: i64) -> Result<Self> {
            let client = client(channel(addr)?).await?;
            let mut leases = client.lease_client();
            let lease = leases
                .grant(ttl_s, None)
                .await
                .with_context(|| format!("grant a lease on etcd {addr}"))?
                .id();
            // Sends the first keep-alive and waits for its answer.
            let (mut keeper, mut answers) = leases
                .keep_alive(lease)
                .await
                .with_context(|| format!("keep the lease alive on etcd {addr}"))?;
            let every = Duration::from_secs((ttl_s / 3).max(1) as u64);
            let keepalive = tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if keeper.keep_alive().await.is_err() {
                                break;
                            }
                        }
                        answer = answers.next() => {
                            if !matches!(answer, Some(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
            });
            Ok(Self {
                kv: client.kv_client(),
                prefix: format!("{run}-{agent}"),
                agent,
                lease,
                keepalive,
                pending: VecDeque::new(),
                next: 0,
            })
        }
    }

    impl Claimer for EtcdClaimer {
        type Claimed = String;

        async fn submit(&mut self) -> Result<()> {
            let id = format!("{}-{}", self.prefix, self.next);
            self.next += 1;
            self.kv.put(format!("work/{id}"), "{}", None).await?;
            self.pending.push_back(id);
            Ok(())
        }

        async fn claim(&mut self) -> Result<Option<String>> {
            let Some(id) = self.pending.pop_front() else {
                return Ok(None);
            };
            let key = format!("claim/{id}");
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key,
                    self.agent.clone(),
                    Some(PutOptions::new().with_lease(self.lease)),
                )]);
            let resp = self.kv.txn(txn).await?;
            Ok(resp.succeeded().then_some(id))
        }

        async fn complete(&mut self, id: String) -> Result<()> {
            let key = format!("claim/{id}");
            let txn = Txn::new()
                .when([Compare::value(
                    key.clone(),
                    CompareOp::Equal,
                    self.agent.clone(),
                )])
                .and_then([
                    TxnOp::delete(key, None),
                    TxnOp::put(format!("done/{id}"), "{}", None),
                ]);
            if !self.kv.txn(txn).await?.succeeded() {
                bail!("complete of {id}: the claim is no longer ours");
            }
            Ok(())
        }
    }

    /// A write that goes through Raft, for the failover probe.
    pub async fn probe_write(ch: Channel, n: u64) -> Result<()> {
        client(ch)
            .await?
            .put(format!("failover/{n}"), "x", None)
            .await?;
        Ok(())
    }
}

/// A unique tag per run, so keys and work types never collide with earlier runs.
fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("r{:x}", nanos % (1 << 48))
}

fn histogram() -> Result<Histogram<u64>> {
    // Microseconds, 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).context("create histogram")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// What one client saw during a claims run.
struct ClientRun {
    claim: Histogram<u64>,
    cycle: Histogram<u64>,
    claims: u64,
    empty: u64,
    errors: u64,
}

/// Drives one client until `deadline` (or `stop`): submit → claim → complete.
/// Errors are counted; the first few are shown unless `quiet` (the failover
/// load, where they are the point).
async fn drive<C: Claimer>(
    mut c: C,
    deadline: Instant,
    stop: Arc<AtomicBool>,
    quiet: bool,
) -> Result<ClientRun> {
    let mut run = ClientRun {
        claim: histogram()?,
        cycle: histogram()?,
        claims: 0,
        empty: 0,
        errors: 0,
    };
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let step = async {
            c.submit().await?;
            let t1 = Instant::now();
            let claimed = c.claim().await?;
            let claim_us = t1.elapsed().as_micros() as u64;
            if let Some(claimed) = claimed {
                c.complete(claimed).await?;
                anyhow::Ok(Some(claim_us))
            } else {
                anyhow::Ok(None)
            }
        };
        match step.await {
            Ok(Some(claim_us)) => {
                run.claim.saturating_record(claim_us.max(1));
                run.cycle
                    .saturating_record((t0.elapsed().as_micros() as u64).max(1));
                run.claims += 1;
            }
            Ok(None) => run.empty += 1,
            Err(e) => {
                run.errors += 1;
                if run.errors <= 3 && !quiet {
                    eprintln!("client error: {e:#}");
                }
                // A failing node must not turn the loop into a busy spin.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    Ok(run)
}

async fn swarm_claimers(
    endpoints: &[String],
    n: usize,
    run: &str,
    lease_ms: u64,
) -> Result<Vec<SwarmClaimer>> {
    if endpoints.is_empty() {
        bail!("no Swarm endpoints");
    }
    (0..n)
        .map(|i| {
            Ok(SwarmClaimer::new(
                WorkServiceClient::new(swarm_channel(&endpoints[i % endpoints.len()])?),
                format!("bench-{i}"),
                format!("bench-{run}"),
                lease_ms,
            ))
        })
        .collect()
}

#[cfg(feature = "etcd")]
async fn etcd_claimers(
    endpoints: &[String],
    n: usize,
    run: &str,
    ttl_s: i64,
) -> Result<Vec<etcd_side::EtcdClaimer>> {
    if endpoints.is_empty() {
        bail!("no etcd endpoints");
    }
    let connects = (0..n).map(|i| {
        etcd_side::EtcdClaimer::connect(
            &endpoints[i % endpoints.len()],
            format!("agent-{i}"),
            run,
            ttl_s,
        )
    });
    futures::future::try_join_all(connects).await
}

#[cfg(not(feature = "etcd"))]
fn no_etcd() -> anyhow::Error {
    anyhow::anyhow!("swarm-vs-etcd was built without the `etcd` feature (use scripts/bench.sh)")
}

/// Runs `clients` to the deadline and merges what they saw.
async fn run_all<C: Claimer>(
    clients: Vec<C>,
    duration: Duration,
    stop: Arc<AtomicBool>,
    quiet: bool,
) -> Result<(ClientRun, Duration)> {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(drive(c, deadline, stop.clone(), quiet)))
        .collect();
    let mut total = ClientRun {
        claim: histogram()?,
        cycle: histogram()?,
        claims: 0,
        empty: 0,
        errors: 0,
    };
    for t in futures::future::join_all(tasks).await {
        let r = t.context("join a client task")??;
        total.claim.add(&r.claim).context("merge histograms")?;
        total.cycle.add(&r.cycle).context("merge histograms")?;
        total.claims += r.claims;
        total.empty += r.empty;
        total.errors += r.errors;
    }
    Ok((total, start.elapsed()))
}

async fn claims(args: &Args, system: System, n: usize, duration: Duration) -> Result<()> {
    let run = run_tag();
    let stop = Arc::new(AtomicBool::new(false));
    let (r, elapsed) = match system {
        System::Swarm | System::Ceiling => {
            let cs = swarm_claimers(&args.endpoints(system), n, &run, 30_000).await?;
            run_all(cs, duration, stop, false).await?
        }
        #[cfg(feature = "etcd")]
        System::Etcd => {
            let cs = etcd_claimers(&args.etcd_endpoints, n, &run, 60).await?;
            run_all(cs, duration, stop, false).await?
        }
        #[cfg(not(feature = "etcd"))]
        System::Etcd => return Err(no_etcd()),
    };
    let secs = elapsed.as_secs_f64();
    println!(
        "{}",
        json!({
            "system": system.name(),
            "clients": n,
            "secs": secs,
            "claims": r.claims,
            "per_s": r.claims as f64 / secs,
            "p50_ms": ms(&r.claim, 0.50),
            "p99_ms": ms(&r.claim, 0.99),
            "p999_ms": ms(&r.claim, 0.999),
            "cycle_p50_ms": ms(&r.cycle, 0.50),
            "cycle_p99_ms": ms(&r.cycle, 0.99),
            "empty_claims": r.empty,
            "errors": r.errors,
        })
    );
    Ok(())
}

/// One write that must be acknowledged through Raft, on `ch`.
async fn probe_write(system: System, ch: Channel, n: u64) -> Result<()> {
    match system {
        System::Swarm | System::Ceiling => {
            WorkServiceClient::new(ch)
                .submit(SubmitRequest {
                    r#type: "failover".into(),
                    payload_json: format!("{{\"n\":{n}}}"),
                    ..Default::default()
                })
                .await?;
            Ok(())
        }
        #[cfg(feature = "etcd")]
        System::Etcd => etcd_side::probe_write(ch, n).await,
        #[cfg(not(feature = "etcd"))]
        System::Etcd => Err(no_etcd()),
    }
}

/// Time from SIGKILL of `pid` to the first acknowledged write started after
/// it. Probes go to every endpoint at once, a new attempt every 10 ms per
/// endpoint (each bounded by 2 s), so one attempt stuck on a dead leader does
/// not hide the new one.
async fn failover(
    args: &Args,
    system: System,
    pid: i32,
    load_clients: usize,
    timeout: Duration,
) -> Result<()> {
    if system == System::Ceiling {
        bail!("failover needs a cluster; the ceiling server is a single process");
    }
    let probes: Vec<Channel> = args
        .endpoints(system)
        .iter()
        .map(|e| match system {
            System::Swarm | System::Ceiling => swarm_channel(e),
            System::Etcd => channel(e),
        })
        .collect::<Result<_>>()?;
    // Connect the probes before the kill, so the figure holds no handshake.
    for (i, ch) in probes.iter().enumerate() {
        probe_write(system, ch.clone(), i as u64)
            .await
            .context("write before the kill")?;
    }
    let run = run_tag();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let long = Duration::from_secs(3600);
        match system {
            System::Swarm | System::Ceiling => {
                let cs =
                    swarm_claimers(&args.endpoints(system), load_clients, &run, 30_000).await?;
                tokio::spawn(async move { run_all(cs, long, stop, true).await.map(|_| ()) })
            }
            #[cfg(feature = "etcd")]
            System::Etcd => {
                let cs = etcd_claimers(&args.etcd_endpoints, load_clients, &run, 60).await?;
                tokio::spawn(async move { run_all(cs, long, stop, true).await.map(|_| ()) })
            }
            #[cfg(not(feature = "etcd"))]
            System::Etcd => return Err(no_etcd()),
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let victim = rustix::process::Pid::from_raw(pid).context("--kill-pid must be positive")?;
    let killed = Instant::now();
    rustix::process::kill_process(victim, rustix::process::Signal::KILL)
        .with_context(|| format!("SIGKILL pid {pid}"))?;

    let deadline = killed + timeout;
    let mut attempts = FuturesUnordered::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut n = 1_000u64;
    let acked = loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() >= deadline {
                    break None;
                }
                for ch in &probes {
                    n += 1;
                    let fut = probe_write(system, ch.clone(), n);
                    attempts.push(async move {
                        let ok = matches!(
                            tokio::time::timeout(Duration::from_secs(2), fut).await,
                            Ok(Ok(()))
                        );
                        ok.then(Instant::now)
                    });
                }
            }
            Some(done) = attempts.next() => {
                if let Some(at) = done {
                    break Some(at);
                }
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(5), load).await;
    let Some(at) = acked else {
        bail!("no write acknowledged within {timeout:?} of killing pid {pid}");
    };
    println!(
        "{}",
        json!({
            "system": system.name(),
            "killed_pid": pid,
            "ms": at.duration_since(killed).as_secs_f64() * 1000.0,
        })
    );
    Ok(())
}

async fn fill(args: &Args, system: System, count: usize, clients: usize) -> Result<()> {
    let run = run_tag();
    let clients = clients.max(1);
    let per = count.div_ceil(clients);
    let start = Instant::now();
    let claimed: usize = match system {
        System::Swarm | System::Ceiling => {
            let cs = swarm_claimers(&args.endpoints(system), clients, &run, 3_600_000).await?;
            let tasks = cs.into_iter().map(|mut c| async move {
                for _ in 0..per {
                    c.submit("{}".into()).await?;
                }
                // Claims in batches; Swarm's claim takes any pending item of
                // the run's type, so together the clients claim them all.
                let mut got = 0;
                while got < per {
                    let n = c.claim((per - got).min(256) as u32).await?.len();
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                anyhow::Ok(got)
            });
            futures::future::try_join_all(tasks)
                .await?
                .into_iter()
                .sum()
        }
        #[cfg(feature = "etcd")]
        System::Etcd => {
            let cs = etcd_claimers(&args.etcd_endpoints, clients, &run, 3600).await?;
            let tasks = cs.into_iter().map(|mut c| async move {
                let mut got = 0;
                for _ in 0..per {
                    c.submit().await?;
                    if c.claim().await?.is_some() {
                        got += 1;
                    }
                }
                // The lease outlives the keep-alive: its one-hour TTL keeps
                // the claims active while the RSS is read.
                anyhow::Ok(got)
            });
            futures::future::try_join_all(tasks)
                .await?
                .into_iter()
                .sum()
        }
        #[cfg(not(feature = "etcd"))]
        System::Etcd => return Err(no_etcd()),
    };
    println!(
        "{}",
        json!({
            "system": system.name(),
            "claimed": claimed,
            "secs": start.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

/// One workflow from submit to its `completed` event.
async fn one_workflow(ch: Channel, payload: String) -> Result<Duration> {
    swarm_bench::client::workflow_to_completion(&mut WorkServiceClient::new(ch), payload).await
}

/// Starts `rate` workflows a second for `duration` (open loop: a slow
/// workflow does not delay the next start), then waits for all of them.
async fn workflows(args: &Args, rate: u32, duration: Duration) -> Result<()> {
    let chans: Vec<Channel> = args
        .swarm_endpoints
        .iter()
        .map(|e| swarm_channel(e))
        .collect::<Result<_>>()?;
    if chans.is_empty() {
        bail!("no Swarm endpoints");
    }
    let payload =
        json!({ "spec": swarm_bench::workload::FIVE_NOOP_STEPS, "inputs": {} }).to_string();
    let total = (rate as f64 * duration.as_secs_f64()).ceil() as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tick.tick().await;
        let fut = one_workflow(chans[i % chans.len()].clone(), payload.clone());
        tasks.push(tokio::spawn(tokio::time::timeout(
            Duration::from_secs(60),
            fut,
        )));
    }
    let mut lat = histogram()?;
    let mut failed = 0u64;
    for t in futures::future::join_all(tasks).await {
        match t {
            Ok(Ok(Ok(d))) => lat.saturating_record((d.as_micros() as u64).max(1)),
            Ok(Ok(Err(e))) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("workflow error: {e:#}");
                }
            }
            _ => failed += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "offered_per_s": rate,
            "started": total,
            "completed": lat.len(),
            "failed": failed,
            "per_s": lat.len() as f64 / secs,
            "p50_ms": ms(&lat, 0.50),
            "p99_ms": ms(&lat, 0.99),
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(ca) = &args.swarm_ca {
        let pem = std::fs::read(ca).with_context(|| format!("read --swarm-ca {}", ca.display()))?;
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(pem));
        let _ = SWARM_TLS.set(tls);
    }
    match args.command {
        Cmd::Claims {
            system,
            clients,
            duration,
        } => claims(&args, system, clients, duration).await,
        Cmd::Failover {
            system,
            kill_pid,
            load_clients,
            timeout,
        } => failover(&args, system, kill_pid, load_clients, timeout).await,
        Cmd::Fill {
            system,
            count,
            clients,
        } => fill(&args, system, count, clients).await,
        Cmd::Workflows { rate, duration } => workflows(&args, rate, duration).await,
    }
}
