//! Who may call the client API: bearer tokens mapped to roles.
//!
//! With `tokens_file` set, every `WorkService` and `AdminService` call
//! carries `authorization: Bearer TOKEN`. The file holds one token per line
//! as `swarmctl token create` prints it: `sha256:HEX ROLE [AGENT]`, the
//! SHA-256 of the token (never the token itself), its role, and for the
//! `agent` role the agent name it is bound to (or a prefix, `build-*`).
//! `#` starts a comment. SIGHUP reloads the file; a file that does not parse
//! leaves the tokens as they were.
//!
//! Roles: `admin` (everything), `operator` (cancel, get, list, watch, stats,
//! status), `submitter` (submit, get, list, watch), `agent` (claim, renew,
//! complete, fail, release, hand off, get, watch), `reader` (get, list,
//! watch, stats, status). A call without a token is `UNAUTHENTICATED`; one
//! whose role lacks the right is `PERMISSION_DENIED`, naming the roles that
//! have it. An agent token acts only as its agent: the work service checks
//! the agent a claim or renewal names, and the holder of the item a
//! completion, failure, release or hand-off touches.
//!
//! A client certificate from the cluster's CA can stand for a token: a
//! line `cert:NAME ROLE [AGENT]` gives a certificate whose subject's common
//! name is NAME (`swarmctl cert client --name NAME`) that role. A call with
//! neither a token nor such a certificate is `UNAUTHENTICATED`.
//!
//! A node's own calls to its peers' client API (forwarded membership
//! changes, status) carry its member certificate instead (mutual TLS): they
//! act as `admin`. A node certificate that names no member is refused: an
//! admin adds the node first (`swarmctl node add`, as etcd's `member add`),
//! and then its own join promotes it. Health and reflection stay open; peer services are
//! checked by certificate ([`swarm_raft::peer_auth`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::gate::{Gate, service_and_method};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Operator,
    Submitter,
    Agent,
    Reader,
}

impl Role {
    const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Submitter,
        Role::Agent,
        Role::Reader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Submitter => "submitter",
            Role::Agent => "agent",
            Role::Reader => "reader",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether the role may call `method` of `service` (`WorkService`,
    /// `AdminService`).
    pub fn allows(self, service: &str, method: &str) -> bool {
        use Role::*;
        match (self, service, method) {
            (Admin, _, _) => true,
            (_, "AdminService", "ClusterStatus") => true,
            (_, "AdminService", _) => false,
            (_, "WorkService", "GetWork" | "WatchWork") => true,
            (Operator | Submitter | Reader, "WorkService", "ListWork") => true,
            (Operator | Reader, "WorkService", "WorkStats") => true,
            (Operator, "WorkService", "Cancel" | "RetryWork" | "PauseWork" | "ResumeWork") => true,
            (Operator, "ScheduleService" | "LimitService", _) => true,
            (
                Reader,
                "ScheduleService" | "LimitService",
                "GetSchedule" | "ListSchedules" | "GetLimit" | "ListLimits",
            ) => true,
            (Submitter, "WorkService", "Submit") => true,
            (Operator | Submitter, "WorkService", "SignalWork") => true,
            (
                Agent,
                "WorkService",
                "Claim" | "Renew" | "Complete" | "Fail" | "Release" | "Handoff",
            ) => true,
            _ => false,
        }
    }
}

/// The agent names an `agent` token may act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentBinding {
    Exact(String),
    Prefix(String),
}

impl AgentBinding {
    fn parse(s: &str) -> AgentBinding {
        match s.strip_suffix('*') {
            Some(prefix) => AgentBinding::Prefix(prefix.to_string()),
            None => AgentBinding::Exact(s.to_string()),
        }
    }

    pub fn admits(&self, agent: &str) -> bool {
        match self {
            AgentBinding::Exact(name) => name == agent,
            AgentBinding::Prefix(prefix) => agent.starts_with(prefix.as_str()),
        }
    }
}

impl std::fmt::Display for AgentBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentBinding::Exact(name) => write!(f, "{name:?}"),
            AgentBinding::Prefix(prefix) => write!(f, "\"{prefix}*\""),
        }
    }
}

/// Who a call comes from, as the auth layer found it (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    /// For an `agent` token: the agents it may act as.
    pub agent: Option<AgentBinding>,
}

impl Caller {
    /// Refuses `agent` unless this caller may act as it.
    pub fn check_agent(&self, agent: &str) -> Result<(), Status> {
        match &self.agent {
            Some(binding) if !binding.admits(agent) => Err(Status::permission_denied(format!(
                "this credential acts as agent {binding}, not {agent:?}"
            ))),
            _ => Ok(()),
        }
    }
}

