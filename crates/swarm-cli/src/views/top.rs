//! One frame of `swarmctl top`: the answering node's view of the cluster, the
//! queues by type and the live claims, as lines of plain text. The live view
//! draws them in place, cut to the terminal; a pipe or `--once` gets them as
//! they are. A part that could not be read shows its error in its place, and
//! the rest of the frame still shows.
//!
//! JSON (`-o json`): `{"cluster": <cluster status JSON> | null, "stats":
//! <work stats JSON> | null, "claims": <claims list JSON> | null,
//! "more_claims": bool, "errors": {"cluster"|"stats"|"claims": "message"}}`.

use serde_json::{Map, Value, json};
use swarm_client::proto::{ClusterStatusResponse, StatusCounts, WorkItem, WorkStatsResponse};

use super::claim::claims_json;
use super::cluster::ClusterView;
use super::work_stats::{COUNTS_HEADER, by_type, counts_row, stats_json};
use crate::output::{Table, duration_ms, or_dash, time_left};

/// What one refresh read. Each part is its own read and fails on its own.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The answering node's own status, and the cluster as it sees it with
    /// each member probed (see `cluster status`).
    pub cluster: Result<(ClusterStatusResponse, ClusterView), String>,
    pub stats: Result<WorkStatsResponse, String>,
    /// The type of the oldest pending item, when known: the stats carry the
    /// item's id and age, not its type, so that type's row can show the age.
    pub oldest_pending_type: Option<String>,
    pub claims: Result<ClaimsPage, String>,
}

/// The first page of claimed items.
#[derive(Debug, Clone, Default)]
pub struct ClaimsPage {
    pub items: Vec<WorkItem>,
    /// More claimed items follow the page.
    pub more: bool,
}

impl Snapshot {
    /// `part: message` for each part that could not be read.
    pub fn errors(&self) -> Vec<String> {
        [
            ("cluster", self.cluster.as_ref().err()),
            ("stats", self.stats.as_ref().err()),
            ("claims", self.claims.as_ref().err()),
        ]
        .into_iter()
        .filter_map(|(part, err)| err.map(|e| format!("{part}: {e}")))
        .collect()
    }
}

/// The header, the members and the queues: everything above the claims.
pub fn overview_lines(s: &Snapshot) -> Vec<String> {
    let mut lines = Vec::new();
    match &s.cluster {
        Ok((status, view)) => {
            let addr = view
                .members
                .iter()
                .find(|m| m.id == status.node_id)
                .map_or("?", |m| m.addr.as_str());
            lines.push(format!(
                "node: {} ({addr})  leader: {}  term: {}  commit: {}  applied: {}",
                status.node_id,
                view.leader_id
                    .map_or_else(|| "none".to_string(), |id| id.to_string()),
                status.term,
                status.commit_index,
                status.last_applied,
            ));
            lines.push(format!(
                "items: {}  live claims: {}  removed after retention: {}",
                status.items, status.live_claims, status.items_removed
            ));
            lines.push(String::new());
            lines.extend(members_table(view).render().lines().map(str::to_string));
        }
        Err(e) => lines.push(format!("cluster: error: {e}")),
    }
    lines.push(String::new());
    match &s.stats {
        Ok(stats) => {
            let table = queues_table(stats, s.oldest_pending_type.as_deref());
            lines.extend(table.render().lines().map(str::to_string));
        }
        Err(e) => lines.push(format!("queues: error: {e}")),
    }
    lines
}

