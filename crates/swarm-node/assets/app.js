// The Swarm dashboard: a read-only single page app on the node's JSON API
// (notes/dashboard-api.md), plain ES modules with no build step; swarmd
// embeds this directory and serves it under /assets/.
//
// # Layout
// - app.js          routes (#/, #/work, #/work/<id>, #/claims), the top bar,
//                   the one /api/cluster poll, the error banner
// - cluster-view.js #/        members, roles, term, applied index and lag
// - work-view.js    #/work    counts by status and type, queue age, the item table
// - item-view.js    #/work/id one item, live over server-sent events; its DAG
// - claims-view.js  #/claims  who holds what, lease bars, progress
// - dag.js          a workflow's steps as an SVG graph (layered layout)
// - widgets.js      badges, lease bars, progress, the page-token pager
// - api.js          fetch with the server's {"error": ...} as the message
// - dom.js, format.js  building elements; numbers, times, durations
//
// # Test hooks (data-test attributes; stable, the browser tests use them)
// Top bar:   nav-node (the node serving the page), leader-id ("–" when none),
//            nav-term, connection-state [data-state=connecting|ok|down],
//            nav-cluster / nav-work / nav-claims, error-banner (shown on any API error)
// Cluster:   members (table), member-row [data-role, data-member-id, data-reachable],
//            member-role, member-health [data-health=ok|warn|down], member-lag [data-lag],
//            member-applied, member-heartbeat, cluster-leader, cluster-term, no-leader,
//            work-summary, queues, queue-row [data-type] (and the Work status cards)
// Work:      status-count [data-status, data-count], total-count, oldest-pending,
//            type-row [data-type], queue-age, work-filters, filter-status, filter-type,
//            filter-holder, filter-limit, clear-filters, work-table,
//            work-row [data-id, data-status, data-type], work-link, work-status,
//            work-empty, prev-page, next-page, page-number [data-page]
// Item:      item-id, item-status [data-status], item-holder, item-token, item-attempt,
//            lease-remaining [data-remaining-ms], live-state [data-live=connecting|live|
//            reconnecting|polling|ended|error], item-error, item-not-found, workflow,
//            workflow-summary, dag (svg), dag-step [data-step, data-state, data-node],
//            dag-step-node, dag-edge [data-from, data-to], steps, step-row [data-step,
//            data-state], history-row, event-row [data-kind], item-result, item-payload
// Claims:    claims (table), claim-row [data-id, data-agent], claim-lease, agent-chip
//            [data-agent], prev-page, next-page, page-number
// Any view:  view-error (a view that could not load says why), loading

import { h, replace } from "./dom.js";
import { getJson } from "./api.js";
import { num } from "./format.js";
import { mountCluster } from "./cluster-view.js";
import { mountWork } from "./work-view.js";
import { mountItem } from "./item-view.js";
import { mountClaims } from "./claims-view.js";

const CLUSTER_POLL_MS = 1000;

// ---- the one /api/cluster poll: the top bar and the cluster page share it

const clusterListeners = new Set();
let lastCluster = { cluster: null, error: null };

function onCluster(listener) {
  clusterListeners.add(listener);
  if (lastCluster.cluster || lastCluster.error) listener(lastCluster);
  return () => clusterListeners.delete(listener);
}

function paintTopBar({ cluster, error }) {
  const conn = document.querySelector("[data-test=connection-state]");
  const node = document.querySelector("[data-test=nav-node]");
  const leader = document.querySelector("[data-test=leader-id]");
  const term = document.querySelector("[data-test=nav-term]");
  if (cluster) {
    node.textContent = String(cluster.node_id);
    const known = cluster.leader_id !== null && cluster.leader_id !== undefined;
    leader.textContent = known ? String(cluster.leader_id) : "none";
    leader.dataset.leaderId = known ? String(cluster.leader_id) : "";
    leader.classList.toggle("bad", !known);
    term.textContent = num(cluster.term);
  }
  conn.dataset.state = error ? "down" : "ok";
  conn.querySelector(".conn-text").textContent = error ? "unreachable" : "connected";
  conn.title = error ? error.message : "the node answered the last poll";
}

async function pollCluster() {
  try {
    const cluster = await getJson("/api/cluster");
    lastCluster = { cluster, error: null };
    reportError("cluster", null);
  } catch (error) {
    lastCluster = { cluster: lastCluster.cluster, error };
    reportError("cluster", error);
  }
  paintTopBar(lastCluster);
  for (const listener of clusterListeners) {
    try {
      listener(lastCluster);
    } catch (e) {
      reportError("render", e);
    }
  }
  setTimeout(pollCluster, CLUSTER_POLL_MS);
}

// ---- the error banner: the latest error of each source, until it clears

const errors = new Map();

function reportError(source, error) {
  if (error) errors.set(source, error);
  else errors.delete(source);
  const banner = document.querySelector("[data-test=error-banner]");
  if (errors.size === 0) {
    banner.hidden = true;
    banner.replaceChildren();
    return;
  }
  banner.hidden = false;
  replace(banner, [...errors.entries()].map(([src, e]) =>
    h("div", { class: "error-line", "data-source": src },
      h("b", null, e.status ? `HTTP ${e.status}` : "error"), " ", e.message)));
}

// ---- routes

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const q = raw.indexOf("?");
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : "");
  return { path, params };
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

let unmount = null;

function route() {
  const view = document.getElementById("view");
  if (unmount) {
    unmount();
    unmount = null;
  }
  // Errors of the view left behind are no longer news.
  for (const source of ["work", "item", "claims", "render"]) errors.delete(source);
  reportError("route", null);

  const { path, params } = parseHash();
  const ctx = { go, reportError, onCluster };
  let tab = null;
  try {
    if (path === "/" || path === "") {
      tab = "cluster";
      unmount = mountCluster(view, ctx);
    } else if (path === "/work") {
      tab = "work";
      unmount = mountWork(view, params, ctx);
    } else if (path.startsWith("/work/")) {
      tab = "work";
      let id = path.slice("/work/".length);
      try {
        id = decodeURIComponent(id);
      } catch {
        // A malformed escape: look the id up as written.
      }
      unmount = mountItem(view, id, ctx);
    } else if (path === "/claims") {
      tab = "claims";
      unmount = mountClaims(view, params, ctx);
    } else {
      replace(view, h("div", { class: "panel error-card", "data-test": "view-error" },
        h("h2", null, "No such page"),
        h("p", null, "The dashboard has no page ", h("span", { class: "mono" }, `#${path}`), ". ", h("a", { href: "#/" }, "Go to the cluster"), ".")));
    }
  } catch (e) {
    replace(view, h("div", { class: "panel error-card", "data-test": "view-error" }, h("h2", null, "The dashboard failed to draw this page"), h("p", { class: "mono" }, String(e && e.message))));
  }
  for (const a of document.querySelectorAll(".tabs a")) a.classList.toggle("active", a.dataset.route === tab);
  document.title = `Swarm · ${tab || "?"}`;
}

window.addEventListener("hashchange", route);
// Scripts of type=module run after the document is parsed.
route();
pollCluster();
