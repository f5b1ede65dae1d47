// #/work/<id> — one item: status, holder, token and lease, its history of
// holders and its events; for a workflow, its DAG with each step coloured by
// state and labelled with the node that ran it. Live: the page follows
// /api/work/<id>/watch (server-sent events, fed by WatchWork) and redraws on
// every `item` event until `end`; if the stream cannot be had at all it
// polls instead.

import { h, replace } from "./dom.js";
import { getJson, withToken } from "./api.js";
import { num, clock, iso, prettyJson, compactJson } from "./format.js";
import { badge, emptyRow, errorCard, leaseBar, progressCell, agoText, signature } from "./widgets.js";
import { renderDag } from "./dag.js";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const STEP_STATES = ["pending", "running", "retrying", "succeeded", "failed", "cancelled", "undone", "undo_failed", "skipped", "waiting"];
const POLL_MS = 1000;

function fact(label, value, test) {
  return h("div", { class: "fact", "data-test": test }, h("div", { class: "fact-label" }, label), h("div", { class: "fact-value" }, value));
}

function facts(item) {
  const claim = item.claim;
  return h("div", { class: "facts panel" },
    fact("Holder", claim ? h("a", { href: `#/work?holder=${encodeURIComponent(claim.agent)}` }, claim.agent) : h("span", { class: "muted" }, "nobody"), "item-holder"),
    fact("Fencing token", h("span", { class: "mono" }, item.token ? String(item.token) : "–"), "item-token"),
    fact("Lease remaining", claim ? leaseBar(`${item.id}/${claim.token}`, claim.lease_remaining_ms) : h("span", { class: "muted" }, "–")),
    fact("Progress", claim ? progressCell(claim.progress) : h("span", { class: "muted" }, "–")),
    fact("Attempt", `${item.attempt} of ${item.max_attempts}`, "item-attempt"),
    fact("Priority", num(item.priority)),
    fact("Submitted", h("span", { title: iso(item.submitted_at_ms) }, clock(item.submitted_at_ms), " (", agoText(item.submitted_at_ms), ")")),
    fact("Updated", h("span", { title: iso(item.updated_at_ms) }, clock(item.updated_at_ms), " (", agoText(item.updated_at_ms), ")")),
    item.idempotency_key ? fact("Idempotency key", h("span", { class: "mono" }, item.idempotency_key)) : null,
    claim ? fact("Claimed at", h("span", { title: iso(claim.granted_at_ms) }, clock(claim.granted_at_ms))) : null);
}

function legend(steps) {
  const present = new Set(steps.map((st) => st.state));
  return h("div", { class: "legend" },
    STEP_STATES.filter((st) => present.has(st) || ["pending", "running", "succeeded", "failed"].includes(st))
      .map((st) => h("span", { class: "legend-item" }, h("span", { class: `swatch state-bg-${st}` }), st.replace(/_/g, " "))));
}

function workflowPanel(wf) {
  const steps = wf.steps || [];
  const done = steps.filter((st) => st.state === "succeeded").length;
  const nodes = [...new Set(steps.map((st) => st.node).filter(Boolean))];
  return h("section", { class: "panel", "data-test": "workflow" },
    h("div", { class: "panel-head" },
      h("h2", null, "Workflow ", h("span", { class: "mono" }, wf.name)),
      h("span", { class: "muted small", "data-test": "workflow-summary" },
        `${done} of ${steps.length} steps succeeded` + (nodes.length ? ` · ran on ${nodes.join(", ")}` : ""))),
    steps.length
      ? h("div", { class: "dag-scroll" }, renderDag(steps))
      : h("p", { class: "muted" }, "this workflow has no steps"),
    legend(steps),
    h("table", { class: "grid compact", "data-test": "steps" },
      h("thead", null, h("tr", null, ["Step", "Kind", "After", "State", "Attempts", "Node"].map((c) => h("th", { class: c === "Attempts" ? "num" : null }, c)))),
      h("tbody", null, steps.map((st) => h("tr", { "data-test": "step-row", "data-step": st.name, "data-state": st.state },
        h("td", { class: "mono" }, st.name),
        h("td", null, st.run),
        h("td", { class: "mono small" }, (st.depends_on || []).join(", ") || h("span", { class: "muted" }, "–")),
        h("td", null, badge("state", st.state)),
        h("td", { class: "num" }, num(st.attempts)),
        h("td", null, st.node || h("span", { class: "muted" }, "–")))))));
}

