//! swarmd's configuration, layered: defaults, then a TOML file, then
//! `SWARM_*` environment variables, then flags; then [`Config::validate`]
//! checks the whole and names the key that is wrong.
//!
//! The keys are the fields of [`Config`] (`raft.*` in a `[raft]` table), and
//! a key no layer sets keeps its default. figment merges the layers and
//! keeps, for every value, the layer it came from, so a bad value is reported
//! with the file, the `SWARM_*` variable or the flag the user wrote.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};

/// The validated configuration of one node, and the keys of its layers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub id: u64,
    /// Where the gRPC server listens for clients (WorkService, AdminService,
    /// health, reflection), and for peers too when `peer_listen` is empty.
    #[serde(deserialize_with = "ip_host_port")]
    pub listen: SocketAddr,
    /// The address clients are told to use; defaults to `listen`.
    pub advertise: String,
    /// Where the gRPC server listens for peers (Raft, forwarded writes,
    /// hand-offs), host:port with an IP host. Set, the client port refuses
    /// peer calls and this one refuses client calls; empty: both on `listen`.
    #[serde(deserialize_with = "optional_ip_host_port")]
    pub peer_listen: Option<SocketAddr>,
    /// The address peers are told to use; defaults to `peer_listen`, or to
    /// `advertise` when there is no peer port.
    pub peer_advertise: String,
    pub data_dir: PathBuf,
    #[serde(deserialize_with = "list")]
    pub capabilities: Vec<String>,
    /// Initialize a one-node cluster on first start.
    pub bootstrap: bool,
    /// Nodes to ask for membership on start, when not yet a member.
    #[serde(deserialize_with = "list")]
    pub join: Vec<String>,
    /// Peer address -> address to dial instead (a fault-injection proxy).
    #[serde(deserialize_with = "peer_routes")]
    pub peer_routes: Vec<(String, String)>,
    pub sled_cache_mb: u64,
    pub max_payload_bytes: usize,
    /// Lease granted when a claim does not ask for one.
    #[serde(deserialize_with = "humantime")]
    pub default_lease: Duration,
    /// Longest a long-poll claim (`wait_ms`) waits here for matching work;
    /// shorter than `request_timeout`.
    #[serde(deserialize_with = "humantime")]
    pub max_claim_wait: Duration,
    /// A workflow `sleep` at least this long parks its run durably (no
    /// lease held; any node wakes it when due) instead of sleeping in place.
    #[serde(deserialize_with = "humantime")]
    pub durable_sleep_after: Duration,
    /// Build a snapshot (and purge the log behind it) every this many entries.
    pub snapshot_every: u64,
    /// How long a finished item (completed, failed, cancelled) stays before
    /// the leader removes it, with its idempotency key; `0s`: as soon as it
    /// ends (watchers following it still get its end).
    #[serde(deserialize_with = "humantime")]
    pub retention: Duration,
    /// How often the leader checks for expired leases.
    #[serde(deserialize_with = "humantime")]
    pub tick_interval: Duration,
    /// Workflows this node runs at once.
    pub capacity: u32,
    /// Lease the agent asks for when it claims a workflow.
    #[serde(deserialize_with = "humantime")]
    pub workflow_lease: Duration,
    /// How often the agent renews its leases (one command for all of them).
    #[serde(deserialize_with = "humantime")]
    pub renew_interval: Duration,
    /// How long a draining node lets running steps finish before stopping them.
    #[serde(deserialize_with = "humantime")]
    pub drain_timeout: Duration,
    pub log_format: LogFormat,
    pub raft: RaftTimings,
    /// Where the HTTP listener (metrics, health, the dashboard) listens,
    /// host:port with an IP host; empty: no HTTP listener. HTTPS under TLS;
    /// with tokens, `/metrics` and `/api/*` want one.
    #[serde(deserialize_with = "optional_ip_host_port")]
    pub http_listen: Option<SocketAddr>,
    /// An OpenTelemetry collector's OTLP/gRPC endpoint (e.g.
    /// `http://127.0.0.1:4317`) to export traces to; empty: no export.
    pub otlp_endpoint: String,
    /// This node's certificate (PEM; `swarmctl cert node` makes one): with
    /// `tls_key` and `tls_ca`, every listener speaks TLS and every peer
    /// connection mutual TLS. Empty: plaintext.
    pub tls_cert: PathBuf,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: PathBuf,
    /// The CA certificate (PEM) that signs the nodes' certificates: what
    /// peers (and client certificates) are checked against.
    pub tls_ca: PathBuf,
    /// Serve beyond loopback without TLS and tokens (gRPC, and the HTTP
    /// listener, which then speaks HTTPS and wants a token): refused unless
    /// set, and warned about at every start when set.
    pub insecure: bool,
    /// Bearer tokens and their roles (see [`crate::auth`]): set, every client
    /// API call needs one. Needs TLS. Reloaded on SIGHUP. Empty: no tokens.
    pub tokens_file: PathBuf,
    /// Serve gRPC reflection (what grpcurl lists services with); it needs no
    /// token. Default on.
    pub reflection: bool,
    /// Most requests one connection may have in flight (HTTP/2 streams);
    /// more wait for one to end. One client cannot take the node's capacity.
    pub max_streams_per_connection: u32,
    /// Longest a unary request may take on this node before it answers
    /// `CANCELLED` (a client's own shorter deadline wins). Streams (watch)
    /// are bounded by it only until they start.
    #[serde(deserialize_with = "humantime")]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTimings {
    #[serde(deserialize_with = "humantime")]
    pub heartbeat: Duration,
    #[serde(deserialize_with = "humantime")]
    pub election_min: Duration,
    #[serde(deserialize_with = "humantime")]
    pub election_max: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 7101)),
            advertise: String::new(),
            peer_listen: None,
            peer_advertise: String::new(),
            data_dir: PathBuf::from("swarm-data"),
            capabilities: Vec::new(),
            bootstrap: false,
            join: Vec::new(),
            peer_routes: Vec::new(),
            sled_cache_mb: 64,
            max_payload_bytes: 1024 * 1024,
            default_lease: Duration::from_secs(30),
            max_claim_wait: Duration::from_secs(30),
            durable_sleep_after: Duration::from_secs(60),
            snapshot_every: 10_000,
            retention: Duration::from_secs(24 * 60 * 60),
            tick_interval: Duration::from_millis(100),
            capacity: 8,
            workflow_lease: Duration::from_secs(10),
            renew_interval: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(5),
            log_format: LogFormat::Text,
            raft: RaftTimings::default(),
            http_listen: None,
            otlp_endpoint: String::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_ca: PathBuf::new(),
            insecure: false,
            tokens_file: PathBuf::new(),
            reflection: true,
            max_streams_per_connection: 1024,
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            // Failover takes about two election timeouts: a follower's first
            // (pre-)vote comes before its peer's leader lease (openraft: the
            // longest election timeout) has run out and is refused, the next
            // one wins. 120-180 ms keeps it near 300-400 ms on loopback; a
            // leader that cannot send a heartbeat to both followers within
            // 120 ms (30 ms apart) is deposed.
            heartbeat: Duration::from_millis(30),
            election_min: Duration::from_millis(120),
            election_max: Duration::from_millis(180),
        }
    }
}