/// The live claims, at most `max_rows` of them, under a line that says how
/// many there are.
pub fn claims_lines(s: &Snapshot, now_ms: u64, max_rows: usize) -> Vec<String> {
    let page = match &s.claims {
        Ok(page) => page,
        Err(e) => return vec![String::new(), format!("live claims: error: {e}")],
    };
    let claims: Vec<&WorkItem> = page.items.iter().filter(|i| i.claim.is_some()).collect();
    let shown = claims.len().min(max_rows);
    let counted = s
        .stats
        .as_ref()
        .ok()
        .and_then(|st| st.by_status.as_ref())
        .map(|c| c.claimed);
    let cut_short = page.more || shown < claims.len();
    let title = match counted {
        _ if claims.is_empty() && !page.more => "live claims: none".to_string(),
        Some(total) if total > shown as u64 => format!("live claims: {shown} of {total}"),
        _ if cut_short => format!("live claims: first {shown}"),
        _ => format!("live claims: {shown}"),
    };
    let mut lines = vec![String::new(), title];
    if shown > 0 {
        let mut table = Table::new(&["HOLDER", "ITEM", "TYPE", "TOKEN", "LEASE", "PROGRESS"]);
        for item in claims.into_iter().take(shown) {
            let Some(c) = &item.claim else { continue };
            table.push(vec![
                c.agent.clone(),
                item.id.clone(),
                item.r#type.clone(),
                c.token.to_string(),
                time_left(c.lease_expires_at_ms, now_ms),
                or_dash(c.progress.as_deref()),
            ]);
        }
        lines.extend(table.render().lines().map(str::to_string));
    }
    lines
}

/// Lines the claims part takes besides its rows: a blank, its title and the
/// table's header.
pub const CLAIMS_OVERHEAD: usize = 3;

