//! Which calls each gRPC listener takes.
//!
//! With a peer port (`peer_listen`), the client port serves WorkService,
//! AdminService, health and reflection, and the peer port serves RaftService
//! (appends, votes, snapshots, forwarded writes) and HandoffService; each
//! refuses the other's calls with PERMISSION_DENIED naming the port that
//! serves them. Without one, `listen` serves both. Health is on every port.
//!
//! Under TLS, a hand-off offer needs a current member's certificate, as every
//! Raft call does (`swarm_raft::PeerAuth`): the peer port asks every
//! connection for a certificate from the cluster's CA, and that alone does
//! not make the caller a member.

use std::net::SocketAddr;

use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::gate::{Gate, service_and_method};

/// What one listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Clients only; peers are served at this address.
    Clients { peers_at: SocketAddr },
    /// Peers only; clients are served at this address.
    Peers { clients_at: SocketAddr },
    /// Clients and peers, on a node without a peer port.
    Both,
}

/// The services peers call.
const PEER_SERVICES: [&str; 2] = ["swarm.v1.RaftService", "swarm.v1.HandoffService"];
/// Served on every port.
const HEALTH: &str = "grpc.health.v1.Health";
const HANDOFF: &str = "swarm.v1.HandoffService";

impl Port {
    /// The refusal of a call of `service` (its full name) on this port, if
    /// it belongs on the other one.
    fn refusal(self, service: &str) -> Option<Status> {
        let peer_call = PEER_SERVICES.contains(&service);
        match self {
            Port::Clients { peers_at } if peer_call => Some(Status::permission_denied(format!(
                "{service} is served on the peer port ({peers_at}, peer_listen), not on this client port"
            ))),
            Port::Peers { clients_at } if !peer_call && service != HEALTH => {
                Some(Status::permission_denied(format!(
                    "{service} is served on the client port ({clients_at}, listen), not on this peer port"
                )))
            }
            _ => None,
        }
    }
}

/// Refuses the calls a listener does not serve (see the module docs): a
/// [`Gate`].
#[derive(Clone)]
pub struct PortLayer {
    port: Port,
    /// Checks hand-off callers' certificates; `None` without TLS.
    peers: Option<swarm_raft::PeerAuth>,
}

impl PortLayer {
    pub fn new(port: Port, peers: Option<swarm_raft::PeerAuth>) -> PortLayer {
        PortLayer { port, peers }
    }
}

impl Gate for PortLayer {
    fn check<B>(&self, request: &mut http::Request<B>) -> Result<(), Status> {
        let (service, _) = service_and_method(request);
        if let Some(refused) = self.port.refusal(service) {
            return Err(refused);
        }
        if let (HANDOFF, Some(peers)) = (service, &self.peers) {
            let certs = request
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(TlsConnectInfo::peer_certs);
            peers.admit_certs(certs)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_port_refuses_the_other_ports_calls_and_names_it() {
        let (c, p): (SocketAddr, SocketAddr) =
            (([127, 0, 0, 1], 7101).into(), ([127, 0, 0, 1], 7201).into());
        let clients = Port::Clients { peers_at: p };
        let peers = Port::Peers { clients_at: c };
        for service in PEER_SERVICES {
            let refused = clients.refusal(service).map(|s| s.message().to_string());
            assert!(
                refused.is_some_and(|m| m.contains("127.0.0.1:7201")),
                "{service}"
            );
            assert!(peers.refusal(service).is_none());
            assert!(Port::Both.refusal(service).is_none());
        }
        for service in [
            "swarm.v1.WorkService",
            "swarm.v1.AdminService",
            "grpc.reflection.v1.ServerReflection",
        ] {
            assert!(clients.refusal(service).is_none());
            let refused = peers.refusal(service).map(|s| s.message().to_string());
            assert!(
                refused.is_some_and(|m| m.contains("127.0.0.1:7101")),
                "{service}"
            );
        }
        assert!(peers.refusal(HEALTH).is_none() && clients.refusal(HEALTH).is_none());
    }
}