/// Each `SWARM_*` variable and the key it sets: the flag's name in capitals.
/// Lists are comma separated, as on the command line.
const ENV_VARS: [(&str, &str); 36] = [
    ("SWARM_ID", "id"),
    ("SWARM_LISTEN", "listen"),
    ("SWARM_ADVERTISE", "advertise"),
    ("SWARM_PEER_LISTEN", "peer_listen"),
    ("SWARM_PEER_ADVERTISE", "peer_advertise"),
    ("SWARM_DATA_DIR", "data_dir"),
    ("SWARM_CAPABILITIES", "capabilities"),
    ("SWARM_BOOTSTRAP", "bootstrap"),
    ("SWARM_JOIN", "join"),
    ("SWARM_PEER_ROUTES", "peer_routes"),
    ("SWARM_SLED_CACHE_MB", "sled_cache_mb"),
    ("SWARM_MAX_PAYLOAD_BYTES", "max_payload_bytes"),
    ("SWARM_DEFAULT_LEASE", "default_lease"),
    ("SWARM_MAX_CLAIM_WAIT", "max_claim_wait"),
    ("SWARM_DURABLE_SLEEP_AFTER", "durable_sleep_after"),
    ("SWARM_SNAPSHOT_EVERY", "snapshot_every"),
    ("SWARM_RETENTION", "retention"),
    ("SWARM_TICK_INTERVAL", "tick_interval"),
    ("SWARM_CAPACITY", "capacity"),
    ("SWARM_WORKFLOW_LEASE", "workflow_lease"),
    ("SWARM_RENEW_INTERVAL", "renew_interval"),
    ("SWARM_DRAIN_TIMEOUT", "drain_timeout"),
    ("SWARM_LOG_FORMAT", "log_format"),
    ("SWARM_HEARTBEAT", "raft.heartbeat"),
    ("SWARM_ELECTION_MIN", "raft.election_min"),
    ("SWARM_ELECTION_MAX", "raft.election_max"),
    ("SWARM_HTTP_LISTEN", "http_listen"),
    ("SWARM_OTLP_ENDPOINT", "otlp_endpoint"),
    ("SWARM_TLS_CERT", "tls_cert"),
    ("SWARM_TLS_KEY", "tls_key"),
    ("SWARM_TLS_CA", "tls_ca"),
    ("SWARM_INSECURE", "insecure"),
    ("SWARM_TOKENS_FILE", "tokens_file"),
    ("SWARM_REFLECTION", "reflection"),
    (
        "SWARM_MAX_STREAMS_PER_CONNECTION",
        "max_streams_per_connection",
    ),
    ("SWARM_REQUEST_TIMEOUT", "request_timeout"),
];

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 500ms or 10s: {e}"))
}

