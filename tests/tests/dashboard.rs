//! The web dashboard in a real headless Chromium, driven over WebDriver
//! (fantoccini and chromedriver), against a three-node cluster of real
//! `swarmd` processes that each serve it on their own `--http-listen`.
//!
//! Chromium and chromedriver are Debian's, installed when missing by the
//! nextest setup script `scripts/install-chromium.sh`, which hands their
//! paths over in `CHROMIUM_BIN` and `CHROMEDRIVER_BIN`; run another way, they
//! are looked up on `PATH`. A test skips, saying why, only when they cannot be
//! found at all, and fails instead when `CI` is set: CI installs them.
//!
//! Each test starts its own chromedriver on a free 127.0.0.1 port, in its own
//! process group so that the browser it launches goes with it: the group is
//! SIGKILLed (by the recorded PID) and reaped when the test drops it.
//!
//! The pages re-render as data arrives, so reads go through one script that
//! collects what the test needs in a single call (no stale elements), and
//! every wait is bounded. The `data-test` hooks are listed at the top of
//! `crates/swarm-node/assets/app.js`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use rustix::process::{Pid, Signal, kill_process_group};
use serde_json::{Value, json};
use swarm_proto::v1::SubmitRequest;
use swarm_tests::{Cluster, ClusterOptions, NodeId, free_ports, poll_until, wait_until, within};

/// How long a page may take to show what a test waits for.
const PAGE_WAIT: Duration = Duration::from_secs(30);
/// How long chromedriver may take to listen.
const DRIVER_START: Duration = Duration::from_secs(20);

/// Where Chromium and chromedriver are, or why they are not there.
fn browser_binaries() -> Result<Option<(PathBuf, PathBuf)>> {
    let find = |env: &str, names: &[&str]| -> Option<PathBuf> {
        if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
            .find(|p| p.is_file())
    };
    let chromium = find("CHROMIUM_BIN", &["chromium", "chromium-browser"]);
    let chromedriver = find("CHROMEDRIVER_BIN", &["chromedriver"]);
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => Ok(Some((chromium, chromedriver))),
        (chromium, chromedriver) => {
            let missing: Vec<&str> = [
                chromium.is_none().then_some("chromium"),
                chromedriver.is_none().then_some("chromedriver"),
            ]
            .into_iter()
            .flatten()
            .collect();
            let why = format!(
                "{} not found (CHROMIUM_BIN / CHROMEDRIVER_BIN or PATH); \
                 scripts/install-chromium.sh installs Debian's chromium and chromium-driver",
                missing.join(" and ")
            );
            if std::env::var_os("CI").is_some() {
                bail!("{why}: CI must run the browser tests");
            }
            eprintln!("SKIPPED: the dashboard browser test needs a browser: {why}");
            Ok(None)
        }
    }
}

