// #/ — the cluster: who is a member, who leads, how far each node has
// applied and how far behind the leader it is. Fed by the app's one
// /api/cluster poll (every second), so the page and the top bar agree.

import { h, replace } from "./dom.js";
import { num, duration } from "./format.js";
import { getJson } from "./api.js";
import { badge, emptyRow, errorCard, signature } from "./widgets.js";
import { statusCards, ageClass, hashFor } from "./work-view.js";

const STATS_REFRESH_MS = 2000;
// The cluster page lists this many of the queues that waited longest.
const QUEUES_SHOWN = 6;

// A follower further behind than this many entries is shown as lagging.
const LAG_WARN = 100;
// The leader not hearing from a member for longer than this is shown amber:
// heartbeats go out every few tens of milliseconds.
const HEARTBEAT_WARN_MS = 1000;

function health(m) {
  if (!m.reachable) return ["down", "unreachable"];
  if (m.role === "candidate") return ["warn", "electing"];
  if (m.role === "learner") return ["warn", "catching up"];
  if (m.role === "unknown") return ["warn", "unknown role"];
  if (m.lag !== null && m.lag !== undefined && m.lag > LAG_WARN) return ["warn", "lagging"];
  return ["ok", "healthy"];
}

function lagCell(m, maxLag) {
  if (m.lag === null || m.lag === undefined) return h("td", { class: "num muted", "data-test": "member-lag" }, "–");
  const frac = maxLag > 0 ? m.lag / maxLag : 0;
  return h("td", { class: "num", "data-test": "member-lag", "data-lag": String(m.lag) },
    h("span", { class: "lagbar" },
      h("span", { class: `lagbar-fill ${m.lag > LAG_WARN ? "lag-high" : ""}`, style: { width: `${frac * 100}%` } })),
    num(m.lag));
}

function memberRow(m, cluster, maxLag) {
  const [state, text] = health(m);
  const self = m.id === cluster.node_id;
  return h("tr", {
    "data-test": "member-row", "data-role": m.role, "data-member-id": String(m.id),
    "data-reachable": String(Boolean(m.reachable)), class: self ? "self" : null,
  },
  h("td", null, h("b", null, `node ${m.id}`), self ? h("span", { class: "tag", title: "this dashboard is served by this node" }, "you") : null),
  h("td", { class: "mono" }, m.addr,
    m.peer_addr && m.peer_addr !== m.addr
      ? h("div", { class: "muted", title: "where its peers reach it (peer_listen)", "data-test": "member-peer-addr" }, `peers ${m.peer_addr}`)
      : null),
  h("td", null, badge("role", m.role, "member-role"), m.voter ? null : h("span", { class: "tag" }, "non-voter")),
  h("td", null, h("span", { class: `health health-${state}`, "data-test": "member-health", "data-health": state }, h("span", { class: "dot" }), text)),
  h("td", { class: "num" }, num(m.term)),
  h("td", { class: "num" }, num(m.commit_index)),
  h("td", { class: "num", "data-test": "member-applied" }, num(m.applied_index)),
  h("td", { class: "num" }, num(m.matched_index)),
  lagCell(m, maxLag),
  h("td", { class: `num ${m.last_heartbeat_ms > HEARTBEAT_WARN_MS ? "age-warn" : ""}`, "data-test": "member-heartbeat" },
    m.last_heartbeat_ms === null || m.last_heartbeat_ms === undefined ? "–" : duration(m.last_heartbeat_ms)));
}

function stat(label, value, test, extra) {
  return h("div", { class: "stat", "data-test": test }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value), extra || null);
}

