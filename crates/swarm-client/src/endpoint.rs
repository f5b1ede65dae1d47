//! Node addresses as users write them (`127.0.0.1:7101`, `http://node1:7101`)
//! and as nodes name their leader in the `swarm-leader-addr` hint (`host:port`).

use std::fmt;
use std::str::FromStr;

use tonic::transport::Uri;

use crate::ClientError;

/// The address of one node's gRPC server, kept as `host:port` so that an
/// endpoint the user gave and a leader hint from a node compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddr(String);

impl NodeAddr {
    /// `host:port`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI a channel connects to. Nodes serve plain HTTP/2.
    pub fn uri(&self) -> String {
        format!("http://{}", self.0)
    }

    /// The host part, without the port (and without an IPv6 address's
    /// brackets): the name a node's TLS certificate must carry.
    pub fn host(&self) -> &str {
        let host = self.0.rsplit_once(':').map_or(self.0.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeAddr {
    type Err = ClientError;

    /// Accepts `host:port`, `http://host:port` and `https://host:port` (with
    /// or without a trailing `/`); TLS is the client's configuration.
    fn from_str(s: &str) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidEndpoint {
            endpoint: s.to_string(),
            reason: reason.to_string(),
        };
        let raw = s.trim();
        if raw.is_empty() {
            return Err(invalid("empty address"));
        }
        // Whether to speak TLS is the client's configuration (a CA given),
        // not the address's: `https://` is accepted as `host:port`.
        let rest = if let Some(rest) = raw
            .strip_prefix("http://")
            .or_else(|| raw.strip_prefix("https://"))
        {
            rest
        } else if raw.contains("://") {
            return Err(invalid(
                "unsupported scheme: use host:port, http://host:port or https://host:port",
            ));
        } else {
            raw
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err(invalid("a node address has no path"));
        }
        if authority.contains('@') {
            return Err(invalid("a node address has no user info"));
        }
        let uri: Uri = format!("http://{authority}")
            .parse()
            .map_err(|e| invalid(&format!("not host:port ({e})")))?;
        let Some(authority) = uri.authority() else {
            return Err(invalid("missing host"));
        };
        if authority.host().is_empty() {
            return Err(invalid("missing host"));
        }
        if authority.port_u16().is_none() {
            return Err(invalid("missing port (expected host:port)"));
        }
        Ok(NodeAddr(authority.as_str().to_ascii_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(s: &str) -> Result<NodeAddr, ClientError> {
        s.parse()
    }

    #[test]
    fn plain_host_port() {
        let a = parse("127.0.0.1:7101").unwrap();
        assert_eq!(a.as_str(), "127.0.0.1:7101");
        assert_eq!(a.uri(), "http://127.0.0.1:7101");
    }

    #[test]
    fn http_scheme_and_trailing_slash_are_accepted() {
        assert_eq!(
            parse("http://127.0.0.1:7101").unwrap().as_str(),
            "127.0.0.1:7101"
        );
        assert_eq!(parse("http://Node1:7101/").unwrap().as_str(), "node1:7101");
        assert_eq!(
            parse("  localhost:7102 ").unwrap().as_str(),
            "localhost:7102"
        );
    }

    #[test]
    fn ipv6_literal() {
        assert_eq!(parse("[::1]:7101").unwrap().as_str(), "[::1]:7101");
    }

    #[test]
    fn user_endpoint_and_leader_hint_compare_equal() {
        assert_eq!(
            parse("http://127.0.0.1:7101").unwrap(),
            parse("127.0.0.1:7101").unwrap()
        );
        assert_eq!(
            parse("https://127.0.0.1:7101/").unwrap(),
            parse("127.0.0.1:7101").unwrap()
        );
        assert_eq!(parse("https://[::1]:7101").unwrap().host(), "::1");
        assert_eq!(parse("Node1:7101").unwrap().host(), "node1");
    }

    #[test]
    fn malformed_addresses_are_refused_with_a_reason() {
        for (input, reason) in [
            ("", "empty"),
            ("127.0.0.1", "missing port"),
            ("ftp://127.0.0.1:7101", "scheme"),
            ("grpc://127.0.0.1:7101", "scheme"),
            ("127.0.0.1:7101/swarm", "path"),
            ("127.0.0.1:notaport", "host:port"),
            ("user@127.0.0.1:7101", "user info"),
        ] {
            let err = parse(input).expect_err(input).to_string();
            assert!(err.contains(reason), "{input:?}: {err}");
            assert!(err.starts_with("invalid endpoint"), "{input:?}: {err}");
        }
    }
}
