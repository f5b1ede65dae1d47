//! Live claims, one per claimed [`WorkItem`], as `claims list` shows them.
//!
//! JSON: an array of `{"agent", "id", "type", "token", "lease_expires_at"
//! (Unix epoch ms), "lease_remaining_ms" (0 once expired), "progress" (or
//! null)}`.

use serde_json::{Value, json};
use swarm_client::proto::WorkItem;

use crate::output::{Table, or_dash, time_left};

/// The items that carry a live claim, optionally only `agent`'s.
pub fn claimed<'a>(
    items: &'a [WorkItem],
    agent: Option<&'a str>,
) -> impl Iterator<Item = &'a WorkItem> + 'a {
    items.iter().filter(move |item| {
        item.claim
            .as_ref()
            .is_some_and(|c| agent.is_none_or(|a| c.agent == a))
    })
}

pub fn claims_json<'a>(items: impl Iterator<Item = &'a WorkItem>, now_ms: u64) -> Value {
    let claims = items
        .filter_map(|item| {
            let c = item.claim.as_ref()?;
            Some(json!({
                "agent": c.agent,
                "id": item.id,
                "type": item.r#type,
                "token": c.token,
                "lease_expires_at": c.lease_expires_at_ms,
                "lease_remaining_ms": c.lease_expires_at_ms.saturating_sub(now_ms),
                "progress": c.progress,
            }))
        })
        .collect();
    Value::Array(claims)
}

pub fn claims_table<'a>(items: impl Iterator<Item = &'a WorkItem>, now_ms: u64) -> Table {
    let mut table = Table::new(&["AGENT", "ID", "TYPE", "TOKEN", "LEASE", "PROGRESS"]);
    for item in items {
        let Some(c) = item.claim.as_ref() else {
            continue;
        };
        table.push(vec![
            c.agent.clone(),
            item.id.clone(),
            item.r#type.clone(),
            c.token.to_string(),
            time_left(c.lease_expires_at_ms, now_ms),
            or_dash(c.progress.as_deref()),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use swarm_client::proto::Claim;

    use super::*;

    fn item(id: &str, agent: Option<&str>) -> WorkItem {
        WorkItem {
            id: id.into(),
            r#type: "workflow".into(),
            claim: agent.map(|a| Claim {
                agent: a.into(),
                token: 7,
                lease_expires_at_ms: 10_000,
                lease_ms: 10_000,
                granted_at_ms: 0,
                progress: Some("2/5".into()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn json_shape_and_agent_filter() {
        let items = [
            item("w1", Some("node-1")),
            item("w2", Some("node-2")),
            item("w3", None),
        ];
        assert_eq!(
            claims_json(claimed(&items, Some("node-2")), 4_500),
            json!([{"agent": "node-2", "id": "w2", "type": "workflow", "token": 7,
                    "lease_expires_at": 10_000, "lease_remaining_ms": 5_500,
                    "progress": "2/5"}])
        );
        assert_eq!(claimed(&items, None).count(), 2);
        assert_eq!(
            claims_json(claimed(&items, None), 20_000)[0]["lease_remaining_ms"],
            0
        );
    }

    #[test]
    fn table_humanizes_the_lease() {
        let items = [item("w1", Some("node-1"))];
        assert_eq!(
            claims_table(claimed(&items, None), 1_000).render(),
            "AGENT   ID  TYPE      TOKEN  LEASE  PROGRESS\nnode-1  w1  workflow  7      9s     2/5\n"
        );
    }
}
