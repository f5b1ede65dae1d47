// #/claims — who holds what: every live claim with its holder, token, the
// lease it has left (a bar counting down) and the progress it last reported;
// above it, how many claims each agent holds on this page.

import { h, replace } from "./dom.js";
import { getJson, query } from "./api.js";
import { num, clock, iso } from "./format.js";
import { emptyRow, errorCard, leaseBar, progressCell, TokenPager, pagerBar, agoText, signature } from "./widgets.js";

const REFRESH_MS = 1000;
const DEFAULT_LIMIT = 100;
// Expiring soon: a lease with less left than this is flagged in its row.
const LOW_LEASE_MS = 2000;

const pager = new TokenPager();

function claimRow(c) {
  return h("tr", { "data-test": "claim-row", "data-id": c.id, "data-agent": c.agent, class: c.lease_remaining_ms < LOW_LEASE_MS ? "expiring" : null },
    h("td", { class: "mono" }, h("a", { href: `#/work/${encodeURIComponent(c.id)}` }, c.id)),
    h("td", null, c.type),
    h("td", null, h("a", { href: `#/work${query({ holder: c.agent })}` }, c.agent)),
    h("td", { class: "num mono" }, String(c.token)),
    h("td", { class: "lease-cell" }, leaseBar(`${c.id}/${c.token}`, c.lease_remaining_ms, "claim-lease", c.lease_ms)),
    h("td", null, progressCell(c.progress)),
    h("td", { class: "num", title: iso(c.granted_at_ms) }, `${clock(c.granted_at_ms)}`),
    h("td", { class: "num" }, agoText(c.granted_at_ms)));
}

function agentsSummary(claims) {
  const byAgent = new Map();
  for (const c of claims) byAgent.set(c.agent, (byAgent.get(c.agent) || 0) + 1);
  const agents = [...byAgent.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return h("div", { class: "chips", "data-test": "agents" },
    agents.length ? agents.map(([agent, n]) => h("a", { class: "chip", href: `#/work${query({ holder: agent })}`, "data-test": "agent-chip", "data-agent": agent },
      h("b", null, agent), h("span", { class: "chip-count" }, num(n))))
      : h("span", { class: "muted" }, "no agent holds anything"));
}

/** Mounts the claims page; returns its unmount. */
export function mountClaims(root, params, ctx) {
  const limit = params.get("limit") || "";
  const token = params.get("page_token") || "";
  const hashFor = (pageToken) => `#/claims${query({ limit, page_token: pageToken })}`;
  replace(root, h("div", { class: "loading" }, "Loading claims…"));
  const abort = new AbortController();
  let timer = null;
  let shown = "";

  const draw = (page) => {
    const key = limit;
    const { index, page: pageNo } = pager.locate(key, token);
    if (page.next_page_token) pager.recordNext(key, token, page.next_page_token);
    const claims = page.claims || [];
    replace(root,
      h("section", { class: "panel" },
        h("div", { class: "panel-head" }, h("h2", null, "Holders"), h("span", { class: "muted small" }, "claims per agent on this page")),
        agentsSummary(claims)),
      h("section", { class: "panel" },
        h("div", { class: "panel-head" }, h("h2", null, "Live claims"), h("span", { class: "muted small" }, "in id order; lease bars count down between refreshes")),
        h("table", { class: "grid", "data-test": "claims" },
          h("thead", null, h("tr", null, ["Item", "Type", "Holder", "Token", "Lease remaining", "Progress", "Granted", "Held for"].map((c) =>
            h("th", { class: ["Token", "Granted", "Held for"].includes(c) ? "num" : null }, c)))),
          h("tbody", null, claims.length ? claims.map(claimRow) : emptyRow(8, "no live claims", "claims-empty"))),
        pagerBar({
          page: pageNo, hasPrev: index > 0 || Boolean(token), hasNext: Boolean(page.next_page_token),
          onPrev: () => ctx.go(hashFor(pager.previous(key, token))),
          onNext: () => ctx.go(hashFor(page.next_page_token)),
          shown: `${claims.length} claim${claims.length === 1 ? "" : "s"} on this page`,
        })));
  };

  const refresh = async () => {
    try {
      const page = await getJson(`/api/claims${query({ limit: limit || DEFAULT_LIMIT, page_token: token })}`, { signal: abort.signal });
      if (signature(page) !== shown) {
        shown = signature(page);
        draw(page);
      }
      ctx.reportError("claims", null);
    } catch (e) {
      if (abort.signal.aborted) return;
      ctx.reportError("claims", e);
      if (!root.querySelector("[data-test=claims]")) {
        shown = "";
        replace(root, errorCard("Cannot list claims", e, "claims-error"));
      }
    }
    if (!abort.signal.aborted) timer = setTimeout(refresh, REFRESH_MS);
  };
  refresh();
  return () => {
    abort.abort();
    clearTimeout(timer);
  };
}
