//! `swarmctl cert ca|node|client`: the certificates a secure cluster needs,
//! made with rcgen. All in one directory (default `.`):
//!
//! - `ca.pem` / `ca.key`: the cluster's CA, which signs the others;
//! - `node-N.pem` / `node-N.key`: node N's certificate, naming `swarm-node-N`
//!   (what peers check against the membership) and the hosts clients and
//!   peers dial (`--host`, default `127.0.0.1,localhost`); good for serving
//!   and for dialling peers (mutual TLS);
//! - `client-NAME.pem` / `client-NAME.key`: a client certificate (common
//!   name NAME), for `swarmctl --cert/--key`.
//!
//! Keys are ECDSA P-256, written with mode 0600. An existing file is never
//! overwritten.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(Debug, Subcommand)]
pub enum Cert {
    /// Make the cluster's CA (ca.pem, ca.key)
    Ca(CaArgs),
    /// Make node N's certificate, signed by the CA (node-N.pem, node-N.key)
    Node(NodeArgs),
    /// Make a client certificate, signed by the CA (client-NAME.pem, client-NAME.key)
    Client(ClientArgs),
}

#[derive(Debug, Args)]
pub struct CaArgs {
    /// Directory to write to
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's id
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub id: u64,
    /// Hosts (names or IPs) clients and peers use to reach the node, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
    pub host: Vec<String>,
    /// Directory with ca.pem and ca.key, written to
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The client's name (the certificate's common name)
    #[arg(long, value_parser = crate::cli::parse_name)]
    pub name: String,
    /// Directory with ca.pem and ca.key, written to
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

impl Cert {
    pub fn run(self) -> Result<()> {
        let (written, hint) = match self {
            Cert::Ca(a) => (make_ca(&a.dir)?, None),
            Cert::Node(a) => (make_node(&a.dir, a.id, &a.host)?, None),
            Cert::Client(a) => (
                make_client(&a.dir, &a.name)?,
                Some(format!(
                    "to give it a role, add a line to the nodes' tokens_file (then kill -HUP them): cert:{} ROLE [AGENT]",
                    a.name
                )),
            ),
        };
        println!("wrote {} and {}", written.0.display(), written.1.display());
        if let Some(hint) = hint {
            println!("{hint}");
        }
        Ok(())
    }
}

/// Writes the cluster's CA into `dir` (`ca.pem`, `ca.key`); answers their
/// paths.
pub fn make_ca(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let key = KeyPair::generate().context("generate the CA key")?;
    let mut params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Swarm cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params
        .self_signed(&key)
        .context("sign the CA certificate")?;
    write_pair(dir, "ca", &cert.pem(), &key.serialize_pem())
}

/// Writes node `id`'s certificate, signed by the CA in `dir`, naming
/// `swarm-node-ID` and `hosts` (`node-ID.pem`, `node-ID.key`).
pub fn make_node(dir: &Path, id: u64, hosts: &[String]) -> Result<(PathBuf, PathBuf)> {
    let mut names = vec![swarm_proto::node_cert_name(id)];
    names.extend(hosts.iter().map(|h| h.trim().to_string()));
    let stem = format!("node-{id}");
    make_leaf(dir, &stem, &stem, names, true)
}

/// Writes a client certificate for `name`, signed by the CA in `dir`
/// (`client-NAME.pem`, `client-NAME.key`).
pub fn make_client(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let stem = format!("client-{name}");
    make_leaf(dir, &stem, name, Vec::new(), false)
}

/// A certificate signed by the CA in `dir`: for a node (server and client
/// use, `names` as its subject alternative names) or a client.
fn make_leaf(
    dir: &Path,
    stem: &str,
    common_name: &str,
    names: Vec<String>,
    node: bool,
) -> Result<(PathBuf, PathBuf)> {
    let ca_pem = read(dir, "ca.pem")?;
    let ca_key = KeyPair::from_pem(&read(dir, "ca.key")?).with_context(|| {
        format!(
            "{} is not a private key (PEM)",
            dir.join("ca.key").display()
        )
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).with_context(|| {
        format!(
            "{} is not a certificate (PEM)",
            dir.join("ca.pem").display()
        )
    })?;
    let mut params = CertificateParams::new(names.clone())
        .with_context(|| format!("subject alternative names {names:?}"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = if node {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    let key = KeyPair::generate().context("generate a key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("sign the certificate")?;
    write_pair(dir, stem, &cert.pem(), &key.serialize_pem())
}

fn read(dir: &Path, name: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).with_context(|| {
        format!(
            "read {} (make the CA first: swarmctl cert ca --dir {})",
            path.display(),
            dir.display()
        )
    })
}

/// Writes `stem.pem` and `stem.key` (0600) into `dir`, refusing to replace
/// either.
fn write_pair(dir: &Path, stem: &str, cert: &str, key: &str) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    for path in [&cert_path, &key_path] {
        if path.exists() {
            bail!(
                "{} exists; not replacing it (remove it first)",
                path.display()
            );
        }
    }
    write_new(&key_path, key, 0o600)?;
    write_new(&cert_path, cert, 0o644)?;
    Ok((cert_path, key_path))
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}
