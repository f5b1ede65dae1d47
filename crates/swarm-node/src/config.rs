//! swarmd's configuration, layered: defaults, then a TOML file, then
//! `SWARM_*` environment variables, then flags; then [`Config::validate`]
//! checks the whole and names the key that is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// The validated configuration of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub id: u64,
    /// Where the gRPC server listens (clients and peers).
    pub listen: SocketAddr,
    /// The address peers and clients are told to use; defaults to `listen`.
    pub advertise: String,
    pub data_dir: PathBuf,
    pub capabilities: Vec<String>,
    /// Initialize a one-node cluster on first start.
    pub bootstrap: bool,
    /// Nodes to ask for membership on start, when not yet a member.
    pub join: Vec<String>,
    /// Peer address -> address to dial instead (a fault-injection proxy).
    pub peer_routes: Vec<(String, String)>,
    pub sled_cache_mb: u64,
    pub max_payload_bytes: usize,
    /// Lease granted when a claim does not ask for one.
    pub default_lease: Duration,
    /// Build a snapshot (and purge the log behind it) every this many entries.
    pub snapshot_every: u64,
    /// How often the leader checks for expired leases.
    pub tick_interval: Duration,
    /// Workflows this node runs at once.
    pub capacity: u32,
    /// Lease the agent asks for when it claims a workflow.
    pub workflow_lease: Duration,
    /// How often the agent renews its leases (one command for all of them).
    pub renew_interval: Duration,
    /// How long a draining node lets running steps finish before stopping them.
    pub drain_timeout: Duration,
    pub log_format: LogFormat,
    pub raft: RaftTimings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTimings {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 7101)),
            advertise: String::new(),
            data_dir: PathBuf::from("swarm-data"),
            capabilities: Vec::new(),
            bootstrap: false,
            join: Vec::new(),
            peer_routes: Vec::new(),
            sled_cache_mb: 64,
            max_payload_bytes: 1024 * 1024,
            default_lease: Duration::from_secs(30),
            snapshot_every: 10_000,
            tick_interval: Duration::from_millis(100),
            capacity: 8,
            workflow_lease: Duration::from_secs(10),
            renew_interval: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(5),
            log_format: LogFormat::Text,
            raft: RaftTimings {
                heartbeat: Duration::from_millis(50),
                election_min: Duration::from_millis(150),
                election_max: Duration::from_millis(300),
            },
        }
    }
}

/// The keys a TOML file may set; unknown keys are an error that names them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<u64>,
    listen: Option<String>,
    advertise: Option<String>,
    data_dir: Option<PathBuf>,
    capabilities: Option<Vec<String>>,
    bootstrap: Option<bool>,
    join: Option<Vec<String>>,
    peer_routes: Option<Vec<String>>,
    sled_cache_mb: Option<u64>,
    max_payload_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    default_lease: Option<Duration>,
    snapshot_every: Option<u64>,
    #[serde(default, with = "humantime_serde")]
    tick_interval: Option<Duration>,
    capacity: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    workflow_lease: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    renew_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    drain_timeout: Option<Duration>,
    log_format: Option<LogFormat>,
    raft: Option<FileRaft>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRaft {
    #[serde(default, with = "humantime_serde")]
    heartbeat: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    election_min: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    election_max: Option<Duration>,
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 500ms or 10s: {e}"))
}

