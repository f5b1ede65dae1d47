//! A small HTTP/1.1 GET for the tests of a node's HTTP listener (metrics,
//! health, the dashboard's JSON), on hyper's client connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// `GET path` on `addr`: the status code and the body as text.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    timed(addr, path, async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        send(stream, addr, path, None).await
    })
    .await
}

/// `GET path` on `addr` over HTTPS, the server checked against the CA in
/// `ca_pem` (as 127.0.0.1), with `token` as `authorization: Bearer` if
/// given: the status code and the body as text.
pub async fn get_https(
    addr: SocketAddr,
    path: &str,
    ca_pem: &[u8],
    token: Option<&str>,
) -> Result<(u16, String)> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.context("the CA's PEM")?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    timed(addr, path, async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect to {addr}"))?;
        let name = ServerName::try_from(addr.ip().to_string())?;
        let tls = connector
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        send(tls, addr, path, token).await
    })
    .await
}

async fn timed(
    addr: SocketAddr,
    path: &str,
    call: impl std::future::Future<Output = Result<(u16, String)>>,
) -> Result<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .with_context(|| format!("GET {addr}{path} timed out"))?
}

/// One GET on an open connection.
async fn send<S>(
    stream: S,
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(connection);
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, addr.to_string());
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .context("build the request")?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET {path}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .context("read the body")?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The samples of a Prometheus/OpenMetrics text exposition: `name{labels}`
/// (as written) to value.
pub fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}
