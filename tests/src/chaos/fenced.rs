//! The fenced resource: a harness-side store standing for any external
//! system a work item's holder writes to. It remembers the highest fencing
//! token seen per item and rejects writes with a lower one, the way a real
//! system fences a stale holder. A write with the highest token seen is the
//! same holder writing again and is accepted.
//!
//! It keeps a log of every write attempt so the checker can recompute,
//! without trusting the resource, whether a stale write was ever accepted.
//!
//! Workflow steps reach it over HTTP/1.1 on 127.0.0.1 ([`FencedResource::serve`]):
//! `POST /write` with `{"item": "...", "token": N, "writer": "..."}` answers
//! 200 `{"accepted": true}` or 409 `{"accepted": false, "highest": N}`. A
//! missing `item` or `token` is taken from the headers the reactor's `http`
//! step kind sends (`x-swarm-run-id`, `x-swarm-fencing-token`), so an
//! `http` step pointed at [`FencedServer::write_url`] works with any
//! arguments. An `exec` step uses [`write_script`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A write refused because the item has seen a higher token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stale fencing token {token} for item {item:?}: token {highest} already seen")]
pub struct Rejected {
    pub item: String,
    pub token: u64,
    pub highest: u64,
}

/// One write attempt, as the resource saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAttempt {
    /// Order in which the resource processed the attempts, from 0.
    pub seq: u64,
    /// Milliseconds since the resource was created.
    pub at_ms: u64,
    pub item: String,
    pub token: u64,
    pub writer: String,
    pub accepted: bool,
    /// The highest token of the item before this attempt; `None` for the
    /// item's first write.
    pub highest_before: Option<u64>,
}

#[derive(Debug, Default)]
struct Store {
    highest: BTreeMap<String, u64>,
    log: Vec<WriteAttempt>,
}

/// The fenced store. Cheap to clone; clones share one store.
#[derive(Debug, Clone)]
pub struct FencedResource {
    store: Arc<Mutex<Store>>,
    started: Instant,
}

impl Default for FencedResource {
    fn default() -> Self {
        FencedResource::new()
    }
}

impl FencedResource {
    pub fn new() -> FencedResource {
        FencedResource {
            store: Arc::new(Mutex::new(Store::default())),
            started: Instant::now(),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // Every update below is a single step; a panic elsewhere cannot have
        // left the store half-written.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes on behalf of the holder of `token` for `item`: accepted when
    /// the token is at least the highest seen for the item.
    pub fn write(&self, item: &str, token: u64, writer: &str) -> Result<(), Rejected> {
        let at_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut store = self.store();
        let highest_before = store.highest.get(item).copied();
        let accepted = highest_before.is_none_or(|h| token >= h);
        if accepted {
            store.highest.insert(item.to_string(), token);
        }
        let seq = store.log.len() as u64;
        store.log.push(WriteAttempt {
            seq,
            at_ms,
            item: item.to_string(),
            token,
            writer: writer.to_string(),
            accepted,
            highest_before,
        });
        match highest_before {
            Some(highest) if !accepted => Err(Rejected {
                item: item.to_string(),
                token,
                highest,
            }),
            _ => Ok(()),
        }
    }

    /// The highest token accepted for `item`.
    pub fn highest(&self, item: &str) -> Option<u64> {
        self.store().highest.get(item).copied()
    }

    /// Every write attempt so far, in the order processed.
    pub fn log(&self) -> Vec<WriteAttempt> {
        self.store().log.clone()
    }

    /// How many writes were rejected as stale.
    pub fn rejected(&self) -> u64 {
        self.store().log.iter().filter(|w| !w.accepted).count() as u64
    }

    /// Serves the resource over HTTP on an ephemeral port of 127.0.0.1 until
    /// the returned server is dropped.
    pub async fn serve(&self) -> std::io::Result<FencedServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let resource = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors or similar: back off, keep serving.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let resource = resource.clone();
                tokio::spawn(async move {
                    // A client that hangs or disconnects only loses its own write.
                    let _ = tokio::time::timeout(
                        CONNECTION_TIMEOUT,
                        serve_connection(&resource, stream),
                    )
                    .await;
                });
            }
        });
        Ok(FencedServer { addr, task })
    }
}