/// swarmd: a Swarm agent node. Flags override `SWARM_*` environment
/// variables, which override the TOML file, which overrides the defaults.
#[derive(Debug, Default, Parser)]
#[command(name = "swarmd", version, about)]
pub struct Flags {
    /// TOML configuration file.
    #[arg(long, env = "SWARM_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long, env = "SWARM_ID")]
    pub id: Option<u64>,
    /// Address to listen on for clients and peers, host:port.
    #[arg(long, env = "SWARM_LISTEN")]
    pub listen: Option<String>,
    /// Address others should use to reach this node (default: --listen).
    #[arg(long, env = "SWARM_ADVERTISE")]
    pub advertise: Option<String>,
    /// Directory for the node's data.
    #[arg(long, env = "SWARM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Capabilities of this node, comma separated.
    #[arg(long, env = "SWARM_CAPABILITIES", value_delimiter = ',')]
    pub capabilities: Option<Vec<String>>,
    /// Initialize a one-node cluster if this data dir has never been part of one.
    #[arg(long, env = "SWARM_BOOTSTRAP")]
    pub bootstrap: Option<Option<bool>>,
    /// Nodes to ask to add this one to the cluster, comma separated host:port.
    #[arg(long, env = "SWARM_JOIN", value_delimiter = ',')]
    pub join: Option<Vec<String>>,
    /// Reach a peer through another address: PEER=VIA (host:port each),
    /// comma separated; used to put a fault-injection proxy on one link.
    #[arg(long, env = "SWARM_PEER_ROUTES", value_delimiter = ',')]
    pub peer_routes: Option<Vec<String>>,
    /// sled page cache size in MiB.
    #[arg(long, env = "SWARM_SLED_CACHE_MB")]
    pub sled_cache_mb: Option<u64>,
    /// Largest payload or result accepted, in bytes.
    #[arg(long, env = "SWARM_MAX_PAYLOAD_BYTES")]
    pub max_payload_bytes: Option<usize>,
    /// Lease granted to a claim that does not ask for one (e.g. 30s).
    #[arg(long, env = "SWARM_DEFAULT_LEASE", value_parser = duration)]
    pub default_lease: Option<Duration>,
    /// Snapshot the state machine every this many log entries.
    #[arg(long, env = "SWARM_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// How often the leader expires leases (e.g. 100ms).
    #[arg(long, env = "SWARM_TICK_INTERVAL", value_parser = duration)]
    pub tick_interval: Option<Duration>,
    /// Workflows this node runs at once.
    #[arg(long, env = "SWARM_CAPACITY")]
    pub capacity: Option<u32>,
    /// Lease asked for when claiming a workflow (e.g. 10s).
    #[arg(long, env = "SWARM_WORKFLOW_LEASE", value_parser = duration)]
    pub workflow_lease: Option<Duration>,
    /// How often the agent renews its leases (e.g. 2s).
    #[arg(long, env = "SWARM_RENEW_INTERVAL", value_parser = duration)]
    pub renew_interval: Option<Duration>,
    /// How long a draining node lets running steps finish (e.g. 5s).
    #[arg(long, env = "SWARM_DRAIN_TIMEOUT", value_parser = duration)]
    pub drain_timeout: Option<Duration>,
    /// Log format on stderr.
    #[arg(long, env = "SWARM_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Raft heartbeat interval (e.g. 50ms).
    #[arg(long, env = "SWARM_HEARTBEAT", value_parser = duration)]
    pub heartbeat: Option<Duration>,
    /// Shortest election timeout (e.g. 150ms).
    #[arg(long, env = "SWARM_ELECTION_MIN", value_parser = duration)]
    pub election_min: Option<Duration>,
    /// Longest election timeout (e.g. 300ms).
    #[arg(long, env = "SWARM_ELECTION_MAX", value_parser = duration)]
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
    #[error("invalid `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl Config {
    /// Layers the file named by `flags.config` (if any) and the flags (which
    /// clap already merged with the environment) over the defaults.
    pub fn load(flags: Flags) -> Result<Config, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut c = Config::default();
        let mut listen_text = None;
        // The file.
        if let Some(v) = file.id {
            c.id = v;
        }
        if let Some(v) = file.listen {
            listen_text = Some(v);
        }
        if let Some(v) = file.advertise {
            c.advertise = v;
        }
        if let Some(v) = file.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = file.capabilities {
            c.capabilities = v;
        }
        if let Some(v) = file.bootstrap {
            c.bootstrap = v;
        }
        if let Some(v) = file.join {
            c.join = v;
        }
        let mut route_text = file.peer_routes.unwrap_or_default();
        if let Some(v) = file.sled_cache_mb {
            c.sled_cache_mb = v;
        }
        if let Some(v) = file.max_payload_bytes {
            c.max_payload_bytes = v;
        }
        if let Some(v) = file.default_lease {
            c.default_lease = v;
        }
        if let Some(v) = file.snapshot_every {
            c.snapshot_every = v;
        }
        if let Some(v) = file.tick_interval {
            c.tick_interval = v;
        }
        if let Some(v) = file.capacity {
            c.capacity = v;
        }
        if let Some(v) = file.workflow_lease {
            c.workflow_lease = v;
        }
        if let Some(v) = file.renew_interval {
            c.renew_interval = v;
        }
        if let Some(v) = file.drain_timeout {
            c.drain_timeout = v;
        }
        if let Some(v) = file.log_format {
            c.log_format = v;
        }
        if let Some(r) = file.raft {
            if let Some(v) = r.heartbeat {
                c.raft.heartbeat = v;
            }
            if let Some(v) = r.election_min {
                c.raft.election_min = v;
            }
            if let Some(v) = r.election_max {
                c.raft.election_max = v;
            }
        }
        // Environment and flags.
        if let Some(v) = flags.id {
            c.id = v;
        }
        if let Some(v) = flags.listen {
            listen_text = Some(v);
        }
        if let Some(v) = flags.advertise {
            c.advertise = v;
        }
        if let Some(v) = flags.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = flags.capabilities {
            c.capabilities = v.into_iter().filter(|s| !s.is_empty()).collect();
        }
        if let Some(v) = flags.bootstrap {
            c.bootstrap = v.unwrap_or(true);
        }
        if let Some(v) = flags.join {
            c.join = v.into_iter().filter(|s| !s.is_empty()).collect();
        }
        if let Some(v) = flags.peer_routes {
            route_text = v.into_iter().filter(|s| !s.is_empty()).collect();
        }
        for route in &route_text {
            let (peer, via) = route
                .split_once('=')
                .ok_or_else(|| invalid("peer_routes", format!("{route:?} is not PEER=VIA")))?;
            c.peer_routes.push((peer.to_string(), via.to_string()));
        }
        if let Some(v) = flags.sled_cache_mb {
            c.sled_cache_mb = v;
        }
        if let Some(v) = flags.max_payload_bytes {
            c.max_payload_bytes = v;
        }
        if let Some(v) = flags.default_lease {
            c.default_lease = v;
        }
        if let Some(v) = flags.snapshot_every {
            c.snapshot_every = v;
        }
        if let Some(v) = flags.tick_interval {
            c.tick_interval = v;
        }
        if let Some(v) = flags.capacity {
            c.capacity = v;
        }
        if let Some(v) = flags.workflow_lease {
            c.workflow_lease = v;
        }
        if let Some(v) = flags.renew_interval {
            c.renew_interval = v;
        }
        if let Some(v) = flags.drain_timeout {
            c.drain_timeout = v;
        }
        if let Some(v) = flags.log_format {
            c.log_format = v;
        }
        if let Some(v) = flags.heartbeat {
            c.raft.heartbeat = v;
        }
        if let Some(v) = flags.election_min {
            c.raft.election_min = v;
        }
        if let Some(v) = flags.election_max {
            c.raft.election_max = v;
        }
        if let Some(text) = listen_text {
            c.listen = text.parse().map_err(|e| {
                invalid(
                    "listen",
                    format!("{text:?} is not host:port with an IP host: {e}"),
                )
            })?;
        }
        if c.advertise.is_empty() {
            c.advertise = c.listen.to_string();
        }
        c.validate()
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
        for addr in self.join.iter().chain(std::iter::once(&self.advertise)) {
            if !is_host_port(addr) {
                let key = if *addr == self.advertise {
                    "advertise"
                } else {
                    "join"
                };
                return Err(invalid(key, format!("{addr:?} is not host:port")));
            }
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

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
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

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(flags(&[])).unwrap();
        assert_eq!(c.raft.heartbeat, Duration::from_millis(50));
        assert_eq!(c.advertise, "127.0.0.1:7101");
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        std::fs::write(
            &path,
            "id = 2\nlisten = \"127.0.0.1:7202\"\ncapabilities = [\"gpu\"]\n[raft]\nheartbeat = \"20ms\"\n",
        )
        .unwrap();
        let c = Config::load(flags(&["--config", path.to_str().unwrap(), "--id", "3"])).unwrap();
        assert_eq!(c.id, 3);
        assert_eq!(c.listen.port(), 7202);
        assert_eq!(c.capabilities, vec!["gpu"]);
        assert_eq!(c.raft.heartbeat, Duration::from_millis(20));
    }

    #[test]
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        std::fs::write(&path, "idd = 2\n").unwrap();
        let err = Config::load(flags(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("idd"), "{err}");
    }

    #[test]
    fn bad_duration_in_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        std::fs::write(&path, "[raft]\nheartbeat = \"fast\"\n").unwrap();
        let err = Config::load(flags(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("heartbeat"), "{err}");
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
}