/// A chromedriver process and the browsers it launched, all in one process
/// group led by the PID recorded at spawn.
struct Chromedriver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Chromedriver {
    fn start(binary: &Path, dir: &Path) -> Result<Chromedriver> {
        let port = free_ports(1)?[0];
        let log = dir.join("chromedriver.log");
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().context("clone a log file handle")?)
            .stderr(out)
            // Its own group: the browsers it starts are killed with it.
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawn {}", binary.display()))?;
        Ok(Chromedriver { child, port, log })
    }

    async fn wait_listening(&mut self) -> Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        poll_until(DRIVER_START, "chromedriver listening", || {
            let exited = self.child.try_wait();
            async move {
                if let Some(status) = exited.context("wait for chromedriver")? {
                    bail!("chromedriver exited ({status})");
                }
                Ok(
                    TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                        .is_ok()
                        .then_some(()),
                )
            }
        })
        .await
        .with_context(|| {
            format!(
                "start chromedriver; its log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        })
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // SIGKILL to the group the recorded PID leads (chromedriver and every
        // browser process it started), then reap chromedriver.
        let pid = Pid::from_child(&self.child);
        let _ = kill_process_group(pid, Signal::KILL);
        let _ = self.child.wait();
    }
}

/// A headless Chromium session, with the cluster whose dashboards it opens.
struct Dashboard {
    client: Client,
    cluster: Cluster,
    /// Each node's `--http-listen`.
    http: BTreeMap<NodeId, SocketAddr>,
    // Dropped after the client and the cluster: fields drop in order.
    _driver: Chromedriver,
    _dir: tempfile::TempDir,
}

impl Dashboard {
    /// A healthy three-node cluster with the dashboard on every node, and a
    /// browser; `None` when there is no browser to drive (the test skips).
    async fn start() -> Result<Option<Dashboard>> {
        let Some((chromium, chromedriver)) = browser_binaries()? else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("swarm-dashboard-")
            .tempdir()
            .context("create the browser's temporary directory")?;
        let mut driver = Chromedriver::start(&chromedriver, dir.path())?;

        // gRPC and HTTP ports in one call, so that none is picked twice.
        let ports = free_ports(6)?;
        let http: BTreeMap<NodeId, SocketAddr> = (1..=3)
            .map(|id| {
                let port = ports[2 + id as usize];
                (id, SocketAddr::from(([127, 0, 0, 1], port)))
            })
            .collect();
        let options = ClusterOptions {
            ports: Some(ports[..3].to_vec()),
            per_node_args: http
                .iter()
                .map(|(id, addr)| (*id, vec!["--http-listen".into(), addr.to_string()]))
                .collect(),
            ..ClusterOptions::default()
        };
        let cluster = Cluster::start_with(3, options).await?;

        driver.wait_listening().await?;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--window-size=1400,900",
                    format!("--user-data-dir={}", dir.path().join("profile").display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .with_context(|| {
                format!(
                    "open a Chromium session; chromedriver's log:\n{}",
                    std::fs::read_to_string(&driver.log).unwrap_or_default()
                )
            })?;
        Ok(Some(Dashboard {
            client,
            cluster,
            http,
            _driver: driver,
            _dir: dir,
        }))
    }

    /// The dashboard URL of `route` (a hash route such as `#/work`) on `node`.
    fn url(&self, node: NodeId, route: &str) -> String {
        format!("http://{}/{route}", self.http[&node])
    }

    async fn open(&self, node: NodeId, route: &str) -> Result<()> {
        let url = self.url(node, route);
        self.client
            .goto(&url)
            .await
            .with_context(|| format!("open {url}"))
    }

    /// Runs `script` (a function body that returns JSON) in the page.
    async fn read(&self, script: &str) -> Result<Value> {
        self.client
            .execute(script, vec![])
            .await
            .context("run a script in the page")
    }

    /// Clicks the element `css`, retrying while a refresh replaces it.
    async fn click(&self, css: &str) -> Result<()> {
        poll_until(PAGE_WAIT, &format!("click {css}"), || async {
            let element = self.client.find(Locator::Css(css)).await?;
            element.click().await?;
            Ok(Some(()))
        })
        .await
    }

    /// What the page shows in its error banner and any error card: said when
    /// a wait fails, since it is usually why.
    async fn page_errors(&self) -> String {
        self.read(
            "return [...document.querySelectorAll('[data-test=error-banner], .error-card')]\
             .filter(e => !e.hidden).map(e => e.textContent.trim()).join(' | ');",
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
    }

    /// Closes the browser session (chromedriver quits Chromium) before the
    /// process group is killed on drop.
    async fn close(self) -> Result<()> {
        let Dashboard { client, .. } = self;
        client.close().await.context("close the browser session")
    }
}

/// Runs a scenario against a fresh dashboard cluster, or skips it.
async fn scenario<F>(name: &str, limit: Duration, body: F)
where
    F: AsyncFnOnce(&Dashboard) -> Result<()>,
{
    within(limit, name, async {
        let Some(dashboard) = Dashboard::start().await? else {
            return Ok(());
        };
        if let Err(e) = body(&dashboard).await {
            let errors = dashboard.page_errors().await;
            let shot = std::env::temp_dir().join(format!("{name}.png"));
            if let Ok(png) = dashboard.client.screenshot().await
                && std::fs::write(&shot, png).is_ok()
            {
                eprintln!("==== screenshot of the page: {}", shot.display());
            }
            dashboard.cluster.print_log_tails();
            return Err(e.context(format!("the page shows: {errors:?}")));
        }
        dashboard.close().await
    })
    .await
    .unwrap();
}

async fn submit(dashboard: &Dashboard, node: NodeId, kind: &str, payload: Value) -> Result<String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let request = SubmitRequest {
        r#type: kind.into(),
        payload_json: payload.to_string(),
        idempotency_key: format!(
            "dashboard-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ),
        ..Default::default()
    };
    let item = dashboard
        .cluster
        .work(node)?
        .submit(request)
        .await
        .with_context(|| format!("submit a {kind} item"))?
        .into_inner()
        .item
        .ok_or_else(|| anyhow!("submit answered no item"))?;
    Ok(item.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t10_cluster_page_shows_three_members_and_the_leader() {
    scenario("t10_cluster_page", Duration::from_secs(150), async |d| {
        let leader = d.cluster.wait_for_leader(Duration::from_secs(10)).await?;
        // Any node shows the whole cluster: open a follower's dashboard.
        let node = if leader == 2 { 3 } else { 2 };
        d.open(node, "#/").await?;
        let view = poll_until(PAGE_WAIT, "three members and a leader on the cluster page", || async {
            let v = d
                .read(
                    "const rows = [...document.querySelectorAll('[data-test=member-row]')];\
                     return { node: document.querySelector('[data-test=nav-node]').textContent,\
                              leader: document.querySelector('[data-test=leader-id]').dataset.leaderId || null,\
                              members: rows.map(r => ({ id: Number(r.dataset.memberId), role: r.dataset.role,\
                                                       reachable: r.dataset.reachable === 'true',\
                                                       peer: r.querySelector('[data-test=member-peer-addr]')?.textContent || null })) };",
                )
                .await?;
            let members = v["members"].as_array().cloned().unwrap_or_default();
            let leaders = members.iter().filter(|m| m["role"] == "leader").count();
            let ready = members.len() == 3 && leaders == 1 && v["leader"].is_string();
            Ok(ready.then_some(v))
        })
        .await?;

        assert_eq!(view["node"], json!(node.to_string()), "the top bar names the node serving the page");
        assert_eq!(view["leader"], json!(leader.to_string()), "the top bar names the leader");
        let members = view["members"].as_array().unwrap();
        let ids: BTreeSet<u64> = members.iter().map(|m| m["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, BTreeSet::from([1, 2, 3]));
        for m in members {
            let id = m["id"].as_u64().unwrap();
            let role = if id == leader { "leader" } else { "follower" };
            assert_eq!(m["role"], json!(role), "member {id}: {view}");
            assert_eq!(m["reachable"], json!(true), "member {id}: {view}");
            let peers = format!("peers {}", d.cluster.peer_addr(id)?);
            assert_eq!(m["peer"], json!(peers), "member {id}: {view}");
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t20_workflow_page_draws_its_dag_until_every_step_succeeded() {
    scenario("t20_workflow_dag", Duration::from_secs(180), async |d| {
        // A diamond whose steps must run on given nodes (each node has the
        // capability `nodeN`), so the run is handed from node to node and
        // each box names a different node.
        let spec = "name: dashboard-diamond\nsteps:\n\
            \x20 - { name: fetch, run: echo, requires: [node1], arguments: { v: value(1) } }\n\
            \x20 - { name: left, run: echo, requires: [node2], arguments: { v: result(fetch.v) } }\n\
            \x20 - { name: right, run: echo, requires: [node3], arguments: { v: result(fetch.v) } }\n\
            \x20 - { name: join, run: echo, requires: [node1], arguments: { a: result(left.v), b: result(right.v) } }\n\
            return: join\n";
        let id = submit(d, 2, "workflow", json!({ "spec": spec, "inputs": {} })).await?;
        // Open the page at once, on a third node, so it follows the run live.
        d.open(3, &format!("#/work/{id}")).await?;

        let script = "const steps = [...document.querySelectorAll('[data-test=dag-step]')];\
            const edges = [...document.querySelectorAll('[data-test=dag-edge]')];\
            const status = document.querySelector('[data-test=item-status]');\
            const live = document.querySelector('[data-test=live-state]');\
            return { status: status ? status.dataset.status : null, live: live ? live.dataset.live : null,\
                     steps: steps.map(s => ({ name: s.dataset.step, state: s.dataset.state, node: s.dataset.node })),\
                     edges: edges.map(e => e.dataset.from + '>' + e.dataset.to).sort() };";
        let view = poll_until(PAGE_WAIT * 2, "the workflow completed on its page", || async {
            let v = d.read(script).await?;
            let all_succeeded = v["steps"].as_array().is_some_and(|s| {
                s.len() == 4 && s.iter().all(|st| st["state"] == "succeeded")
            });
            Ok((v["status"] == "completed" && all_succeeded).then_some(v))
        })
        .await?;

        let nodes: BTreeMap<String, String> = view["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_string(), s["node"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            nodes,
            BTreeMap::from([
                ("fetch".to_string(), "node-1".to_string()),
                ("left".into(), "node-2".into()),
                ("right".into(), "node-3".into()),
                ("join".into(), "node-1".into()),
            ]),
            "each box is labelled with the node that ran it"
        );
        assert_eq!(
            view["edges"],
            json!(["fetch>left", "fetch>right", "left>join", "right>join"]),
            "an arrow from each dependency"
        );
        // The stream ends with the item: the page says it is final.
        wait_until(PAGE_WAIT, "the page to mark the item final", || async {
            d.read(script).await.is_ok_and(|v| v["live"] == "ended")
        })
        .await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t25_a_switch_draws_every_branch_and_greys_the_one_not_taken() {
    scenario("t25_switch_dag", Duration::from_secs(120), async |d| {
        let spec = "name: dashboard-switch\nsteps:\n\
            \x20 - { name: rate, run: echo, arguments: { risk: value(\"low\") } }\n\
            \x20 - name: route\n\
            \x20   run: switch\n\
            \x20   arguments: { on: result(rate.risk) }\n\
            \x20   with:\n\
            \x20     branches:\n\
            \x20       low: [ { name: apply, run: echo } ]\n\
            \x20       high: [ { name: review, run: echo }, { name: apply, run: echo, wait_for: [review] } ]\n\
            \x20 - { name: done, run: echo, arguments: { r: result(route.apply) } }\n";
        let id = submit(d, 1, "workflow", json!({ "spec": spec, "inputs": {} })).await?;
        d.open(2, &format!("#/work/{id}")).await?;
        let script = "const steps = [...document.querySelectorAll('[data-test=dag-step]')];\
            const edges = [...document.querySelectorAll('[data-test=dag-edge]')];\
            const status = document.querySelector('[data-test=item-status]');\
            return { status: status ? status.dataset.status : null,\
                     steps: Object.fromEntries(steps.map(s => [s.dataset.step, s.dataset.state])),\
                     edges: edges.map(e => e.dataset.from + '>' + e.dataset.to).sort() };";
        let view = poll_until(PAGE_WAIT * 2, "the switch run completed on its page", || async {
            let v = d.read(script).await?;
            Ok((v["status"] == "completed" && v["steps"]["done"] == "succeeded").then_some(v))
        })
        .await?;
        assert_eq!(
            view["steps"],
            json!({
                "rate": "succeeded",
                "route": "succeeded",
                "route/low/apply": "succeeded",
                "route/high/review": "skipped",
                "route/high/apply": "skipped",
                "done": "succeeded",
            }),
            "every branch's steps are drawn, the one not taken as skipped"
        );
        assert_eq!(
            view["edges"],
            json!([
                "rate>route",
                "route/high/apply>done",
                "route/high/review>route/high/apply",
                "route/low/apply>done",
                "route>route/high/review",
                "route>route/low/apply",
            ]),
            "a branch hangs off its switch, and what comes after the switch after each branch"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn t30_work_table_pages_forward_and_back() {
    scenario("t30_work_pages", Duration::from_secs(150), async |d| {
        let mut submitted = BTreeSet::new();
        for i in 0..12 {
            submitted.insert(submit(d, 1 + i % 3, "dash-page", json!({ "n": i })).await?);
        }
        // Other types must not show: one item of another type.
        submit(d, 1, "dash-other", json!({})).await?;
        d.open(1, "#/work?type=dash-page&limit=5").await?;

        let script = "const p = document.querySelector('[data-test=page-number]');\
            const next = document.querySelector('[data-test=next-page]');\
            return { page: p ? p.dataset.page : null, next: next ? !next.disabled : false,\
                     rows: [...document.querySelectorAll('[data-test=work-row]')].map(r => ({ id: r.dataset.id, type: r.dataset.type })) };";
        let page = |n: usize, rows: usize| {
            let script = script.to_string();
            async move {
                poll_until(PAGE_WAIT, &format!("page {n} with {rows} rows"), || async {
                    let v = d.read(&script).await?;
                    let ok = v["page"] == json!(n.to_string())
                        && v["rows"].as_array().is_some_and(|r| r.len() == rows);
                    Ok(ok.then_some(v))
                })
                .await
            }
        };
        let ids = |v: &Value| -> BTreeSet<String> {
            v["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    assert_eq!(r["type"], "dash-page", "the type filter holds: {v}");
                    r["id"].as_str().unwrap().to_string()
                })
                .collect()
        };

        let first = page(1, 5).await?;
        assert_eq!(first["next"], json!(true), "a next page after the first: {first}");
        d.click("[data-test=next-page]").await?;
        let second = page(2, 5).await?;
        d.click("[data-test=next-page]").await?;
        let third = page(3, 2).await?;
        assert_eq!(third["next"], json!(false), "the last page has no next: {third}");

        let (a, b, c) = (ids(&first), ids(&second), ids(&third));
        assert!(a.is_disjoint(&b) && b.is_disjoint(&c) && a.is_disjoint(&c), "pages overlap: {a:?} {b:?} {c:?}");
        let all: BTreeSet<String> = a.iter().chain(&b).chain(&c).cloned().collect();
        assert_eq!(all, submitted, "the pages hold every item of the type once");

        d.click("[data-test=prev-page]").await?;
        let back = page(2, 5).await?;
        assert_eq!(ids(&back), b, "previous goes back to the same page");
        Ok(())
    })
    .await;
}