/// The HTTP face of a [`FencedResource`]; stops serving when dropped.
#[derive(Debug)]
pub struct FencedServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FencedServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/write`.
    pub fn write_url(&self) -> String {
        format!("http://{}/write", self.addr)
    }
}

impl Drop for FencedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long one connection may take, from accept to the response.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests are one small JSON object; anything larger is not ours.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// An HTTP response: status code, reason phrase, JSON body.
type Response = (u16, &'static str, Value);

async fn serve_connection(resource: &FencedResource, mut stream: TcpStream) -> std::io::Result<()> {
    let (status, reason, body) = match read_request(&mut stream).await? {
        Ok(request) => handle(resource, &request),
        Err(response) => response,
    };
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    stream.shutdown().await
}

struct Request {
    method: String,
    path: String,
    /// Lowercased names.
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn bad_request(message: impl Into<String>) -> Response {
    (400, "Bad Request", json!({ "error": message.into() }))
}

/// Reads one request. The outer error is the connection failing; the inner
/// one a request we answer with an error status.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Result<Request, Response>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = find(&buf, b"\r\n\r\n") {
            break at;
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Ok(Err(bad_request("request head too large")));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let (Some(method), Some(target)) = (request_line.next(), request_line.next()) else {
        return Ok(Err(bad_request("malformed request line")));
    };
    let path = target.split('?').next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return Ok(Err(bad_request(
            "chunked bodies are not supported: send content-length",
        )));
    }
    let length = match headers.get("content-length") {
        None => 0,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= MAX_REQUEST_BYTES => n,
            _ => return Ok(Err(bad_request(format!("bad content-length {v:?}")))),
        },
    };
    let mut body = buf.split_off(head_end + 4);
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Ok(Request {
        method: method.to_string(),
        path,
        headers,
        body,
    }))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn handle(resource: &FencedResource, request: &Request) -> Response {
    if request.path != "/write" {
        return (
            404,
            "Not Found",
            json!({ "error": format!("no such path {:?}: POST /write", request.path) }),
        );
    }
    if request.method != "POST" {
        return (
            405,
            "Method Not Allowed",
            json!({ "error": "POST a JSON body to /write" }),
        );
    }
    let body: Value = if request.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(&request.body) {
            Ok(v) => v,
            Err(e) => return bad_request(format!("body is not JSON: {e}")),
        }
    };
    let item = match body.get("item").and_then(Value::as_str) {
        Some(item) => item.to_string(),
        None => match request.headers.get("x-swarm-run-id") {
            Some(item) => item.clone(),
            None => return bad_request("\"item\" is required (or an x-swarm-run-id header)"),
        },
    };
    let token = match body.get("token") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
        None => request
            .headers
            .get("x-swarm-fencing-token")
            .and_then(|t| t.parse::<u64>().ok()),
    };
    let Some(token) = token else {
        return bad_request(
            "\"token\" is required: a fencing token, a non-negative integer (or an x-swarm-fencing-token header)",
        );
    };
    let writer = body
        .get("writer")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            let step = request.headers.get("x-swarm-step")?;
            let attempt = request
                .headers
                .get("x-swarm-attempt")
                .map_or("?", String::as_str);
            Some(format!("{step}#{attempt}"))
        })
        .unwrap_or_default();
    match resource.write(&item, token, &writer) {
        Ok(()) => (200, "OK", json!({ "accepted": true })),
        Err(rejected) => (
            409,
            "Conflict",
            json!({ "accepted": false, "highest": rejected.highest }),
        ),
    }
}

/// The text of a POSIX `sh` script for a workflow `exec` step that writes
/// the step's fencing token for its work item to the fenced resource at
/// `url` (see [`FencedServer::write_url`]). It uses `curl` when the machine
/// has it and falls back to `python3`.
///
/// Exit status: 0 when the write was accepted (stdout is
/// `{"written": TOKEN}`), 3 when it was rejected as stale, 2 on any other
/// failure (no token, resource unreachable). A non-zero exit fails the step
/// attempt, so a stale holder never records a write as done.
///
/// `writer` names the writer in the resource's log; the script appends the
/// step, attempt and token. Neither `url` nor `writer` may contain `'`.
pub fn write_script(url: &str, writer: &str) -> String {
    format!(
        r#"#!/bin/sh
# Writes this step's fencing token for its work item to the chaos suite's
# fenced resource. Exit 0 = accepted, 3 = rejected as stale, 2 = error.
cat > /dev/null
url='{url}'
item="${{SWARM_RUN_ID:?no SWARM_RUN_ID}}"
token="${{SWARM_FENCING_TOKEN:?no SWARM_FENCING_TOKEN}}"
writer='{writer}'"/$SWARM_STEP#$SWARM_ATTEMPT/$token"
body="{{\"item\": \"$item\", \"token\": $token, \"writer\": \"$writer\"}}"
if command -v curl > /dev/null 2>&1; then
  code=$(curl -s -o /dev/null -w '%{{http_code}}' -m 5 -X POST \
    -H 'content-type: application/json' --data-binary "$body" "$url") || code=000
else
  code=$(python3 -c 'import sys, urllib.request as u, urllib.error as e
r = u.Request(sys.argv[1], data=sys.argv[2].encode(), headers={{"content-type": "application/json"}})
try:
    print(u.urlopen(r, timeout=5).status)
except e.HTTPError as x:
    print(x.code)
except Exception:
    print("000")' "$url" "$body") || code=000
fi
case "$code" in
  200) echo "{{\"written\": $token}}" ;;
  409) echo "stale fencing token $token for $item" >&2; exit 3 ;;
  *) echo "fenced write of $item with token $token failed: HTTP $code" >&2; exit 2 ;;
