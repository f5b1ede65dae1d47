// Pieces every view shares: status badges in one palette, lease bars that
// count down between refreshes, progress cells, a page-token pager, and the
// error card.

import { h } from "./dom.js";
import { duration, compactJson, ago, iso } from "./format.js";

/** A coloured badge for an item status, a step state or a member role. */
export function badge(kind, value, test) {
  const text = String(value ?? "unknown");
  return h("span", { class: `badge ${kind}-${text}`, "data-test": test, "data-value": text }, text.replace(/_/g, " "));
}

/** The tables' "nothing here" row. */
export function emptyRow(columns, text, test = "empty") {
  return h("tr", { class: "empty", "data-test": test }, h("td", { colspan: columns }, text));
}

/** A panel that says what went wrong, with the server's message. */
export function errorCard(title, error, test = "view-error") {
  const status = error && error.status ? ` (HTTP ${error.status})` : "";
  return h("div", { class: "panel error-card", "data-test": test },
    h("h2", null, title + status),
    h("p", { class: "mono" }, error ? error.message : "unknown error"));
}

// The longest lease seen per claim (item id and token): the API gives only
// what remains, and a renewed lease's grant time says nothing of its length.
const leaseLengths = new Map();

/**
 * A lease bar: how much of the lease remains, counting down locally until
 * the next refresh replaces it. `key` names the claim (id and token).
 */
export function leaseBar(key, remainingMs, test = "lease-remaining", leaseMs = null) {
  if (remainingMs === null || remainingMs === undefined) {
    return h("span", { class: "muted", "data-test": test }, "–");
  }
  const total = leaseMs > 0 ? Math.max(leaseMs, remainingMs) : Math.max(leaseLengths.get(key) || 0, remainingMs, 1);
  leaseLengths.set(key, total);
  if (leaseLengths.size > 5000) leaseLengths.delete(leaseLengths.keys().next().value);
  const fill = h("span", { class: "lease-fill" });
  const text = h("span", { class: "lease-text" });
  const el = h("span", {
    class: "lease", "data-test": test,
    "data-deadline": String(Date.now() + remainingMs), "data-total": String(total),
  }, h("span", { class: "lease-track" }, fill), text);
  paintLease(el, Date.now());
  return el;
}

function paintLease(el, now) {
  const left = Math.max(0, Number(el.dataset.deadline) - now);
  const frac = Math.min(1, left / Number(el.dataset.total));
  const fill = el.querySelector(".lease-fill");
  fill.style.width = `${(frac * 100).toFixed(1)}%`;
  fill.className = "lease-fill " + (left === 0 ? "lease-over" : frac < 0.2 ? "lease-low" : frac < 0.5 ? "lease-mid" : "lease-ok");
  el.querySelector(".lease-text").textContent = left === 0 ? "expired" : duration(left);
  el.dataset.remainingMs = String(Math.round(left));
}

/** "12s ago", kept current by the ticker below between redraws. */
export function agoText(atMs) {
  return h("span", { "data-ago": String(atMs || ""), title: iso(atMs) }, ago(atMs));
}

// One ticker for every lease bar and "ago" on the page: 4 repaints a second
// is smooth enough for a countdown shown in tenths of a second.
let ticks = 0;
setInterval(() => {
  const now = Date.now();
  for (const el of document.querySelectorAll(".lease[data-deadline]")) paintLease(el, now);
  if (ticks++ % 4 === 0) {
    for (const el of document.querySelectorAll("[data-ago]")) el.textContent = ago(Number(el.dataset.ago));
  }
}, 250);

/**
 * What a fetched document says, for telling whether a redraw would change
 * anything: a lease's remaining time becomes its deadline (to the second),
 * which only a renewal moves. Skipping same-looking redraws keeps the
 * user's text selection and hover.
 */
export function signature(value) {
  const now = Date.now();
  return JSON.stringify(value, (key, v) =>
    key === "lease_remaining_ms" && typeof v === "number" ? Math.round((now + v) / 1000) : v);
}

/** A progress cell: a bar for a fraction or a percentage, else the JSON as text. */
export function progressCell(progress) {
  if (progress === null || progress === undefined || progress === "") return h("span", { class: "muted" }, "–");
  // Agents report progress as text; most send JSON.
  if (typeof progress === "string") {
    try {
      progress = JSON.parse(progress);
    } catch {
      // Plain text: shown as it is.
    }
  }
  let frac = null;
  if (typeof progress === "number") frac = progress <= 1 ? progress : progress / 100;
  else if (progress && typeof progress === "object") {
    if (typeof progress.percent === "number") frac = progress.percent / 100;
    else if (typeof progress.fraction === "number") frac = progress.fraction;
    else if (typeof progress.done === "number" && typeof progress.total === "number" && progress.total > 0) {
      frac = progress.done / progress.total;
    }
  }
  const text = compactJson(progress, 48);
  if (frac === null || !Number.isFinite(frac)) {
    return h("span", { class: "mono small", title: JSON.stringify(progress) }, text);
  }
  frac = Math.min(1, Math.max(0, frac));
  return h("span", { class: "progress", title: JSON.stringify(progress), "data-test": "progress" },
    h("span", { class: "progress-track" }, h("span", { class: "progress-fill", style: { width: `${frac * 100}%` } })),
    h("span", { class: "small" }, `${Math.round(frac * 100)}%`));
}

/**
 * Pages through a listing with opaque page tokens. The tokens seen so far
 * are kept per listing (its filters), so "previous" works and the page number
 * is known; a token opened from a link starts a new chain.
 */
export class TokenPager {
  constructor() {
    this.chains = new Map();
  }

  /** The page number (1-based, or null when unknown) of `token` in listing `key`. */
  locate(key, token) {
    token = token || "";
    let chain = this.chains.get(key);
    let i = chain ? chain.indexOf(token) : -1;
    if (i < 0) {
      chain = token ? [null, token] : [""];
      this.chains.set(key, chain);
      i = token ? 1 : 0;
    }
    return { index: i, page: chain[0] === null ? null : i + 1 };
  }

  /** Records that the page after `token` starts at `next`. */
  recordNext(key, token, next) {
    const chain = this.chains.get(key) || [""];
    const i = chain.indexOf(token || "");
    if (i >= 0 && chain[i + 1] !== next) {
      chain.length = i + 1;
      chain.push(next);
    }
    this.chains.set(key, chain);
  }

  /** The token of the page before `token`: "" (the first page) when unknown. */
  previous(key, token) {
    const chain = this.chains.get(key) || [""];
    const i = chain.indexOf(token || "");
    if (i <= 0) return "";
    return chain[i - 1] === null ? "" : chain[i - 1];
  }
}

/** The pager bar under a table. */
export function pagerBar({ page, hasPrev, hasNext, onPrev, onNext, shown }) {
  return h("div", { class: "pager" },
    h("button", { type: "button", "data-test": "prev-page", disabled: !hasPrev, onclick: onPrev }, "← Prev"),
    h("span", { class: "page-number", "data-test": "page-number", "data-page": page === null ? "" : String(page) },
      page === null ? "page ?" : `page ${page}`),
    h("button", { type: "button", "data-test": "next-page", disabled: !hasNext, onclick: onNext }, "Next →"),
    h("span", { class: "muted small" }, shown));
}
