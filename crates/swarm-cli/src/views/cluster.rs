//! The cluster as `cluster status` and `node add|remove` show it.
//!
//! JSON: `{"leader_id": N|null, "term": N, "members": [{"id", "addr",
//! "role", "reachable", "last_applied"}]}`, plus extra keys.

use std::collections::HashMap;

use serde::Serialize;
use swarm_client::proto::{ClusterStatusResponse, Member, MemberRole};

use crate::output::{Table, or_dash};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterView {
    /// Null while no leader is known.
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    /// The node whose answer gave the membership.
    pub answered_by: u64,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    pub id: u64,
    pub addr: String,
    /// Where peers reach it: its peer port, or `addr`.
    pub peer_addr: String,
    /// `leader`, `follower` or `learner`.
    pub role: &'static str,
    pub reachable: bool,
    pub last_applied: u64,
    /// Entries behind the leader's log, when the answering node knows.
    pub lag: Option<u64>,
}

/// The cluster as one node sees it, without asking the others.
pub fn cluster_view(status: &ClusterStatusResponse) -> ClusterView {
    ClusterView {
        leader_id: leader_id(status),
        term: status.term,
        commit_index: status.commit_index,
        answered_by: status.node_id,
        members: status
            .members
            .iter()
            .map(|m| MemberView {
                id: m.id,
                addr: m.addr.clone(),
                peer_addr: m.peer_addr.clone(),
                role: role_name(m, status),
                reachable: m.reachable,
                last_applied: m.last_applied,
                lag: m.lag,
            })
            .collect(),
    }
}

/// The cluster as `status` sees it, with each member's reachability and
/// `last_applied` taken from the member's own answer (`probes`, keyed by
/// member id; missing = it did not answer). For a member that did not
/// answer, `last_applied` comes from the leader's view when the leader
/// answered, else from `status`.
pub fn probed_cluster_view(
    status: &ClusterStatusResponse,
    probes: &HashMap<u64, ClusterStatusResponse>,
) -> ClusterView {
    let leader_view = match leader_id(status) {
        Some(id) if id == status.node_id => Some(status),
        Some(id) => probes.get(&id),
        None => None,
    };
    let mut view = cluster_view(status);
    for member in &mut view.members {
        match probes.get(&member.id) {
            Some(own) => {
                member.reachable = true;
                member.last_applied = own.last_applied;
            }
            None => {
                member.reachable = false;
                if let Some(seen) =
                    leader_view.and_then(|l| l.members.iter().find(|m| m.id == member.id))
                {
                    member.last_applied = seen.last_applied;
                    member.lag = seen.lag;
                }
            }
        }
    }
    view
}

pub fn cluster_table(view: &ClusterView) -> String {
    let mut table = Table::new(&[
        "ID",
        "ADDR",
        "PEER_ADDR",
        "ROLE",
        "REACHABLE",
        "LAST_APPLIED",
        "LAG",
    ]);
    for m in &view.members {
        table.push(vec![
            m.id.to_string(),
            m.addr.clone(),
            m.peer_addr.clone(),
            m.role.to_string(),
            if m.reachable { "yes" } else { "no" }.to_string(),
            m.last_applied.to_string(),
            or_dash(m.lag),
        ]);
    }
    format!(
        "leader: {}  term: {}  commit index: {}\n\n{}",
        view.leader_id
            .map_or_else(|| "none".to_string(), |id| id.to_string()),
        view.term,
        view.commit_index,
        table.render()
    )
}

fn leader_id(status: &ClusterStatusResponse) -> Option<u64> {
    (status.leader_id != 0).then_some(status.leader_id)
}