/// swarmd: a Swarm agent node. Flags override `SWARM_*` environment
/// variables, which override the TOML file, which overrides the defaults.
// Serialized, the flags given are the keys of the flags layer.
#[derive(Debug, Default, Parser, Serialize)]
#[command(
    name = "swarmd",
    version,
    about,
    after_help = "Every flag but --config can also be set by an environment variable: SWARM_ and \
                  the flag's name in capitals (--data-dir by SWARM_DATA_DIR); lists are comma \
                  separated."
)]
pub struct Flags {
    /// TOML configuration file.
    #[arg(long, env = "SWARM_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long)]
    pub id: Option<u64>,
    /// Address to listen on for clients (and peers, without --peer-listen),
    /// host:port.
    #[arg(long)]
    pub listen: Option<String>,
    /// Address clients should use to reach this node (default: --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Address to listen on for peers (Raft, hand-offs), host:port; the
    /// client port then refuses peer calls and this one client calls.
    #[arg(long)]
    pub peer_listen: Option<String>,
    /// Address peers should use to reach this node (default: --peer-listen,
    /// or --advertise without it).
    #[arg(long)]
    pub peer_advertise: Option<String>,
    /// Directory for the node's data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Capabilities of this node, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub capabilities: Option<Vec<String>>,
    /// Initialize a one-node cluster if this data dir has never been part of one.
    #[arg(long)]
    #[serde(serialize_with = "bare_flag_is_true")]
    pub bootstrap: Option<Option<bool>>,
    /// Nodes to ask to add this one to the cluster, comma separated host:port.
    #[arg(long, value_delimiter = ',')]
    pub join: Option<Vec<String>>,
    /// Reach a peer through another address: PEER=VIA (host:port each),
    /// comma separated; used to put a fault-injection proxy on one link.
    #[arg(long, value_delimiter = ',')]
    pub peer_routes: Option<Vec<String>>,
    /// sled page cache size in MiB.
    #[arg(long)]
    pub sled_cache_mb: Option<u64>,
    /// Largest payload or result accepted, in bytes.
    #[arg(long)]
    pub max_payload_bytes: Option<usize>,
    /// Lease granted to a claim that does not ask for one (e.g. 30s).
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub default_lease: Option<Duration>,
    /// Longest a long-poll claim waits for matching work (e.g. 30s).
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub max_claim_wait: Option<Duration>,
    /// A workflow sleep at least this long parks its run durably (e.g. 1m).
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub durable_sleep_after: Option<Duration>,
    /// Snapshot the state machine every this many log entries.
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// How long finished items are kept before they are removed (e.g. 24h;
    /// 0s: as soon as they end).
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub retention: Option<Duration>,
    /// How often the leader expires leases (e.g. 100ms).
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub tick_interval: Option<Duration>,
    /// Workflows this node runs at once.
    #[arg(long)]
    pub capacity: Option<u32>,
    /// Lease asked for when claiming a workflow (e.g. 10s).
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub workflow_lease: Option<Duration>,
    /// How often the agent renews its leases (e.g. 2s).
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub renew_interval: Option<Duration>,
    /// How long a draining node lets running steps finish (e.g. 5s).
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub drain_timeout: Option<Duration>,
    /// Log format on stderr.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// The `[raft]` keys; on the command line they are plain flags.
    #[command(flatten)]
    pub raft: RaftFlags,
    /// Address for metrics, health and the dashboard over HTTP, host:port
    /// (empty: none).
    #[arg(long)]
    pub http_listen: Option<String>,
    /// OTLP/gRPC endpoint to export traces to (e.g. http://127.0.0.1:4317).
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// This node's TLS certificate, PEM (with --tls-key and --tls-ca: TLS on
    /// every listener, mutual TLS between nodes).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert, PEM.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA certificate, PEM: what peers are checked against.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Serve beyond loopback without TLS (warned about at every start).
    #[arg(long)]
    #[serde(serialize_with = "bare_flag_is_true")]
    pub insecure: Option<Option<bool>>,
    /// Bearer tokens file (`sha256:HEX ROLE [AGENT]` lines; swarmctl token
    /// create): every client call needs a token. Needs TLS; SIGHUP reloads it.
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
    /// Serve gRPC reflection: true (default) or false.
    #[arg(long)]
    pub reflection: Option<bool>,
    /// Most requests one connection may have in flight; more wait.
    #[arg(long)]
    pub max_streams_per_connection: Option<u32>,
    /// Longest a request may take on this node (e.g. 60s).
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub request_timeout: Option<Duration>,
}

/// The flags of the `[raft]` keys.
#[derive(Debug, Default, clap::Args, Serialize)]
pub struct RaftFlags {
    /// Raft heartbeat interval (e.g. 30ms).
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub heartbeat: Option<Duration>,
    /// Shortest election timeout (e.g. 120ms).
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub election_min: Option<Duration>,
    /// Longest election timeout (e.g. 180ms).
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub election_max: Option<Duration>,
}

/// A configuration that cannot be used, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A key the file sets that is not a key of [`Config`].
    #[error("unknown key `{key}` in {origin} (the keys are {known})")]
    UnknownKey {
        key: String,
        origin: String,
        known: String,
    },
    /// A layer's value that is not of the key's kind; `origin` is where the
    /// user wrote it: the file, the `SWARM_*` variable or the flag.
    #[error("invalid `{key}` in {origin}: {reason}")]
    Layer {
        key: String,
        origin: String,
        reason: String,
    },
    #[error("invalid `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// One listener served beyond loopback without what guards it.