/** Where work piles up, at a glance: counts by status and the oldest queues. */
function workSummary(stats) {
  const ages = Object.entries(stats.oldest_pending_age_ms_by_type || {})
    .filter(([, age]) => age !== null && age !== undefined)
    .sort((a, b) => b[1] - a[1])
    .slice(0, QUEUES_SHOWN);
  const pendingOf = (type) => ((stats.by_type || {})[type] || {}).pending || 0;
  return h("section", { class: "panel", "data-test": "work-summary" },
    h("div", { class: "panel-head" }, h("h2", null, "Work"), h("a", { class: "small", href: "#/work" }, "all items →")),
    statusCards(stats, { status: "", type: "", holder: "", limit: "", page_token: "" }),
    h("table", { class: "grid compact", "data-test": "queues" },
      h("thead", null, h("tr", null, h("th", null, "Queue (type)"), h("th", { class: "num" }, "pending"), h("th", { class: "num" }, "oldest pending"))),
      h("tbody", null, ages.length
        ? ages.map(([type, age]) => h("tr", { "data-test": "queue-row", "data-type": type },
          h("td", null, h("a", { href: hashFor({ type, status: "pending" }) }, type)),
          h("td", { class: "num" }, num(pendingOf(type))),
          h("td", { class: `num ${ageClass(age)}` }, duration(age))))
        : emptyRow(3, "nothing is waiting"))));
}

function render(root, cluster) {
  const leader = cluster.leader_id;
  const members = [...(cluster.members || [])].sort((a, b) => a.id - b.id);
  const maxLag = Math.max(0, ...members.map((m) => m.lag || 0));
  const reachable = members.filter((m) => m.reachable).length;
  replace(root,
    leader === null || leader === undefined
      ? h("div", { class: "panel warn-card", "data-test": "no-leader" }, "No known leader: the cluster cannot accept writes until one is elected.")
      : null,
    h("div", { class: "stats" },
      stat("Leader", leader === null || leader === undefined ? "none" : `node ${leader}`, "cluster-leader"),
      stat("Term", num(cluster.term), "cluster-term"),
      stat("Members", `${reachable} / ${members.length} reachable`, "cluster-members"),
      stat("Items", num(cluster.items), "cluster-items"),
      stat("Live claims", num(cluster.live_claims), "cluster-claims"),
      stat("Removed (retention)", num(cluster.items_removed), "cluster-removed")),
    h("section", { class: "panel" },
      h("div", { class: "panel-head" }, h("h2", null, "Members"),
        h("span", { class: "muted small" }, `as seen by node ${cluster.node_id}; updated every second`)),
      h("table", { class: "grid", "data-test": "members" },
        h("thead", null, h("tr", null,
          ["Node", "Address", "Role", "Health", "Term", "Commit", "Applied", "Matched", "Lag", "Heard from"].map((c, i) =>
            h("th", { class: i >= 4 ? "num" : null }, c)))),
        h("tbody", null, members.length ? members.map((m) => memberRow(m, cluster, maxLag)) : emptyRow(10, "no members"))),
      h("p", { class: "muted small footnote" },
        "Term, commit and applied index come from each member itself; matched index, lag (the leader's last log index minus the member's matched index) and heard-from come from the leader's view",
        cluster.leader_id === cluster.node_id ? "." : ", so only the leader's dashboard shows them.")));
}

/** Mounts the cluster page; returns its unmount. */
export function mountCluster(root, ctx) {
  const clusterBox = h("div", null, h("div", { class: "loading" }, "Loading cluster…"));
  const workBox = h("div");
  replace(root, clusterBox, workBox);
  const show = ({ cluster, error }) => {
    if (cluster) render(clusterBox, cluster);
    else if (error && !clusterBox.querySelector("[data-test=members]")) replace(clusterBox, errorCard("Cannot read the cluster", error));
  };
  const unsubscribe = ctx.onCluster(show);

  const abort = new AbortController();
  let timer = null;
  let shown = "";
  const refresh = async () => {
    try {
      const stats = await getJson("/api/stats", { signal: abort.signal });
      if (signature(stats) !== shown) {
        shown = signature(stats);
        replace(workBox, workSummary(stats));
      }
    } catch (e) {
      if (abort.signal.aborted) return;
      shown = "";
      replace(workBox, errorCard("Cannot read the work counts", e, "stats-error"));
    }
    if (!abort.signal.aborted) timer = setTimeout(refresh, STATS_REFRESH_MS);
  };
  refresh();
  return () => {
    unsubscribe();
    abort.abort();
    clearTimeout(timer);
  };
}
