//! Who may speak to this node as a peer. With TLS on, every peer connection
//! is mutual TLS: a node presents a certificate from the cluster's CA whose
//! subject alternative names include `swarm-node-N`, N its id
//! (`swarmctl cert node --id N` makes one). A peer call (Raft messages,
//! forwarded writes and reads, hand-offs) is admitted only from such a
//! certificate naming a current member, voter or learner: a client's
//! certificate, a certificate naming another id, and a removed member's are
//! refused. A node that is in no cluster yet has no members to check
//! against and admits any node certificate (the leader's first append to a
//! joining node comes before that node knows the membership).
//!
//! The signature itself is checked by rustls during the handshake, against
//! the CA the server was given: a certificate from another CA never gets
//! this far.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use openraft::type_config::async_runtime::WatchReceiver;
use tonic::transport::CertificateDer;
use tonic::{Request, Status};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::{NodeId, Raft};

/// The node ids a certificate names (`swarm-node-N` subject alternative
/// names); empty for a client certificate.
pub fn node_ids_of(der: &[u8]) -> Result<Vec<NodeId>, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("peer certificate does not parse: {e}"))?;
    let names = cert
        .subject_alternative_name()
        .map_err(|e| format!("peer certificate's subject alternative names: {e}"))?;
    Ok(names
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    // "swarm-node-7", not "swarm-node-07": one name per id.
                    GeneralName::DNSName(name) => name
                        .strip_prefix(swarm_proto::NODE_CERT_PREFIX)?
                        .parse()
                        .ok()
                        .filter(|id| swarm_proto::node_cert_name(*id) == *name),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The common name of a certificate's subject (what `swarmctl cert client
/// --name NAME` puts there), if it has one.
pub fn common_name_of(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let name = cert.subject().iter_common_name().next()?;
    name.as_str().ok().map(str::to_string)
}

/// The check every peer call passes first.
#[derive(Clone)]
pub struct PeerAuth {
    /// `None`: no TLS, nothing to check (loopback development clusters).
    raft: Option<Raft>,
    /// The node ids of certificates already parsed. A connection presents
    /// the same certificate on every call (every append entries), and the
    /// parse is what costs; the membership is checked on every call.
    parsed: Arc<Mutex<HashMap<CertificateDer<'static>, Vec<NodeId>>>>,
}

/// More distinct certificates than a cluster has nodes: past it, the cache
/// starts over.
const PARSED_CERTS: usize = 256;

impl PeerAuth {
    pub(crate) fn new(raft: &Raft, tls: bool) -> PeerAuth {
        PeerAuth {
            raft: tls.then(|| raft.clone()),
            parsed: Arc::default(),
        }
    }

    /// The node ids `leaf` names, parsed once per certificate.
    fn ids_of(&self, leaf: &CertificateDer<'static>) -> Result<Vec<NodeId>, Status> {
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ids) = parsed.get(leaf) {
            return Ok(ids.clone());
        }
        let ids = node_ids_of(leaf).map_err(Status::unauthenticated)?;
        if parsed.len() >= PARSED_CERTS {
            parsed.clear();
        }
        parsed.insert(leaf.clone(), ids.clone());
        Ok(ids)
    }

    /// Admits `request` if it came over mutual TLS from a node certificate
    /// naming a current member; answers which member.
    pub fn admit<T>(&self, request: &Request<T>) -> Result<Option<NodeId>, Status> {
        self.admit_certs(request.peer_certs())
    }

    /// [`PeerAuth::admit`] for the certificates a connection presented.
    pub fn admit_certs(
        &self,
        certs: Option<Arc<Vec<CertificateDer<'static>>>>,
    ) -> Result<Option<NodeId>, Status> {
        let Some(raft) = &self.raft else {
            return Ok(None);
        };
        let Some(leaf) = certs.as_deref().and_then(|c| c.first()) else {
            return Err(Status::unauthenticated(
                "peer calls need a node certificate (mutual TLS): this connection presented none",
            ));
        };
        let ids = self.ids_of(leaf)?;
        if ids.is_empty() {
            return Err(Status::permission_denied(
                "peer calls need a node certificate (a swarm-node-N name); this one names no node",
            ));
        }
        let metrics = raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        if membership.nodes().next().is_none() {
            return Ok(ids.first().copied());
        }
        let is_member = |id: &NodeId| membership.nodes().any(|(m, _)| m == id);
        match ids.iter().find(|id| is_member(id)) {
            Some(id) => Ok(Some(*id)),
            None => Err(Status::permission_denied(format!(
                "the certificate names node {} and no such node is a member (members: {})",
                ids.iter()
                    .map(NodeId::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                membership
                    .nodes()
                    .map(|(id, _)| id.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ))),
        }
    }
}
