// The node's JSON API (contract: notes/dashboard-api.md). Every failure
// becomes an ApiError whose message is what the page shows: the server's
// {"error": "..."} body when there is one, else what went wrong on the way.

export class ApiError extends Error {
  /** status: the HTTP status, or 0 when the node could not be reached. */
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

// A node with a tokens file wants a token for its API. The page takes one
// from its address (/?token=TOKEN, then drops it from the address bar) and
// keeps it for this tab; every call sends it.
const TOKEN_KEY = "swarm-token";
(() => {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  if (given === null) return;
  try {
    sessionStorage.setItem(TOKEN_KEY, given);
  } catch {
    // Storage refused (private mode): the token lasts for this page only.
    window.swarmToken = given;
  }
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
})();

/** The token this tab was given, or "". */
function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || window.swarmToken || "";
  } catch {
    return window.swarmToken || "";
  }
}

/** `path` with the token as ?access_token=, for what cannot send headers (EventSource). */
export function withToken(path) {
  const t = token();
  if (!t) return path;
  return `${path}${path.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(t)}`;
}

/** The message of a failed response: its JSON `error`, its text, or its status. */
async function errorMessage(response) {
  let text = "";
  try {
    text = await response.text();
  } catch {
    // The body is lost; the status still says something.
  }
  if (text) {
    try {
      const body = JSON.parse(text);
      if (body && typeof body.error === "string") return body.error;
    } catch {
      // Not JSON: show the text as it came.
    }
    return text.length > 300 ? text.slice(0, 300) + "…" : text;
  }
  return `${response.status} ${response.statusText}`.trim();
}

/** GET a JSON document; throws ApiError. */
export async function getJson(path, { signal, timeoutMs = 5000 } = {}) {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), timeoutMs);
  const onAbort = () => timeout.abort();
  if (signal) signal.addEventListener("abort", onAbort, { once: true });
  let response;
  try {
    const headers = { Accept: "application/json" };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    response = await fetch(path, {
      signal: timeout.signal,
      headers,
      cache: "no-store",
    });
  } catch (e) {
    if (signal && signal.aborted) throw e;
    const why = timeout.signal.aborted ? `no answer within ${timeoutMs / 1000}s` : e.message;
    throw new ApiError(0, `cannot reach the node for ${path}: ${why}`);
  } finally {
    clearTimeout(timer);
    if (signal) signal.removeEventListener("abort", onAbort);
  }
  if (!response.ok) {
    throw new ApiError(response.status, await errorMessage(response));
  }
  try {
    return await response.json();
  } catch (e) {
    throw new ApiError(response.status, `${path} answered with something that is not JSON: ${e.message}`);
  }
}

/** A query string from an object, leaving out empty values: {a: 1, b: ""} -> "?a=1". */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}