/// The token of an `authorization: Bearer TOKEN` header, gRPC's or HTTP's.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// The caller of `request`, if the auth layer ran (tokens are configured).
pub fn caller<T>(request: &tonic::Request<T>) -> Option<&Caller> {
    request.extensions().get::<Caller>()
}

pub use swarm_proto::token_hash;

/// The credentials a node knows: tokens by hash, client certificates by
/// common name.
#[derive(Debug, Default, Clone)]
pub struct Tokens {
    by_hash: HashMap<String, Caller>,
    by_cert: HashMap<String, Caller>,
}

impl Tokens {
    /// Reads and parses a tokens file; the error names the file and line.
    pub fn load(path: &Path) -> anyhow::Result<Tokens> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("read tokens_file {}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| anyhow::anyhow!("tokens_file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Tokens, String> {
        let (mut by_hash, mut by_cert) = (HashMap::new(), HashMap::new());
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |what: String| format!("line {}: {what}", n + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (who, role, agent) = match fields.as_slice() {
                [who, role] => (*who, *role, None),
                [who, role, agent] => (*who, *role, Some(*agent)),
                _ => {
                    return Err(at(format!(
                        "expected `sha256:HEX ROLE [AGENT]` or `cert:NAME ROLE [AGENT]`, got {line:?}"
                    )));
                }
            };
            let cert = who.strip_prefix("cert:");
            let hex = who.strip_prefix("sha256:").unwrap_or("");
            match cert {
                Some("") => {
                    return Err(at(
                        "`cert:` needs the client certificate's name (its common name)".into(),
                    ));
                }
                Some(_) => {}
                None if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    return Err(at(format!(
                        "{who:?} is neither sha256:<64 hex digits> (swarmctl token create prints the line) nor cert:NAME"
                    )));
                }
                None => {}
            }
            let role = Role::parse(role).ok_or_else(|| {
                at(format!(
                    "unknown role {role:?} (roles: admin, operator, submitter, agent, reader)"
                ))
            })?;
            let agent = match (role, agent) {
                (Role::Agent, Some(a)) => Some(AgentBinding::parse(a)),
                (Role::Agent, None) => {
                    return Err(at(
                        "an agent token names the agent it acts as (or a prefix ending in *)"
                            .into(),
                    ));
                }
                (_, Some(a)) => {
                    return Err(at(format!(
                        "only agent tokens name an agent; {a:?} after role {}",
                        role.as_str()
                    )));
                }
                (_, None) => None,
            };
            let caller = Caller { role, agent };
            match cert {
                Some(name) => by_cert.insert(name.to_string(), caller),
                None => by_hash.insert(hex.to_ascii_lowercase(), caller),
            };
        }
        Ok(Tokens { by_hash, by_cert })
    }

    /// How many credentials: tokens and client certificate names.
    pub fn len(&self) -> usize {
        self.by_hash.len() + self.by_cert.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The caller a client certificate with common name `name` stands for.
    fn cert_caller(&self, name: &str) -> Option<&Caller> {
        self.by_cert.get(name)
    }

    fn caller(&self, token: &str) -> Option<&Caller> {
        let hash = token_hash(token);
        self.by_hash
            .get(hash.strip_prefix("sha256:").unwrap_or(&hash))
    }
}

/// The tokens in force, swapped whole on reload.
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
    current: Arc<RwLock<Arc<Tokens>>>,
}

impl TokenStore {
    pub fn open(path: &Path) -> anyhow::Result<TokenStore> {
        let tokens = Tokens::load(path)?;
        Ok(TokenStore {
            path: path.to_path_buf(),
            current: Arc::new(RwLock::new(Arc::new(tokens))),
        })
    }

    /// Reads the file again; on an error the tokens stay as they were.
    pub fn reload(&self) -> anyhow::Result<usize> {
        let tokens = Tokens::load(&self.path)?;
        let n = tokens.len();
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tokens);
        Ok(n)
    }

    /// The role `token` has, if it is known.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        self.get().caller(token).map(|c| c.role)
    }

    fn get(&self) -> Arc<Tokens> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Checks every client API call (see the module docs): a [`Gate`].
#[derive(Clone)]
pub struct AuthLayer {
    tokens: TokenStore,
    peers: swarm_raft::PeerAuth,
}

impl AuthLayer {
    pub fn new(tokens: TokenStore, peers: swarm_raft::PeerAuth) -> AuthLayer {
        AuthLayer { tokens, peers }
    }