function historyPanel(item) {
  const rows = (item.history || []).map((x) => h("tr", { "data-test": "history-row" },
    h("td", null, x.agent),
    h("td", { class: "num mono" }, String(x.token)),
    h("td", { title: iso(x.granted_at_ms) }, clock(x.granted_at_ms)),
    h("td", null, x.ended ? badge("end", x.ended) : badge("status", "claimed"))));
  return h("section", { class: "panel half" },
    h("div", { class: "panel-head" }, h("h2", null, "Holders"), h("span", { class: "muted small" }, "every claim of this item, oldest first")),
    h("table", { class: "grid compact", "data-test": "history" },
      h("thead", null, h("tr", null, h("th", null, "Agent"), h("th", { class: "num" }, "Token"), h("th", null, "Granted"), h("th", null, "Ended"))),
      h("tbody", null, rows.length ? rows : emptyRow(4, "never claimed"))));
}

function eventsPanel(item) {
  const events = [...(item.events || [])].sort((a, b) => b.seq - a.seq);
  const rows = events.map((e) => h("tr", { "data-test": "event-row", "data-kind": e.kind },
    h("td", { class: "num mono muted" }, String(e.seq)),
    h("td", { class: "mono small", title: iso(e.at_ms) }, clock(e.at_ms)),
    h("td", null, badge("event", e.kind)),
    h("td", null, e.agent || ""),
    h("td", { class: "num mono" }, e.token ? String(e.token) : ""),
    h("td", { class: "mono" }, e.step || ""),
    h("td", { class: "small detail", title: e.detail || "" }, compactJson(e.detail, 90))));
  return h("section", { class: "panel half" },
    h("div", { class: "panel-head" }, h("h2", null, "Events"), h("span", { class: "muted small" }, "newest first")),
    h("div", { class: "events-scroll" },
      h("table", { class: "grid compact", "data-test": "events" },
        h("thead", null, h("tr", null, h("th", { class: "num" }, "#"), h("th", null, "At"), h("th", null, "Event"), h("th", null, "Agent"), h("th", { class: "num" }, "Token"), h("th", null, "Step"), h("th", null, "Detail"))),
        h("tbody", null, rows.length ? rows : emptyRow(7, "no events")))));
}

/** A <details> block whose open state survives redraws. */
function block(open, key, title, body) {
  return h("details", {
    class: "panel block", open: open.has(key),
    ontoggle: (e) => (e.target.open ? open.add(key) : open.delete(key)),
  }, h("summary", null, title), body);
}

function dataPanels(item, open) {
  const out = [];
  if (item.result !== null && item.result !== undefined) {
    out.push(h("section", { class: "panel" }, h("h2", null, "Result"), h("pre", { "data-test": "item-result" }, prettyJson(item.result))));
  }
  const payload = item.payload;
  if (item.type === "workflow" && payload && typeof payload === "object" && typeof payload.spec === "string") {
    out.push(block(open, "spec", "Workflow spec", h("pre", null, payload.spec)));
    out.push(block(open, "inputs", "Inputs", h("pre", null, prettyJson(payload.inputs || {}))));
  } else {
    out.push(block(open, "payload", "Payload", h("pre", { "data-test": "item-payload" }, prettyJson(payload))));
  }
  return out;
}

function liveLabel(state) {
  const text = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", ended: "final", polling: "polling", error: "stopped" }[state] || state;
  return h("span", { class: `live live-${state}`, "data-test": "live-state", "data-live": state, title: "updates of this page" }, h("span", { class: "dot" }), text);
}