struct Exposure {
    key: &'static str,
    what: String,
    remedy: &'static str,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl Config {
    /// Layers the file named by `flags.config` (if any), the process's
    /// `SWARM_*` variables and the flags over the defaults.
    pub fn load(flags: Flags) -> Result<Config, ConfigError> {
        Config::load_with_env(flags, std::env::vars_os())
    }

    /// [`Config::load`] with the environment given: variables other than
    /// the `SWARM_*` keys are ignored.
    pub fn load_with_env(
        flags: Flags,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Config, ConfigError> {
        let mut layers = Figment::new();
        if let Some(path) = &flags.config {
            layers = layers.merge(Layer::file(path)?);
        }
        // One layer per variable, so that an error names the variable.
        for (var, value) in env {
            if let Some(layer) = Layer::env_var(&var, value)? {
                layers = layers.merge(layer);
            }
        }
        let mut config: Config = layers
            .merge(Layer::flags(&flags)?)
            // Lossy: an environment variable is a string, also for a number.
            .extract_lossy()
            .map_err(layer_error)?;
        if config.advertise.is_empty() {
            config.advertise = config.listen.to_string();
        }
        if config.peer_advertise.is_empty() {
            config.peer_advertise = config
                .peer_listen
                .map_or_else(|| config.advertise.clone(), |a| a.to_string());
        }
        config.validate()
    }

    /// What `insecure` lets through, to warn about at every start.
    pub fn insecure_exposure(&self) -> Vec<String> {
        match self.insecure {
            true => self.exposure().into_iter().map(|e| e.what).collect(),
            false => Vec::new(),
        }
    }

    /// What this configuration serves beyond loopback unguarded, whether
    /// `insecure` allows it or not.
    fn exposure(&self) -> Vec<Exposure> {
        let mut exposed = Vec::new();
        if !self.listen.ip().is_loopback() {
            if !self.tls_enabled() {
                exposed.push(Exposure {
                    key: "listen",
                    what: format!("gRPC on {} without TLS", self.listen),
                    remedy: "give tls_cert, tls_key and tls_ca (swarmctl cert makes them) and a tokens_file (swarmctl token create)",
                });
            } else if self.tokens_file.as_os_str().is_empty() {
                exposed.push(Exposure {
                    key: "listen",
                    what: format!("gRPC on {} with no tokens", self.listen),
                    remedy: "give a tokens_file (swarmctl token create)",
                });
            }
        }
        if let Some(peer) = self.peer_listen.filter(|a| !a.ip().is_loopback())
            && !self.tls_enabled()
        {
            exposed.push(Exposure {
                key: "peer_listen",
                what: format!("the peer port (Raft) on {peer} without TLS"),
                remedy: "give tls_cert, tls_key and tls_ca (swarmctl cert makes them): peers then need a certificate from the cluster's CA that names a member",
            });
        }
        if let Some(http) = self.http_listen.filter(|a| !a.ip().is_loopback())
            && (!self.tls_enabled() || self.tokens_file.as_os_str().is_empty())
        {
            exposed.push(Exposure {
                key: "http_listen",
                what: format!("the dashboard and /metrics on {http} without TLS and tokens"),
                remedy: "give tls_cert, tls_key, tls_ca and a tokens_file (the listener then speaks HTTPS and wants a token), or bind it to 127.0.0.1",
            });
        }
        exposed
    }

    /// Whether the node speaks TLS (all three TLS keys set).
    pub fn tls_enabled(&self) -> bool {
        !self.tls_cert.as_os_str().is_empty()
    }

    /// Checks the configuration as a whole.
    pub fn validate(self) -> Result<Config, ConfigError> {
        if self.id == 0 {
            return Err(invalid("id", "must be a positive integer"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        let limits = swarm_claims::Limits::default();
        for cap in &self.capabilities {
            limits
                .name("capabilities", cap)
                .map_err(|e| invalid("capabilities", e.to_string()))?;
        }
        for (peer, via) in &self.peer_routes {
            for a in [peer, via] {
                if !is_host_port(a) {
                    return Err(invalid("peer_routes", format!("{a:?} is not host:port")));
                }
            }
        }
        for addr in &self.join {
            if !is_host_port(addr) {
                return Err(invalid("join", format!("{addr:?} is not host:port")));
            }
        }
        for (key, addr) in [
            ("advertise", &self.advertise),
            ("peer_advertise", &self.peer_advertise),
        ] {
            if !is_host_port(addr) {
                return Err(invalid(key, format!("{addr:?} is not host:port")));
            }
        }
        if self.peer_listen == Some(self.listen) {
            return Err(invalid(
                "peer_listen",
                format!(
                    "{} is also `listen`: give the peer port its own address, or leave it empty to serve peers on `listen`",
                    self.listen
                ),
            ));
        }
        if self.sled_cache_mb == 0 {
            return Err(invalid("sled_cache_mb", "must be at least 1"));
        }
        if self.max_payload_bytes == 0
            || self.max_payload_bytes > swarm_claims::APPLY_LIMITS.max_payload_bytes
        {
            return Err(invalid(
                "max_payload_bytes",
                format!(
                    "must be between 1 and {} bytes",
                    swarm_claims::APPLY_LIMITS.max_payload_bytes
                ),
            ));
        }
        if self.default_lease < Duration::from_millis(100) {
            return Err(invalid("default_lease", "must be at least 100ms"));
        }
        if self.snapshot_every == 0 {
            return Err(invalid("snapshot_every", "must be at least 1"));
        }
        if self.renew_interval.is_zero() || self.renew_interval * 3 > self.workflow_lease {
            return Err(invalid(
                "renew_interval",
                format!(
                    "{:?} must be above 0 and at most a third of workflow_lease ({:?}), so a lease survives a missed renewal",
                    self.renew_interval, self.workflow_lease
                ),
            ));
        }
        let tls_set =
            [&self.tls_cert, &self.tls_key, &self.tls_ca].map(|p| !p.as_os_str().is_empty());
        if tls_set.contains(&true) && tls_set.contains(&false) {
            let missing = ["tls_cert", "tls_key", "tls_ca"]
                .iter()
                .zip(tls_set)
                .filter(|(_, set)| !set)
                .map(|(k, _)| *k)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(invalid(
                "tls_cert",
                format!("TLS needs tls_cert, tls_key and tls_ca together; missing: {missing}"),
            ));
        }
        if !self.tokens_file.as_os_str().is_empty() && !self.tls_enabled() {
            return Err(invalid(
                "tokens_file",
                "bearer tokens need TLS (tls_cert, tls_key, tls_ca): without it they cross the network readable, and nodes have no certificate to call each other with",
            ));
        }
        if !self.insecure
            && let Some(e) = self.exposure().into_iter().next()
        {
            return Err(invalid(
                e.key,
                format!(
                    "{} would be reachable beyond this machine: anyone who reaches it could claim, complete and cancel work; {}, or set insecure = true (--insecure) to serve anyway",
                    e.what, e.remedy
                ),
            ));
        }
        let is_url =
            self.otlp_endpoint.starts_with("http://") || self.otlp_endpoint.starts_with("https://");
        if !self.otlp_endpoint.is_empty() && !is_url {
            return Err(invalid(
                "otlp_endpoint",
                format!("{:?} is not an http:// or https:// URL", self.otlp_endpoint),
            ));
        }
        if self.max_streams_per_connection == 0 {
            return Err(invalid("max_streams_per_connection", "must be at least 1"));
        }
        if self.request_timeout < Duration::from_millis(100) {
            return Err(invalid("request_timeout", "must be at least 100ms"));
        }
        if self.max_claim_wait >= self.request_timeout {
            return Err(invalid(
                "max_claim_wait",
                format!(
                    "{:?} must be shorter than request_timeout ({:?}), which would cut a waiting claim off",
                    self.max_claim_wait, self.request_timeout
                ),
            ));
        }
        if self.tick_interval.is_zero() {
            return Err(invalid("tick_interval", "must be longer than 0ms"));
        }
        let r = self.raft;
        if r.heartbeat.is_zero() {
            return Err(invalid("raft.heartbeat", "must be longer than 0ms"));
        }
        if r.election_min <= r.heartbeat {
            return Err(invalid(
                "raft.election_min",
                format!(
                    "{:?} must be longer than the heartbeat ({:?})",
                    r.election_min, r.heartbeat
                ),
            ));
        }
        if r.election_max <= r.election_min {
            return Err(invalid(
                "raft.election_max",
                format!(
                    "{:?} must be longer than election_min ({:?})",
                    r.election_max, r.election_min
                ),
            ));
        }
        Ok(self)
    }
}

/// Whether `addr` looks like `host:port` (a non-empty host and a port number).
pub fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

/// One layer of keys; its metadata names, for a key path, where the user
/// wrote the key (figment calls this interpolation), for [`layer_error`].
struct Layer {
    keys: Dict,
    metadata: Metadata,
}

impl Layer {
    /// The TOML file; unlike figment's own `Toml` provider, a missing file is
    /// an error.
    fn file(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let keys = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let origin = format!("config file {}", path.display());
        let metadata = Metadata::named(origin.clone())
            .interpolater(move |_: &Profile, _: &[&str]| origin.clone());
        Ok(Layer { keys, metadata })
    }

    /// The key `var` sets, if it is one of [`ENV_VARS`].
    fn env_var(var: &OsString, value: OsString) -> Result<Option<Layer>, ConfigError> {
        let Some(&(var, key)) = ENV_VARS.iter().find(|(name, _)| *name == var) else {
            return Ok(None);
        };
        let value = value.into_string().map_err(|_| ConfigError::Layer {
            key: key.to_string(),
            origin: var.to_string(),
            reason: "the value is not UTF-8".to_string(),
        })?;
        let keys = figment::util::nest(key, value.into())
            .into_dict()
            .unwrap_or_default();
        let metadata = Metadata::named(var).interpolater(move |_: &Profile, _: &[&str]| var.into());
        Ok(Some(Layer { keys, metadata }))
    }

    /// The flags given; a key's origin is its flag.
    fn flags(flags: &Flags) -> Result<Layer, ConfigError> {
        let mut keys = Value::serialize(flags)
            .map_err(layer_error)?
            .into_dict()
            .unwrap_or_default();
        drop_absent(&mut keys);
        let metadata = Metadata::named("flags").interpolater(|_: &Profile, path: &[&str]| {
            let key = path.last().copied().unwrap_or_default();
            format!("--{}", key.replace('_', "-"))
        });
        Ok(Layer { keys, metadata })
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.keys.clone()))
    }
}

/// Removes the flags not given (`None`) and the tables left empty, which
/// would otherwise override the layers below.
fn drop_absent(keys: &mut Dict) {
    keys.retain(|_, value| match value {
        Value::Empty(..) => false,
        Value::Dict(_, table) => {
            drop_absent(table);
            !table.is_empty()
        }
        _ => true,
    });
}

/// A layer's bad key, named with where it was written.
fn layer_error(e: figment::Error) -> ConfigError {
    let key = e.path.join(".");
    let origin = match &e.metadata {
        Some(metadata) => metadata.interpolate(&Profile::Default, &e.path),
        None => "the configuration".to_string(),
    };
    match e.kind {
        figment::error::Kind::UnknownField(_, known) => ConfigError::UnknownKey {
            key,
            origin,
            known: known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
        },
        kind => ConfigError::Layer {
            key,
            origin,
            reason: kind.to_string(),
        },
    }
}

/// A socket address, with an IP host: it is bound, not resolved.
fn ip_host_port<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .map_err(|e| D::Error::custom(format!("{text:?} is not host:port with an IP host: {e}")))
}

/// [`ip_host_port`], or nothing for an empty string.
fn optional_ip_host_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| {
        D::Error::custom(format!(
            "{text:?} is not host:port with an IP host (or empty for none): {e}"
        ))
    })
}