fn role_name(member: &Member, status: &ClusterStatusResponse) -> &'static str {
    match MemberRole::try_from(member.role) {
        Ok(MemberRole::Leader) => "leader",
        Ok(MemberRole::Follower) => "follower",
        Ok(MemberRole::Learner) => "learner",
        Ok(MemberRole::Unspecified) | Err(_) if member.id == status.leader_id => "leader",
        Ok(MemberRole::Unspecified) | Err(_) => "unknown",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn member(id: u64, role: MemberRole, last_applied: u64) -> Member {
        Member {
            id,
            addr: format!("127.0.0.1:710{id}"),
            peer_addr: format!("127.0.0.1:720{id}"),
            role: role as i32,
            reachable: true,
            last_applied,
            lag: None,
        }
    }

    /// Node 2 (a follower) answers; node 1 leads.
    fn status_from_follower() -> ClusterStatusResponse {
        ClusterStatusResponse {
            leader_id: 1,
            term: 4,
            commit_index: 90,
            last_applied: 88,
            node_id: 2,
            members: vec![
                member(1, MemberRole::Leader, 0),
                member(2, MemberRole::Follower, 0),
                member(3, MemberRole::Learner, 0),
            ],
            live_claims: 0,
            items: 0,
            items_removed: 0,
        }
    }

    fn own(node_id: u64, last_applied: u64, members: Vec<Member>) -> ClusterStatusResponse {
        ClusterStatusResponse {
            leader_id: 1,
            term: 4,
            node_id,
            last_applied,
            members,
            ..Default::default()
        }
    }

    #[test]
    fn each_member_reports_its_own_last_applied() {
        let probes = HashMap::from([
            (1, own(1, 95, vec![])),
            (2, own(2, 88, vec![])),
            (3, own(3, 80, vec![])),
        ]);
        let view = probed_cluster_view(&status_from_follower(), &probes);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["leader_id"], 1);
        assert_eq!(json["term"], 4);
        assert_eq!(
            json["members"],
            json!([
                {"id": 1, "addr": "127.0.0.1:7101", "peer_addr": "127.0.0.1:7201", "role": "leader", "reachable": true, "last_applied": 95, "lag": null},
                {"id": 2, "addr": "127.0.0.1:7102", "peer_addr": "127.0.0.1:7202", "role": "follower", "reachable": true, "last_applied": 88, "lag": null},
                {"id": 3, "addr": "127.0.0.1:7103", "peer_addr": "127.0.0.1:7203", "role": "learner", "reachable": true, "last_applied": 80, "lag": null},
            ])
        );
    }

    #[test]
    fn a_silent_member_is_unreachable_with_the_leaders_view() {
        let mut seen_by_leader = member(3, MemberRole::Learner, 70);
        seen_by_leader.lag = Some(25);
        let probes = HashMap::from([
            (
                1,
                own(
                    1,
                    95,
                    vec![member(1, MemberRole::Leader, 95), seen_by_leader],
                ),
            ),
            (2, own(2, 88, vec![])),
        ]);
        let view = probed_cluster_view(&status_from_follower(), &probes);
        let m3 = &view.members[2];
        assert!(!m3.reachable);
        assert_eq!((m3.last_applied, m3.lag), (70, Some(25)));
    }

    #[test]
    fn no_leader_is_null() {
        let status = ClusterStatusResponse {
            leader_id: 0,
            members: vec![member(1, MemberRole::Unspecified, 3)],
            ..Default::default()
        };
        let view = probed_cluster_view(&status, &HashMap::new());
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["leader_id"], serde_json::Value::Null);
        assert_eq!(json["members"][0]["role"], "unknown");
        assert_eq!(json["members"][0]["reachable"], false);
        assert_eq!(json["members"][0]["last_applied"], 3);
    }

    #[test]
    fn table_has_one_row_per_member() {
        let view = cluster_view(&status_from_follower());
        let text = cluster_table(&view);
        assert!(
            text.starts_with("leader: 1  term: 4  commit index: 90\n"),
            "{text}"
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with(char::is_numeric))
                .count(),
            3
        );
        assert!(
            text.contains("1   127.0.0.1:7101  127.0.0.1:7201  leader    yes"),
            "{text}"
        );
    }
}