function render(root, item, live, open) {
  document.title = `Swarm · ${item.id} · ${item.status}`;
  replace(root,
    h("div", { class: "crumbs" }, h("a", { href: "#/work" }, "Work"), " › ", h("span", { class: "mono" }, item.id)),
    h("div", { class: "item-head" },
      h("h1", { class: "mono", "data-test": "item-id" }, item.id),
      h("span", { class: "tag" }, item.type),
      h("span", { "data-test": "item-status", "data-status": item.status, class: `badge status-${item.status} big` }, item.status),
      liveLabel(live)),
    item.error ? h("div", { class: "panel error-card", "data-test": "item-error" }, h("b", null, "Error: "), h("span", { class: "mono" }, item.error)) : null,
    item.cancel_requested ? h("div", { class: "panel warn-card" }, h("b", null, "Cancel requested: "), item.cancel_requested) : null,
    facts(item),
    item.workflow ? workflowPanel(item.workflow) : null,
    h("div", { class: "two-col" }, historyPanel(item), eventsPanel(item)),
    dataPanels(item, open));
}

/** Mounts the page of item `id`; returns its unmount. */
export function mountItem(root, id, ctx) {
  replace(root, h("div", { class: "loading" }, `Loading ${id}…`));
  const path = `/api/work/${encodeURIComponent(id)}`;
  const abort = new AbortController();
  const open = new Set();
  let item = null;
  let live = "connecting";
  let source = null;
  let pollTimer = null;

  let shown = "";
  const draw = () => {
    if (!item) return;
    // The watch resends the item every second for its lease countdown,
    // which the page keeps by itself: redraw only on a change.
    const now = signature([item, live]);
    if (now === shown) return;
    shown = now;
    try {
      render(root, item, live, open);
    } catch (e) {
      replace(root, errorCard("The dashboard failed to draw this item", e));
    }
  };
  const fail = (error) => {
    if (item) {
      live = "error";
      draw();
      shown = "";
      root.prepend(errorCard(`Stopped following ${id}`, error, "item-error-live"));
    } else {
      replace(root, h("div", { class: "crumbs" }, h("a", { href: "#/work" }, "Work"), " › ", h("span", { class: "mono" }, id)),
        errorCard(`Cannot show ${id}`, error, "item-not-found"));
    }
  };
  const poll = async () => {
    try {
      item = await getJson(path, { signal: abort.signal });
      live = TERMINAL.has(item.status) ? "ended" : "polling";
      draw();
      ctx.reportError("item", null);
      if (live === "polling") pollTimer = setTimeout(poll, POLL_MS);
    } catch (e) {
      if (abort.signal.aborted) return;
      if (e.status === 404) return fail(e);
      ctx.reportError("item", e);
      pollTimer = setTimeout(poll, POLL_MS);
    }
  };
  const follow = () => {
    if (typeof EventSource === "undefined") return poll();
    source = new EventSource(withToken(`${path}/watch`));
    const onItem = (e, ended) => {
      try {
        item = JSON.parse(e.data);
      } catch (err) {
        return fail(new Error(`the watch stream sent something that is not JSON: ${err.message}`));
      }
      live = ended || TERMINAL.has(item.status) ? "ended" : "live";
      if (ended) source.close();
      draw();
    };
    source.addEventListener("open", () => {
      if (live !== "ended") {
        live = "live";
        draw();
      }
    });
    source.addEventListener("item", (e) => onItem(e, false));
    source.addEventListener("end", (e) => onItem(e, true));
    source.addEventListener("error", (e) => {
      // A server-sent `event: error` carries data; a lost connection does not.
      if (typeof e.data === "string") {
        source.close();
        let message = e.data;
        try {
          message = JSON.parse(e.data).error || message;
        } catch {
          // Show the text as it came.
        }
        return fail(new Error(message));
      }
      if (live === "ended") return;
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up on the stream (not an event stream, or an
        // error status): fall back to polling, which shows the error if any.
        source = null;
        poll();
      } else {
        live = "reconnecting";
        draw();
      }
    });
  };

  // One plain read first: it shows the item at once and a 404 with its message.
  getJson(path, { signal: abort.signal }).then((first) => {
    item = first;
    live = TERMINAL.has(item.status) ? "ended" : "connecting";
    draw();
    // A finished item changes no more; a live one is followed.
    if (live !== "ended") follow();
  }, (e) => {
    if (!abort.signal.aborted) fail(e);
  });

  return () => {
    abort.abort();
    clearTimeout(pollTimer);
    if (source) source.close();
  };
}
