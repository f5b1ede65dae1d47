//! `http`: POSTs the step's arguments as JSON to `with.url` and returns the response body
//! (JSON if it parses, text otherwise).
//!
//! 5xx responses and connection errors are retryable; any other non-2xx status is final.
//! Plain `http://` only: the node talks to local sidecars and services behind a proxy, and
//! keeping TLS out keeps this crate light.

use async_trait::async_trait;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use super::check_keys;
use crate::error::StepError;
use crate::step::{Step, StepContext};

#[derive(Debug, Clone, Copy)]
pub struct Http;

struct Target {
    uri: hyper::Uri,
    authority: String,
    host: String,
    port: u16,
    headers: Vec<(String, String)>,
}

fn target(with: &Value) -> Result<Target, Vec<String>> {
    let mut problems = check_keys(with, &["url", "headers"]);
    let url = match with.get("url").and_then(Value::as_str) {
        Some(u) => u,
        None => {
            problems.push("\"url\" is required (an http:// url)".into());
            return Err(problems);
        }
    };
    let uri: hyper::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            problems.push(format!("\"url\": {url:?} is not a url: {e}"));
            return Err(problems);
        }
    };
    if uri.scheme_str() != Some("http") {
        problems.push(format!(
            "\"url\": {url:?} must start with http:// (https is not supported)"
        ));
    }
    let (host, port, authority) = match uri.authority() {
        Some(a) => (
            a.host().to_owned(),
            a.port_u16().unwrap_or(80),
            a.as_str().to_owned(),
        ),
        None => {
            problems.push(format!("\"url\": {url:?} has no host"));
            (String::new(), 80, String::new())
        }
    };
    let mut headers = Vec::new();
    match with.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v.as_str() {
                    Some(s)
                        if HeaderName::try_from(k.as_str()).is_ok()
                            && HeaderValue::from_str(s).is_ok() =>
                    {
                        headers.push((k.clone(), s.to_owned()));
                    }
                    _ => problems.push(format!("\"headers.{k}\": not a valid header")),
                }
            }
        }
        Some(_) => problems.push("\"headers\": expected a map of name: value".into()),
    }
    if problems.is_empty() {
        Ok(Target {
            uri,
            authority,
            host,
            port,
            headers,
        })
    } else {
        Err(problems)
    }
}

#[async_trait]
impl Step for Http {
    fn check(&self, with: &Value) -> Vec<String> {
        target(with).err().unwrap_or_default()
    }

    async fn run(&self, ctx: &StepContext, arguments: &Value) -> Result<Value, StepError> {
        let t = target(&ctx.with).map_err(|p| StepError::fatal(p.join("; ")))?;
        let url = t.uri.to_string();
        let stream = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| StepError::retryable(format!("connect to {url}: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| StepError::retryable(format!("connect to {url}: {e}")))?;
        // The connection task ends with the request; dropping the attempt drops it too.
        let driver = tokio::spawn(conn);
        let _abort = AbortOnDrop(driver);

        let body = serde_json::to_vec(arguments)
            .map_err(|e| StepError::fatal(format!("encode arguments: {e}")))?;
        let path = t.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = Request::post(path)
            .header(HOST, &t.authority)
            .header(CONTENT_TYPE, "application/json")
            .header("x-swarm-run-id", &ctx.run_id)
            .header("x-swarm-step", &ctx.step)
            .header("x-swarm-attempt", ctx.attempt.to_string());
        if let Some(token) = ctx.fencing_token {
            req = req.header("x-swarm-fencing-token", token.to_string());
        }
        for (k, v) in &t.headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| StepError::fatal(format!("build request for {url}: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| StepError::retryable(format!("post {url}: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| StepError::retryable(format!("read response from {url}: {e}")))?
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        if !status.is_success() {
            let msg = format!("post {url}: {status}: {}", truncate(text, 512));
            return Err(if status.is_server_error() {
                StepError::retryable(msg)
            } else {
                StepError::fatal(msg)
            });
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn url_checks() {
        assert!(
            Http.check(&json!({"url": "http://127.0.0.1:8080/x"}))
                .is_empty()
        );
        assert!(
            !Http
                .check(&json!({"url": "https://example.com"}))
                .is_empty()
        );
        assert!(!Http.check(&json!({})).is_empty());
        assert!(
            !Http
                .check(&json!({"url": "http://h/", "headers": {"bad header": "x"}}))
                .is_empty()
        );
    }
}
