// #/work — where work piles up: counts by status and by type, how long the
// oldest pending item of each type has waited (the number to alert on), and
// a filterable table of items, page by page. Filters and the page token live
// in the hash (#/work?status=pending&type=build&limit=25&page_token=...), so
// a view can be linked to and reloaded.

import { h, replace } from "./dom.js";
import { getJson, query } from "./api.js";
import { num, duration } from "./format.js";
import { badge, emptyRow, errorCard, leaseBar, progressCell, TokenPager, pagerBar, agoText, signature } from "./widgets.js";

export const STATUSES = ["pending", "claimed", "completed", "failed", "cancelled"];
const LIMITS = [10, 25, 50, 100, 250, 1000];
const DEFAULT_LIMIT = 50;
const REFRESH_MS = 2000;
// A queue whose oldest pending item waited longer than these is shown amber / red.
const AGE_WARN_MS = 60_000;
const AGE_BAD_MS = 300_000;

const pager = new TokenPager();

/** The filters of the hash's query string, with what is missing left empty. */
function filtersOf(params) {
  return {
    status: params.get("status") || "",
    type: params.get("type") || "",
    holder: params.get("holder") || "",
    limit: params.get("limit") || "",
    page_token: params.get("page_token") || "",
  };
}

export function hashFor(filters) {
  return `#/work${query(filters)}`;
}

export function ageClass(ms) {
  if (ms === null || ms === undefined) return "muted";
  return ms > AGE_BAD_MS ? "age-bad" : ms > AGE_WARN_MS ? "age-warn" : "";
}

/** Counts by status as cards that filter the table; also the cluster page's summary. */
export function statusCards(stats, filters) {
  const card = (status, count) => h("a", {
    class: `stat stat-link status-card-${status} ${filters.status === status ? "active" : ""}`,
    href: hashFor({ ...filters, status: filters.status === status ? "" : status, page_token: "" }),
    "data-test": "status-count", "data-status": status, "data-count": String(count),
    title: filters.status === status ? "clear the status filter" : `show ${status} items`,
  }, h("div", { class: "stat-label" }, h("span", { class: `dot status-dot-${status}` }), status), h("div", { class: "stat-value" }, num(count)));
  return h("div", { class: "stats" },
    h("div", { class: "stat", "data-test": "total-count" }, h("div", { class: "stat-label" }, "total"), h("div", { class: "stat-value" }, num(stats.total))),
    STATUSES.map((st) => card(st, (stats.by_status || {})[st] || 0)),
    h("div", { class: "stat", "data-test": "oldest-pending" },
      h("div", { class: "stat-label" }, "oldest pending"),
      h("div", { class: `stat-value ${ageClass(stats.oldest_pending_age_ms)}` },
        stats.oldest_pending_age_ms === null || stats.oldest_pending_age_ms === undefined ? "none" : duration(stats.oldest_pending_age_ms))));
}

function typeTable(stats, filters) {
  const types = Object.entries(stats.by_type || {}).sort(([a], [b]) => a.localeCompare(b));
  const ages = stats.oldest_pending_age_ms_by_type || {};
  const rows = types.map(([type, counts]) => {
    const total = STATUSES.reduce((a, st) => a + (counts[st] || 0), 0);
    const age = ages[type];
    return h("tr", { "data-test": "type-row", "data-type": type, class: filters.type === type ? "selected" : null },
      h("td", null, h("a", { href: hashFor({ ...filters, type: filters.type === type ? "" : type, page_token: "" }) }, type)),
      h("td", { class: "mix-cell" }, h("span", { class: "mix", title: STATUSES.map((st) => `${st}: ${counts[st] || 0}`).join("\n") },
        STATUSES.map((st) => (counts[st] ? h("span", { class: `mix-part status-bg-${st}`, style: { flexGrow: String(counts[st]) } }) : null)))),
      STATUSES.map((st) => h("td", { class: `num ${counts[st] ? "" : "muted"}`, "data-status": st }, num(counts[st] || 0))),
      h("td", { class: "num" }, num(total)),
      h("td", { class: `num ${ageClass(age)}`, "data-test": "queue-age" }, age === null || age === undefined ? "–" : duration(age)));
  });
  return h("section", { class: "panel" },
    h("div", { class: "panel-head" }, h("h2", null, "By type"), h("span", { class: "muted small" }, "queue age: how long the oldest pending item of the type has waited")),
    h("table", { class: "grid", "data-test": "types" },
      h("thead", null, h("tr", null, h("th", null, "Type"), h("th", null, "Mix"), STATUSES.map((st) => h("th", { class: "num" }, st)), h("th", { class: "num" }, "total"), h("th", { class: "num" }, "queue age"))),
      h("tbody", null, rows.length ? rows : emptyRow(9, "no items yet"))));
}