esac
"#
    )
}

/// Writes [`write_script`] to `dir/name`, executable, and returns its path.
pub fn install_write_script(
    dir: &Path,
    name: &str,
    url: &str,
    writer: &str,
) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, write_script(url, writer))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn lower_tokens_are_rejected_and_equal_ones_accepted() {
        let r = FencedResource::new();
        assert_eq!(r.write("w1", 5, "a"), Ok(()));
        assert_eq!(r.write("w1", 5, "a"), Ok(()));
        assert_eq!(
            r.write("w1", 4, "old"),
            Err(Rejected {
                item: "w1".into(),
                token: 4,
                highest: 5
            })
        );
        assert_eq!(r.write("w1", 9, "b"), Ok(()));
        assert!(r.write("w1", 5, "a").is_err());
        // Items are fenced independently.
        assert_eq!(r.write("w2", 1, "c"), Ok(()));
        assert_eq!(r.highest("w1"), Some(9));
        assert_eq!(r.highest("w2"), Some(1));
        assert_eq!(r.highest("w3"), None);
        assert_eq!(r.rejected(), 2);

        let log = r.log();
        let summary: Vec<_> = log
            .iter()
            .map(|w| {
                (
                    w.seq,
                    w.item.as_str(),
                    w.token,
                    w.accepted,
                    w.highest_before,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (0, "w1", 5, true, None),
                (1, "w1", 5, true, Some(5)),
                (2, "w1", 4, false, Some(5)),
                (3, "w1", 9, true, Some(5)),
                (4, "w1", 5, false, Some(9)),
                (5, "w2", 1, true, None),
            ]
        );
        assert_eq!(log[2].writer, "old");
    }

    /// One request over a fresh TCP connection; the status code and the
    /// JSON body of the answer.
    async fn post(addr: SocketAddr, head_extra: &str, body: &str) -> (u16, Value) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST /write HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{head_extra}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap())
    }

    #[tokio::test]
    async fn http_writes_are_fenced() {
        let resource = FencedResource::new();
        let server = resource.serve().await.unwrap();
        let addr = server.addr();
        assert!(addr.ip().is_loopback());
        assert_eq!(server.write_url(), format!("http://{addr}/write"));

        let write = |item: &str, token: u64, writer: &str| {
            json!({"item": item, "token": token, "writer": writer}).to_string()
        };
        assert_eq!(
            post(addr, "", &write("w1", 7, "a")).await,
            (200, json!({"accepted": true}))
        );
        assert_eq!(
            post(addr, "", &write("w1", 7, "a")).await,
            (200, json!({"accepted": true}))
        );
        assert_eq!(
            post(addr, "", &write("w1", 6, "stale")).await,
            (409, json!({"accepted": false, "highest": 7}))
        );
        // A token as a string, as a shell script may send it.
        assert_eq!(
            post(addr, "", r#"{"item": "w1", "token": "8", "writer": "b"}"#).await,
            (200, json!({"accepted": true}))
        );
        // The reactor's `http` step kind: item and token in headers.
        assert_eq!(
            post(
                addr,
                "x-swarm-run-id: w2\r\nx-swarm-fencing-token: 3\r\nx-swarm-step: pay\r\nx-swarm-attempt: 1\r\n",
                r#"{"amount": 5}"#
            )
            .await,
            (200, json!({"accepted": true}))
        );
        assert_eq!(
            post(
                addr,
                "x-swarm-run-id: w2\r\nx-swarm-fencing-token: 2\r\n",
                ""
            )
            .await,
            (409, json!({"accepted": false, "highest": 3}))
        );
        let (status, _) = post(addr, "", r#"{"item": "w1"}"#).await;
        assert_eq!(status, 400);
        let (status, _) = post(addr, "", "not json").await;
        assert_eq!(status, 400);

        let log = resource.log();
        assert_eq!(log.len(), 6);
        assert_eq!(resource.rejected(), 2);
        assert_eq!(log[4].writer, "pay#1");
        assert_eq!(resource.highest("w1"), Some(8));
        assert_eq!(resource.highest("w2"), Some(3));
    }

    #[tokio::test]
    async fn http_answers_other_paths_and_methods_with_errors() {
        let resource = FencedResource::new();
        let server = resource.serve().await.unwrap();
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        stream
            .write_all(b"GET /write HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");

        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        stream
            .write_all(b"POST /other HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
        assert!(resource.log().is_empty());
    }

    #[tokio::test]
    async fn a_dropped_server_stops_listening() {
        let resource = FencedResource::new();
        let server = resource.serve().await.unwrap();
        let addr = server.addr();
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(addr).await.is_err());
    }

    /// Runs the exec step script as the reactor would: arguments on stdin,
    /// the item and token in the environment.
    async fn run_script(
        script: &Path,
        path_env: Option<&str>,
        item: &str,
        token: &str,
    ) -> (i32, String) {
        let mut command = tokio::process::Command::new(script);
        command
            .env("SWARM_RUN_ID", item)
            .env("SWARM_FENCING_TOKEN", token)
            .env("SWARM_STEP", "write")
            .env("SWARM_ATTEMPT", "1")
            .stdin(std::process::Stdio::null());
        if let Some(path) = path_env {
            command.env("PATH", path);
        }
        let out = tokio::time::timeout(Duration::from_secs(20), command.output())
            .await
            .unwrap()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    }

    #[tokio::test]
    async fn the_exec_script_writes_and_is_fenced() {
        let resource = FencedResource::new();
        let server = resource.serve().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let script =
            install_write_script(dir.path(), "write.sh", &server.write_url(), "node1").unwrap();

        assert_eq!(
            run_script(&script, None, "w1", "5").await,
            (0, r#"{"written": 5}"#.to_string())
        );
        assert_eq!(run_script(&script, None, "w1", "4").await.0, 3);
        assert_ne!(run_script(&script, None, "w1", "").await.0, 0);
        let log = resource.log();
        assert_eq!(log.len(), 2);
        assert_eq!(log[0].writer, "node1/write#1/5");
        assert!(!log[1].accepted);

        // Without curl on PATH it falls back to python3.
        let Ok(out) = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
        else {
            return;
        };
        let python = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(&python, bin.join("python3")).unwrap();
        let cat = ["/bin/cat", "/usr/bin/cat"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap();
        std::os::unix::fs::symlink(cat, bin.join("cat")).unwrap();
        let path = bin.display().to_string();
        assert_eq!(run_script(&script, Some(&path), "w1", "6").await.0, 0);
        assert_eq!(run_script(&script, Some(&path), "w1", "5").await.0, 3);
        let log = resource.log();
        assert_eq!(log.len(), 4);
        assert!(log[2].accepted && !log[3].accepted);
    }
}
