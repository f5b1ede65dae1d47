// How numbers, times and durations read on the dashboard. The API gives
// Unix milliseconds and durations in ms.

/** 1234567 -> "1,234,567"; null -> "–". */
export function num(n) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en-US");
}

/** A duration in ms, to two units at most: "850ms", "8.0s", "2m 05s", "3h 12m", "2d 4h". */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  const neg = ms < 0;
  ms = Math.abs(ms);
  let out;
  if (ms < 1000) out = `${Math.round(ms)}ms`;
  else if (ms < 10_000) out = `${(ms / 1000).toFixed(1)}s`;
  else if (ms < 60_000) out = `${Math.floor(ms / 1000)}s`;
  else if (ms < 3_600_000) {
    const m = Math.floor(ms / 60_000);
    const sec = Math.floor((ms % 60_000) / 1000);
    out = `${m}m ${String(sec).padStart(2, "0")}s`;
  } else if (ms < 86_400_000) {
    const hr = Math.floor(ms / 3_600_000);
    const m = Math.floor((ms % 3_600_000) / 60_000);
    out = `${hr}h ${String(m).padStart(2, "0")}m`;
  } else {
    const d = Math.floor(ms / 86_400_000);
    const hr = Math.floor((ms % 86_400_000) / 3_600_000);
    out = `${d}d ${hr}h`;
  }
  return neg ? `-${out}` : out;
}

/** How long ago a Unix ms time was: "12s ago". */
export function ago(atMs) {
  if (!atMs) return "–";
  const d = Date.now() - atMs;
  if (d < 1000) return "just now";
  return `${duration(d)} ago`;
}

/** A Unix ms time as local "HH:MM:SS.mmm" (with the date when not today). */
export function clock(atMs) {
  if (!atMs) return "–";
  const t = new Date(atMs);
  const today = new Date();
  const time = t.toLocaleTimeString("en-GB", { hour12: false }) +
    "." + String(t.getMilliseconds()).padStart(3, "0");
  if (t.toDateString() === today.toDateString()) return time;
  return `${t.toISOString().slice(0, 10)} ${time}`;
}

/** A full ISO timestamp for tooltips. */
export function iso(atMs) {
  if (!atMs) return "";
  return new Date(atMs).toISOString();
}

/** Any JSON value as compact text for a table cell. */
export function compactJson(value, max = 80) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

/** Any JSON value as indented text for a <pre>. */
export function prettyJson(value) {
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}
