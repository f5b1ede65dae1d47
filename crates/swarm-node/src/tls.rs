//! TLS material of a node, read once at start: the server side of every
//! listener and the client side of every peer connection (mutual TLS).

use std::path::Path;

use anyhow::Context;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::Config;

/// A node's certificate, key and CA, as PEM.
#[derive(Clone)]
pub struct Tls {
    /// This node's certificate and key, as read.
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    ca: Certificate,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

fn read_pem(path: &Path, key: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("read {key} {} ({what})", path.display()))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        anyhow::bail!(
            "{key} {} is not PEM ({what} expected, a \"-----BEGIN ...\" block)",
            path.display()
        );
    }
    Ok(bytes)
}

impl Tls {
    /// This node's certificate and key, for tonic.
    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// The node's TLS files, if the configuration names them.
    pub fn load(config: &Config) -> anyhow::Result<Option<Tls>> {
        if !config.tls_enabled() {
            return Ok(None);
        }
        let cert = read_pem(&config.tls_cert, "tls_cert", "this node's certificate")?;
        let key = read_pem(&config.tls_key, "tls_key", "its private key")?;
        let ca = read_pem(&config.tls_ca, "tls_ca", "the cluster's CA certificate")?;
        Ok(Some(Tls {
            ca: Certificate::from_pem(ca),
            cert_pem: cert,
            key_pem: key,
        }))
    }

    /// The listener's side: this node's certificate; a client certificate
    /// from the CA is asked for and checked when presented (peers present
    /// theirs), and not required (clients may have none).
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(self.ca.clone())
            .client_auth_optional(true)
    }

    /// The peer port's side: as [`Tls::server`], but a certificate from the
    /// CA is required of every connection (peers always present theirs).
    pub fn peer_server(&self) -> ServerTlsConfig {
        self.server().client_auth_optional(false)
    }

    /// The HTTP listener's side (dashboard, metrics): this node's
    /// certificate, HTTP/1.1, no client certificate asked for (browsers and
    /// scrapers bring a token).
    pub fn http_acceptor(&self) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .context("tls_cert: read its certificates")?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).context("tls_key: read the key")?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("tls_cert and tls_key do not make a server identity")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
    }

    /// The side of a connection to a peer: the CA that signs peers, and
    /// this node's certificate for them to check.
    pub fn peer_client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity())
    }
}