/// A duration like `500ms` or `10s`, as in the flags.
fn humantime<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration(&String::deserialize(d)?).map_err(D::Error::custom)
}

/// A list of strings: an array, or one comma-separated string as in an
/// environment variable. Empty items are dropped, so an empty string is an
/// empty list.
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let items: Vec<String> = match <Value as Deserialize>::deserialize(d)? {
        Value::String(_, text) => text.split(',').map(str::to_string).collect(),
        array => array.deserialize().map_err(D::Error::custom)?,
    };
    Ok(items.into_iter().filter(|item| !item.is_empty()).collect())
}

/// `PEER=VIA` pairs, a [`list`].
fn peer_routes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    list(d)?
        .into_iter()
        .map(|route| match route.split_once('=') {
            Some((peer, via)) => Ok((peer.to_string(), via.to_string())),
            None => Err(D::Error::custom(format!("{route:?} is not PEER=VIA"))),
        })
        .collect()
}

/// `--bootstrap` alone means `--bootstrap true`.
fn bare_flag_is_true<S: serde::Serializer>(
    flag: &Option<Option<bool>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    flag.map(|value| value.unwrap_or(true)).serialize(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut all = vec!["swarmd"];
        all.extend_from_slice(args);
        Flags::try_parse_from(all).unwrap()
    }

    /// A config file holding `text`; it lives as long as the directory.
    fn config_file(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        std::fs::write(&path, text).unwrap();
        let path = path.to_str().unwrap().to_string();
        (dir, path)
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(flags(&[])).unwrap();
        assert_eq!(c.raft.heartbeat, Duration::from_millis(30));
        assert_eq!(c.advertise, "127.0.0.1:7101");
    }

    #[test]
    fn file_then_flags() {
        let (_dir, path) = config_file(
            "id = 2\nlisten = \"127.0.0.1:7202\"\ncapabilities = [\"gpu\"]\n[raft]\nheartbeat = \"20ms\"\n",
        );
        let c = Config::load(flags(&["--config", &path, "--id", "3"])).unwrap();
        assert_eq!(c.id, 3);
        assert_eq!(c.listen.port(), 7202);
        assert_eq!(c.capabilities, vec!["gpu"]);
        assert_eq!(c.raft.heartbeat, Duration::from_millis(20));
    }

    #[test]
    fn unknown_key_is_named() {
        let (_dir, path) = config_file("idd = 2\n");
        let err = Config::load(flags(&["--config", &path])).unwrap_err();
        assert!(err.to_string().contains("idd"), "{err}");
    }

    #[test]
    fn bad_duration_in_file_is_named() {
        let (_dir, path) = config_file("[raft]\nheartbeat = \"fast\"\n");
        let err = Config::load(flags(&["--config", &path])).unwrap_err();
        assert!(err.to_string().contains("heartbeat"), "{err}");
    }

    #[test]
    fn tls_takes_all_three_files_and_names_the_missing_ones() {
        let err = Config::load_with_env(
            flags(&["--tls-cert", "n.pem"]),
            [("SWARM_TLS_CA".into(), "ca.pem".into())],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("missing: tls_key"), "{err}");
        let c = Config::load(flags(&[
            "--tls-cert",
            "n.pem",
            "--tls-key",
            "n.key",
            "--tls-ca",
            "ca.pem",
        ]))
        .unwrap();
        assert!(c.tls_enabled());
        assert!(!Config::load(flags(&[])).unwrap().tls_enabled());
    }

    #[test]
    fn a_tls_file_that_is_missing_or_not_pem_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("n.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
        let missing = path(&dir.path().join("none.key"));
        let load = |cert: &str, key: &str| {
            let c = Config::load(flags(&[
                "--tls-cert",
                cert,
                "--tls-key",
                key,
                "--tls-ca",
                cert,
            ]))
            .unwrap();
            crate::tls::Tls::load(&c).unwrap_err().to_string()
        };
        let err = load(&path(&not_pem), &missing);
        assert!(err.contains("not PEM") && err.contains("tls_cert"), "{err}");
        std::fs::write(&not_pem, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let err = load(&path(&not_pem), &missing);
        assert!(err.contains("tls_key") && err.contains("none.key"), "{err}");
    }

    #[test]
    fn beyond_loopback_without_tls_is_refused_unless_insecure() {
        let err = Config::load(flags(&["--listen", "0.0.0.0:7101"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tls_cert") && err.contains("insecure"),
            "{err}"
        );
        let tls = [
            "--tls-cert",
            "n.pem",
            "--tls-key",
            "n.key",
            "--tls-ca",
            "ca.pem",
        ];
        let mut args = vec!["--listen", "0.0.0.0:7101"];
        args.extend(tls);
        let err = Config::load(flags(&args)).unwrap_err().to_string();
        assert!(
            err.contains("no tokens") && err.contains("tokens_file"),
            "{err}"
        );
        args.extend(["--tokens-file", "tokens"]);
        assert!(
            Config::load(flags(&args))
                .unwrap()
                .insecure_exposure()
                .is_empty()
        );
        // The HTTP listener and the peer port beyond loopback: guarded by the
        // same TLS and tokens.
        args.extend([
            "--http-listen",
            "0.0.0.0:8101",
            "--peer-listen",
            "0.0.0.0:7201",
        ]);
        assert!(
            Config::load(flags(&args))
                .unwrap()
                .insecure_exposure()
                .is_empty()
        );
        // Without tokens, the HTTP listener is refused too.
        let err = Config::load(flags(&[
            "--listen",
            "127.0.0.1:7101",
            "--http-listen",
            "0.0.0.0:8101",
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("http_listen") && err.contains("insecure"),
            "{err}"
        );
        // A peer port beyond loopback needs TLS.
        let err = Config::load(flags(&["--peer-listen", "0.0.0.0:7201"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("peer_listen") && err.contains("tls_cert"),
            "{err}"
        );
        let c = Config::load_with_env(
            flags(&["--listen", "10.1.2.3:7101"]),
            [("SWARM_INSECURE".into(), "true".into())],
        )
        .unwrap();
        assert_eq!(c.insecure_exposure(), ["gRPC on 10.1.2.3:7101 without TLS"]);
        // Loopback stays the zero-setup default.
        let c = Config::load(flags(&["--listen", "127.0.0.2:7101", "--insecure"])).unwrap();
        assert!(c.insecure_exposure().is_empty());
    }

    #[test]
    fn the_peer_port_has_its_own_address_and_advertises_it() {
        let c = Config::load(flags(&["--peer-listen", "127.0.0.1:7201"])).unwrap();
        assert_eq!(c.peer_advertise, "127.0.0.1:7201");
        assert_eq!(c.advertise, "127.0.0.1:7101");
        // Without a peer port, peers are told the client address.
        let c = Config::load(flags(&["--advertise", "node1:7101"])).unwrap();
        assert_eq!(c.peer_advertise, "node1:7101");
        let err = Config::load(flags(&["--peer-listen", "127.0.0.1:7101"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("peer_listen") && err.contains("its own address"),
            "{err}"
        );
        let err = Config::load(flags(&["--peer-advertise", "nope"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("peer_advertise"), "{err}");
    }

    #[test]
    fn a_claim_waits_less_than_a_request_may_take() {
        let err = Config::load(flags(&["--max-claim-wait", "60s"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_claim_wait") && err.contains("request_timeout"),
            "{err}"
        );
        let c = Config::load(flags(&["--max-claim-wait", "5s"])).unwrap();
        assert_eq!(c.max_claim_wait, Duration::from_secs(5));
    }

    #[test]
    fn election_must_exceed_heartbeat() {
        let err = Config::load(flags(&["--heartbeat", "200ms"])).unwrap_err();
        assert!(err.to_string().contains("raft.election_min"), "{err}");
    }

    #[test]
    fn bad_flag_duration_is_a_usage_error() {
        let all = ["swarmd", "--heartbeat", "soon"];
        let err = Flags::try_parse_from(all).unwrap_err();
        assert!(err.to_string().contains("--heartbeat"), "{err}");
    }

    #[test]
    fn peer_routes_parse_and_are_checked() {
        let c = Config::load(flags(&["--peer-routes", "127.0.0.1:7102=127.0.0.1:9102"])).unwrap();
        assert_eq!(
            c.peer_routes,
            vec![("127.0.0.1:7102".into(), "127.0.0.1:9102".into())]
        );
        let err = Config::load(flags(&["--peer-routes", "127.0.0.1:7102"])).unwrap_err();
        assert!(err.to_string().contains("peer_routes"), "{err}");
    }

    #[test]
    fn bad_listen_and_zero_id() {
        assert!(
            Config::load(flags(&["--listen", "nowhere"]))
                .unwrap_err()
                .to_string()
                .contains("listen")
        );
        assert!(
            Config::load(flags(&["--id", "0"]))
                .unwrap_err()
                .to_string()
                .contains("`id`")
        );
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn env_sits_between_file_and_flags() {
        let (_dir, path) = config_file(
            "id = 2\ncapacity = 3\njoin = [\"127.0.0.1:7101\"]\n[raft]\nheartbeat = \"20ms\"\n",
        );
        let vars = env(&[
            ("SWARM_ID", "4"),
            ("SWARM_HEARTBEAT", "30ms"),
            ("SWARM_CAPABILITIES", "gpu,exec"),
            ("SWARM_JOIN", ""),
            ("SWARM_BOOTSTRAP", "false"),
        ]);
        let args = ["--config", &path, "--id", "5", "--bootstrap"];
        let c = Config::load_with_env(flags(&args), vars).unwrap();
        assert_eq!(c.id, 5, "a flag overrides its variable");
        assert!(c.bootstrap, "a bare --bootstrap overrides SWARM_BOOTSTRAP");
        assert_eq!(c.raft.heartbeat, Duration::from_millis(30));
        assert_eq!(
            c.capacity, 3,
            "a key no variable sets keeps the file's value"
        );
        assert_eq!(c.capabilities, vec!["gpu", "exec"]);
        assert!(
            c.join.is_empty(),
            "an empty list variable clears the file's list"
        );
    }

    #[test]
    fn invalid_env_value_names_the_variable_and_the_key() {
        let err = Config::load_with_env(flags(&[]), env(&[("SWARM_HEARTBEAT", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("SWARM_HEARTBEAT"), "{err}");
        assert!(err.contains("raft.heartbeat"), "{err}");
        let err = Config::load_with_env(flags(&[]), env(&[("SWARM_SNAPSHOT_EVERY", "often")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("SWARM_SNAPSHOT_EVERY"), "{err}");
    }

    #[test]
    fn a_variable_that_is_not_utf8_is_named() {
        use std::os::unix::ffi::OsStringExt;
        let vars = [("SWARM_DATA_DIR".into(), OsString::from_vec(vec![0xff]))];
        let err = Config::load_with_env(flags(&[]), vars).unwrap_err();
        assert!(err.to_string().contains("SWARM_DATA_DIR"), "{err}");
    }

    #[test]
    fn other_variables_are_not_keys() {
        let vars = env(&[
            ("SWARM_ENDPOINTS", "127.0.0.1:7101"),
            ("SWARM_LOG", "debug"),
            ("SWARM_RUN_ID", "x"),
            ("HOME", "/root"),
        ]);
        assert_eq!(
            Config::load_with_env(flags(&[]), vars).unwrap(),
            Config::load_with_env(flags(&[]), []).unwrap()
        );
    }

    #[test]
    fn every_flag_has_its_variable() {
        use clap::CommandFactory;
        let command = Flags::command();
        let keys: Vec<String> = command
            .get_arguments()
            .map(|arg| arg.get_id().as_str())
            .filter(|id| !["config", "help", "version"].contains(id))
            .map(|id| format!("SWARM_{}", id.to_uppercase()))
            .collect();
        let vars: Vec<String> = ENV_VARS.iter().map(|(var, _)| var.to_string()).collect();
        assert_eq!(keys, vars);
    }

    #[test]
    fn retention_comes_from_every_layer() {
        let day = Duration::from_secs(24 * 60 * 60);
        assert_eq!(
            Config::load_with_env(flags(&[]), []).unwrap().retention,
            day
        );
        let (_dir, path) = config_file("retention = \"1h\"\n");
        let c = Config::load_with_env(flags(&["--config", &path]), []).unwrap();
        assert_eq!(c.retention, Duration::from_secs(3600));
        let vars = env(&[("SWARM_RETENTION", "0s")]);
        let c = Config::load_with_env(flags(&["--config", &path]), vars).unwrap();
        assert_eq!(c.retention, Duration::ZERO, "0s: as soon as an item ends");
        let c = Config::load_with_env(
            flags(&["--retention", "2s"]),
            env(&[("SWARM_RETENTION", "0s")]),
        )
        .unwrap();
        assert_eq!(c.retention, Duration::from_secs(2));
        let err = Config::load_with_env(flags(&[]), env(&[("SWARM_RETENTION", "a while")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SWARM_RETENTION") && err.contains("retention"),
            "{err}"
        );
    }

    #[test]
    fn missing_config_file_is_named() {
        let err = Config::load(flags(&["--config", "/nonexistent/swarm.toml"])).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/swarm.toml"), "{err}");
    }

    #[test]
    fn the_cluster_files_load() {
        let cluster = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster");
        for n in 1..=3 {
            let path = cluster.join(format!("node{n}.toml"));
            let args = ["--config", path.to_str().unwrap()];
            let c = Config::load_with_env(flags(&args), []).unwrap();
            assert_eq!(c.id, n);
        }
    }
}