    /// Who calls, for a call of `service`/`method`; the refusal otherwise.
    fn authorize<B>(
        &self,
        request: &http::Request<B>,
        service: &str,
        method: &str,
    ) -> Result<Caller, Status> {
        let caller = match bearer(request.headers()) {
            Some(token) => self
                .tokens
                .get()
                .caller(token.trim())
                .cloned()
                .ok_or_else(|| Status::unauthenticated("unknown token"))?,
            None => {
                // A member node's own call carries its certificate.
                let certs = request
                    .extensions()
                    .get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(TlsConnectInfo::peer_certs);
                let member = certs
                    .clone()
                    .map(|c| self.peers.admit_certs(Some(c)).ok().flatten().is_some());
                let named = || {
                    let leaf = certs.as_deref()?.first()?;
                    let name = swarm_raft::peer_auth::common_name_of(leaf)?;
                    self.tokens.get().cert_caller(&name).cloned()
                };
                // A node's certificate that names no member: it is added
                // by an admin first.
                let node_ids = || {
                    let leaf = certs.as_deref()?.first()?;
                    swarm_raft::peer_auth::node_ids_of(leaf).ok()
                };
                match member {
                    Some(true) => Caller {
                        role: Role::Admin,
                        agent: None,
                    },
                    // A client certificate the tokens file names.
                    Some(false) if let Some(caller) = named() => caller,
                    Some(false)
                        if let Some(id) = node_ids().and_then(|ids| ids.first().copied()) =>
                    {
                        return Err(Status::permission_denied(format!(
                            "the certificate names node {id}, which is not a member: an admin adds it first (swarmctl node add {id} ADDR --peer-addr PEER), then it joins"
                        )));
                    }
                    _ => {
                        return Err(Status::unauthenticated(
                            "this cluster needs a token (authorization: Bearer TOKEN; swarmctl --auth-token or SWARM_TOKEN) or a client certificate the tokens file names (cert:NAME ROLE)",
                        ));
                    }
                }
            }
        };
        if caller.role.allows(service, method) {
            return Ok(caller);
        }
        let roles: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|r| r.allows(service, method))
            .map(Role::as_str)
            .collect();
        Err(Status::permission_denied(format!(
            "{service}.{method} needs role {}; this credential's role is {}",
            roles.join(" or "),
            caller.role.as_str()
        )))
    }
}

impl Gate for AuthLayer {
    fn check<B>(&self, request: &mut http::Request<B>) -> Result<(), Status> {
        // "swarm.v1.WorkService" -> "WorkService"; peer calls (every append
        // entries) pass through without a copy.
        let (service, method) = service_and_method(request);
        let service = service.rsplit('.').next().unwrap_or("");
        if matches!(
            service,
            "WorkService" | "AdminService" | "ScheduleService" | "LimitService"
        ) {
            let caller = self.authorize(request, service, method)?;
            request.extensions_mut().insert(caller);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_tokens_file_parses_or_names_the_line() {
        let admin = token_hash("t-admin");
        let agent = token_hash("t-alice");
        let text = format!(
            "# tokens\n{admin} admin\n\n{agent} agent build-*  # alice's agents\ncert:carol reader\n"
        );
        let tokens = Tokens::parse(&text).unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens.cert_caller("carol").unwrap().role, Role::Reader);
        assert!(tokens.cert_caller("alice").is_none());
        assert_eq!(tokens.caller("t-admin").unwrap().role, Role::Admin);
        let alice = tokens.caller("t-alice").unwrap();
        assert!(alice.check_agent("build-7").is_ok());
        assert!(alice.check_agent("deploy-1").is_err());
        assert!(tokens.caller("nope").is_none());
        for (bad, says) in [
            (format!("{admin} root"), "unknown role"),
            ("sha256:abc admin".to_string(), "64 hex"),
            (format!("{admin} agent"), "names the agent"),
            (format!("{admin} reader bob"), "only agent tokens"),
            (admin.clone(), "expected"),
            (
                "cert: admin".to_string(),
                "needs the client certificate's name",
            ),
        ] {
            let err = Tokens::parse(&format!("\n{bad}\n")).unwrap_err();
            assert!(err.contains("line 2") && err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn roles_allow_what_the_table_says() {
        let allows = |role: Role, m: &str| role.allows("WorkService", m);
        assert!(allows(Role::Agent, "Claim") && !allows(Role::Agent, "Submit"));
        assert!(allows(Role::Submitter, "Submit") && !allows(Role::Submitter, "Claim"));
        assert!(allows(Role::Operator, "Cancel") && !allows(Role::Operator, "Complete"));
        assert!(allows(Role::Reader, "WorkStats") && !allows(Role::Reader, "Cancel"));
        assert!(!allows(Role::Agent, "ListWork"));
        for role in Role::ALL {
            assert!(role.allows("AdminService", "ClusterStatus"));
            assert_eq!(
                role.allows("AdminService", "RemoveNode"),
                role == Role::Admin
            );
        }
    }
}
