//! The `http` kind against a tiny local server: JSON in and out, 5xx retried, 4xx final.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use serde_json::json;
use swarm_reactor::{Reactor, RunStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves one canned response per connection, in order (the last repeats); returns the
/// address and the request bodies seen.
async fn server(
    responses: Vec<(u16, &'static str)>,
) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let count = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let i = count.fetch_add(1, Ordering::SeqCst);
            let (status, body) = responses[i.min(responses.len() - 1)];
            let seen = seen2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read headers, then Content-Length bytes of body.
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            seen.lock()
                                .unwrap()
                                .push(text[end + 4..end + 4 + len].to_owned());
                            break;
                        }
                    }
                }
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, seen)
}

fn http_workflow(addr: &str) -> String {
    format!(
        "name: w\nsteps:\n  - name: call\n    run: http\n    with: {{ url: \"http://{addr}/hook?x=1\" }}\n    arguments: {{ n: value(3) }}\n    max_retries: 2\n    backoff: {{ initial: 1ms, max: 1ms }}\nreturn: call\n"
    )
}

#[tokio::test]
async fn posts_arguments_and_returns_the_json_response() {
    let (addr, seen) = server(vec![(200, r#"{"ok": true}"#)]).await;
    let wf = workflow(&http_workflow(&addr), &registry(&Probe::default()));
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(report.result, json!({"ok": true}));
    assert_eq!(*seen.lock().unwrap(), vec![r#"{"n":3}"#]);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let (addr, _) = server(vec![(503, "busy"), (500, "oops"), (200, "\"fine\"")]).await;
    let wf = workflow(&http_workflow(&addr), &registry(&Probe::default()));
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert!(report.succeeded(), "{:?}", report.error);
    assert_eq!(report.step("call").unwrap().attempts, 3);
    assert_eq!(report.result, json!("fine"));
}

#[tokio::test]
async fn client_errors_are_final() {
    let (addr, _) = server(vec![(404, "no such hook")]).await;
    let wf = workflow(&http_workflow(&addr), &registry(&Probe::default()));
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(report.step("call").unwrap().attempts, 1);
    assert!(
        report
            .error
            .unwrap()
            .to_string()
            .contains("404 Not Found: no such hook")
    );
}

#[tokio::test]
async fn connection_errors_are_retried() {
    // Bind then drop to get a port nobody listens on.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    };
    let wf = workflow(&http_workflow(&addr), &registry(&Probe::default()));
    let report = run(&Reactor::new(), &wf, json!({})).await;
    assert_eq!(report.step("call").unwrap().attempts, 3);
    assert!(report.error.unwrap().to_string().contains("connect to"));
}