function filterForm(filters, types, go) {
  const apply = () => {
    const form = document.querySelector("[data-test=work-filters]");
    if (!form) return;
    const data = new FormData(form);
    go(hashFor({
      status: data.get("status"), type: String(data.get("type") || "").trim(), holder: String(data.get("holder") || "").trim(),
      limit: data.get("limit") === String(DEFAULT_LIMIT) ? "" : data.get("limit"), page_token: "",
    }));
  };
  const limit = filters.limit || String(DEFAULT_LIMIT);
  const limits = LIMITS.map(String).includes(limit) ? LIMITS.map(String) : [...LIMITS.map(String), limit];
  return h("form", {
    class: "filters", "data-test": "work-filters",
    onsubmit: (e) => { e.preventDefault(); apply(); },
  },
  h("label", null, "Status",
    h("select", { name: "status", "data-test": "filter-status", onchange: apply },
      h("option", { value: "" }, "any"),
      STATUSES.map((st) => h("option", { value: st, selected: filters.status === st }, st)))),
  h("label", null, "Type",
    h("input", { name: "type", "data-test": "filter-type", list: "work-types", value: filters.type, placeholder: "any", autocomplete: "off" }),
    h("datalist", { id: "work-types" }, types.map((t) => h("option", { value: t })))),
  h("label", null, "Holder",
    h("input", { name: "holder", "data-test": "filter-holder", value: filters.holder, placeholder: "any agent", autocomplete: "off" })),
  h("label", null, "Per page",
    h("select", { name: "limit", "data-test": "filter-limit", onchange: apply },
      limits.map((l) => h("option", { value: l, selected: l === limit }, l)))),
  h("button", { type: "submit" }, "Apply"),
  filters.status || filters.type || filters.holder || filters.limit
    ? h("a", { class: "clear", href: "#/work", "data-test": "clear-filters" }, "clear filters")
    : null);
}

function workRow(item) {
  const href = `#/work/${encodeURIComponent(item.id)}`;
  return h("tr", { "data-test": "work-row", "data-id": item.id, "data-status": item.status, "data-type": item.type },
    h("td", { class: "mono" }, h("a", { href, "data-test": "work-link" }, item.id)),
    h("td", null, item.type),
    h("td", null, badge("status", item.status, "work-status")),
    h("td", { class: "num" }, num(item.priority)),
    h("td", { class: "num" }, `${item.attempt}/${item.max_attempts}`),
    h("td", null, item.agent ? h("a", { href: hashFor({ holder: item.agent }) }, item.agent) : h("span", { class: "muted" }, "–")),
    h("td", { class: "num mono" }, item.token ? String(item.token) : "–"),
    h("td", null, item.status === "claimed" ? leaseBar(`${item.id}/${item.token}`, item.lease_remaining_ms) : h("span", { class: "muted" }, "–")),
    h("td", null, progressCell(item.progress)),
    h("td", { class: "num" }, agoText(item.submitted_at_ms)),
    h("td", { class: "num" }, agoText(item.updated_at_ms)));
}