/// The whole frame, as plain text: what a pipe and `--once` print.
pub fn frame_text(s: &Snapshot, now_ms: u64, max_claims: usize) -> String {
    let mut lines = overview_lines(s);
    lines.extend(claims_lines(s, now_ms, max_claims));
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The frame as JSON: each part in the shape its own command prints.
pub fn frame_json(s: &Snapshot, now_ms: u64) -> Value {
    let cluster = s.cluster.as_ref().ok().map(|(status, view)| {
        let mut v = serde_json::to_value(view).unwrap_or(Value::Null);
        if let Value::Object(fields) = &mut v {
            fields.insert("last_applied".into(), json!(status.last_applied));
            fields.insert("items".into(), json!(status.items));
            fields.insert("live_claims".into(), json!(status.live_claims));
        }
        v
    });
    let errors: Map<String, Value> = [
        ("cluster", s.cluster.as_ref().err()),
        ("stats", s.stats.as_ref().err()),
        ("claims", s.claims.as_ref().err()),
    ]
    .into_iter()
    .filter_map(|(part, err)| err.map(|e| (part.to_string(), json!(e))))
    .collect();
    json!({
        "cluster": cluster,
        "stats": s.stats.as_ref().ok().map(stats_json),
        "claims": s.claims.as_ref().ok().map(|p| claims_json(p.items.iter(), now_ms)),
        "more_claims": s.claims.as_ref().is_ok_and(|p| p.more),
        "errors": errors,
    })
}

/// `line` cut to `width` characters.
pub fn cut(line: &str, width: usize) -> String {
    line.chars().take(width).collect()
}

fn members_table(view: &ClusterView) -> Table {
    let mut table = Table::new(&["ID", "ADDR", "ROLE", "APPLIED", "LAG", "REACHABLE"]);
    for m in &view.members {
        table.push(vec![
            m.id.to_string(),
            m.addr.clone(),
            m.role.to_string(),
            m.last_applied.to_string(),
            or_dash(m.lag),
            if m.reachable { "yes" } else { "no" }.to_string(),
        ]);
    }
    table
}

/// A row per type and one for all of them. The oldest pending age is known
/// for all types together and, when `oldest_type` is known, for that type
/// (the oldest item of all is also the oldest of its type).
fn queues_table(stats: &WorkStatsResponse, oldest_type: Option<&str>) -> Table {
    let mut header = COUNTS_HEADER.to_vec();
    header.push("OLDEST_PENDING");
    let mut table = Table::new(&header);
    let row = |name: &str, c: &StatusCounts, oldest: String| {
        let mut cells = counts_row(name, c);
        cells.push(oldest);
        cells
    };
    let age = stats.oldest_pending_age_ms.map(duration_ms);
    for (kind, c) in by_type(stats) {
        // Per type from a node that reports it; from an older node, only
        // the type of the oldest pending item overall has an age.
        let oldest = match stats.oldest_pending_age_ms_by_type.get(kind) {
            Some(ms) => Some(duration_ms(*ms)),
            None => age.clone().filter(|_| oldest_type == Some(kind)),
        };
        table.push(row(kind, c, or_dash(oldest.as_ref())));
    }
    let oldest_of_all = match &age {
        Some(age) if !stats.oldest_pending_id.is_empty() => {
            format!("{age} ({})", stats.oldest_pending_id)
        }
        other => or_dash(other.as_ref()),
    };
    let none = StatusCounts::default();
    table.push(row(
        "(all)",
        stats.by_status.as_ref().unwrap_or(&none),
        oldest_of_all,
    ));
    table
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashMap;

    use swarm_client::proto::{Claim, Member, MemberRole};

    use super::*;
    use crate::views::cluster::probed_cluster_view;

    fn member(id: u64, role: MemberRole, last_applied: u64, lag: Option<u64>) -> Member {
        Member {
            id,
            addr: format!("127.0.0.1:710{id}"),
            peer_addr: format!("127.0.0.1:720{id}"),
            role: role as i32,
            reachable: true,
            last_applied,
            lag,
        }
    }

    fn status() -> ClusterStatusResponse {
        ClusterStatusResponse {
            leader_id: 1,
            term: 3,
            commit_index: 12,
            last_applied: 11,
            node_id: 2,
            members: vec![
                member(1, MemberRole::Leader, 12, Some(0)),
                member(2, MemberRole::Follower, 11, Some(1)),
                member(3, MemberRole::Follower, 9, Some(3)),
            ],
            live_claims: 2,
            items: 9,
            items_removed: 4,
        }
    }

    fn counts(pending: u64, claimed: u64, completed: u64) -> StatusCounts {
        StatusCounts {
            pending,
            claimed,
            completed,
            failed: 0,
            cancelled: 0,
        }
    }

    fn claim(id: &str, agent: &str, expires: u64) -> WorkItem {
        WorkItem {
            id: id.into(),
            r#type: "build".into(),
            claim: Some(Claim {
                agent: agent.into(),
                token: 7,
                lease_expires_at_ms: expires,
                lease_ms: 30_000,
                granted_at_ms: 0,
                progress: None,
            }),
            ..Default::default()
        }
    }

    fn snapshot() -> Snapshot {
        let status = status();
        // Node 3 does not answer its probe.
        let probes = HashMap::from([(1, status.clone()), (2, status.clone())]);
        let view = probed_cluster_view(&status, &probes);
        Snapshot {
            cluster: Ok((status, view)),
            stats: Ok(WorkStatsResponse {
                by_status: Some(counts(3, 2, 4)),
                by_type: [
                    ("build".to_string(), counts(1, 2, 4)),
                    ("lint".to_string(), counts(2, 0, 0)),
                ]
                .into(),
                oldest_pending_age_ms: Some(65_000),
                oldest_pending_id: "w7".into(),
                total: 9,
                // As a node before the per-type ages answers.
                oldest_pending_age_ms_by_type: HashMap::new(),
                ..Default::default()
            }),
            oldest_pending_type: Some("lint".into()),
            claims: Ok(ClaimsPage {
                items: vec![claim("w1", "node-1", 10_000), claim("w2", "agent-x", 500)],
                more: false,
            }),
        }
    }

    #[test]
    fn a_frame_shows_the_cluster_the_queues_and_the_claims() {
        let mut per_type = snapshot();
        if let Ok(stats) = per_type.stats.as_mut() {
            stats.oldest_pending_age_ms_by_type =
                HashMap::from([("build".to_string(), 30_000), ("lint".to_string(), 65_000)]);
        }
        per_type.oldest_pending_type = None;
        let frame = frame_text(&per_type, 1_000, 20);
        assert!(
            frame.contains("build  1        2        4          0       0          30s\n"),
            "{frame}"
        );
        assert!(
            frame.contains("lint   2        0        0          0       0          1m 5s\n"),
            "{frame}"
        );
        assert_eq!(
            frame_text(&snapshot(), 1_000, 20),
            "\
node: 2 (127.0.0.1:7102)  leader: 1  term: 3  commit: 12  applied: 11
items: 9  live claims: 2  removed after retention: 4

ID  ADDR            ROLE      APPLIED  LAG  REACHABLE
1   127.0.0.1:7101  leader    11       0    yes
2   127.0.0.1:7102  follower  11       1    yes
3   127.0.0.1:7103  follower  9        3    no

TYPE   PENDING  CLAIMED  COMPLETED  FAILED  CANCELLED  OLDEST_PENDING
build  1        2        4          0       0          -
lint   2        0        0          0       0          1m 5s
(all)  3        2        4          0       0          1m 5s (w7)

live claims: 2
HOLDER   ITEM  TYPE   TOKEN  LEASE    PROGRESS
node-1   w1    build  7      9s       -
agent-x  w2    build  7      expired  -
"
        );
    }

    #[test]
    fn claims_are_cut_to_the_rows_given_and_say_how_many_there_are() {
        let lines = claims_lines(&snapshot(), 1_000, 1);
        assert_eq!(lines.len(), CLAIMS_OVERHEAD + 1);
        assert_eq!(lines[1], "live claims: 1 of 2");
        assert!(lines[3].starts_with("node-1"), "{lines:?}");

        let mut s = snapshot();
        s.stats = Err("no leader".into());
        s.claims = Ok(ClaimsPage {
            items: vec![claim("w1", "node-1", 10_000)],
            more: true,
        });
        assert_eq!(claims_lines(&s, 1_000, 5)[1], "live claims: first 1");
        s.claims = Ok(ClaimsPage::default());
        assert_eq!(claims_lines(&s, 1_000, 5), ["", "live claims: none"]);
    }

    #[test]
    fn a_part_that_failed_shows_its_error_and_the_rest_still_shows() {
        let mut s = snapshot();
        s.cluster = Err("get cluster status: no node answered".into());
        s.claims = Err("list live claims: timed out".into());
        let text = frame_text(&s, 1_000, 20);
        assert!(
            text.starts_with("cluster: error: get cluster status: no node answered\n\nTYPE"),
            "{text}"
        );
        assert!(text.contains("(all)  3"), "{text}");
        assert!(
            text.ends_with("\nlive claims: error: list live claims: timed out\n"),
            "{text}"
        );
        assert_eq!(
            s.errors(),
            [
                "cluster: get cluster status: no node answered",
                "claims: list live claims: timed out"
            ]
        );
        let v = frame_json(&s, 1_000);
        assert_eq!(v["cluster"], Value::Null);
        assert_eq!(v["stats"]["by_type"]["lint"]["pending"], 2);
        assert_eq!(v["errors"]["claims"], "list live claims: timed out");
    }

    #[test]
    fn json_has_each_part_in_its_commands_shape() {
        let v = frame_json(&snapshot(), 1_000);
        assert_eq!(v["cluster"]["leader_id"], 1);
        assert_eq!(v["cluster"]["last_applied"], 11);
        assert_eq!(v["cluster"]["members"][2]["reachable"], false);
        assert_eq!(v["stats"]["oldest_pending_id"], "w7");
        assert_eq!(v["claims"][0]["agent"], "node-1");
        assert_eq!(v["claims"][0]["lease_remaining_ms"], 9_000);
        assert_eq!(v["more_claims"], false);
        assert_eq!(v["errors"], json!({}));
    }

    #[test]
    fn lines_are_cut_to_the_width() {
        assert_eq!(cut("leader: 1", 6), "leader");
        assert_eq!(cut("ab", 6), "ab");
    }
}