function workTable(page, filters, go) {
  const key = JSON.stringify([filters.status, filters.type, filters.holder, filters.limit]);
  const { index, page: pageNo } = pager.locate(key, filters.page_token);
  if (page.next_page_token) pager.recordNext(key, filters.page_token, page.next_page_token);
  const items = page.items || [];
  const what = [filters.status, filters.type && `type ${filters.type}`, filters.holder && `held by ${filters.holder}`].filter(Boolean).join(", ");
  return h("section", { class: "panel" },
    h("div", { class: "panel-head" }, h("h2", null, "Items"), h("span", { class: "muted small" }, what ? `filtered: ${what}` : "all items, in id order")),
    h("table", { class: "grid", "data-test": "work-table" },
      h("thead", null, h("tr", null,
        ["ID", "Type", "Status", "Prio", "Attempt", "Holder", "Token", "Lease", "Progress", "Submitted", "Updated"].map((c) =>
          h("th", { class: ["Prio", "Attempt", "Token", "Submitted", "Updated"].includes(c) ? "num" : null }, c)))),
      h("tbody", null, items.length ? items.map(workRow) : emptyRow(11, what ? "no items match these filters" : "no items", "work-empty"))),
    pagerBar({
      page: pageNo, hasPrev: index > 0 || Boolean(filters.page_token), hasNext: Boolean(page.next_page_token),
      onPrev: () => go(hashFor({ ...filters, page_token: pager.previous(key, filters.page_token) })),
      onNext: () => go(hashFor({ ...filters, page_token: page.next_page_token })),
      shown: `${items.length} item${items.length === 1 ? "" : "s"} on this page`,
    }));
}

/** Mounts the work page for the hash's query `params`; returns its unmount. */
export function mountWork(root, params, ctx) {
  const filters = filtersOf(params);
  const statsBox = h("div", { "data-test": "work-stats" }, h("div", { class: "loading" }, "Loading counts…"));
  const typesBox = h("div");
  const formBox = h("div", { class: "panel filters-panel" }, filterForm(filters, [], ctx.go));
  const tableBox = h("div", null, h("div", { class: "loading" }, "Loading items…"));
  replace(root, statsBox, typesBox, formBox, tableBox);

  const abort = new AbortController();
  let timer = null;
  let knownTypes = "";
  let shownStats = "";
  let shownPage = "";
  const refresh = async () => {
    try {
      await refreshOnce();
    } catch (e) {
      // A bug in rendering must not stop the page from refreshing.
      replace(tableBox, errorCard("The dashboard failed to draw this page", e));
    }
    if (!abort.signal.aborted) timer = setTimeout(refresh, REFRESH_MS);
  };
  const refreshOnce = async () => {
    const listing = getJson(`/api/work${query({ ...filters, limit: filters.limit })}`, { signal: abort.signal });
    const stats = getJson("/api/stats", { signal: abort.signal });
    const [statsResult, pageResult] = await Promise.allSettled([stats, listing]);
    if (abort.signal.aborted) return;
    if (statsResult.status === "fulfilled" && signature(statsResult.value) !== shownStats) {
      const s = statsResult.value;
      shownStats = signature(s);
      replace(statsBox, statusCards(s, filters));
      replace(typesBox, typeTable(s, filters));
      const types = Object.keys(s.by_type || {}).sort();
      // The datalist only: rebuilding the form would drop what the user is typing.
      if (types.join("\n") !== knownTypes) {
        knownTypes = types.join("\n");
        const list = formBox.querySelector("#work-types");
        if (list) replace(list, types.map((t) => h("option", { value: t })));
      }
    } else if (statsResult.status === "rejected") {
      shownStats = "";
      replace(statsBox, errorCard("Cannot read the counts", statsResult.reason, "stats-error"));
    }
    if (pageResult.status === "fulfilled" && signature(pageResult.value) !== shownPage) {
      shownPage = signature(pageResult.value);
      replace(tableBox, workTable(pageResult.value, filters, ctx.go));
    } else if (pageResult.status === "rejected") {
      shownPage = "";
      replace(tableBox, errorCard("Cannot list items", pageResult.reason, "work-error"));
    }
    ctx.reportError("work", statsResult.status === "rejected" ? statsResult.reason : pageResult.status === "rejected" ? pageResult.reason : null);
  };
  refresh();
  return () => {
    abort.abort();
    clearTimeout(timer);
  };
}
