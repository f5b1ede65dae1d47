//! How long the client waits and how often it tries again.

use std::time::Duration;

use crate::ClientError;

/// Timeouts and retry policy of a [`SwarmClient`](crate::SwarmClient).
///
/// Build it in one expression and validate it:
/// `ClientConfig { request_timeout: Duration::from_secs(2), ..ClientConfig::default() }.validate()?`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Bound on opening a TCP connection to one node, so that a node that is
    /// down costs one attempt at most this long.
    pub connect_timeout: Duration,
    /// Bound on one attempt (one RPC to one node). Also sent to the node as
    /// `grpc-timeout`, so the node can give up on work nobody waits for.
    pub request_timeout: Duration,
    /// Bound on [`SwarmClient::cluster_status_of`](crate::SwarmClient::cluster_status_of):
    /// a node that does not answer this fast is reported unreachable.
    pub probe_timeout: Duration,
    /// When and how often a failed call is tried again.
    pub retry: RetryPolicy,
    /// TLS to the nodes: the CA their certificates are checked against, and
    /// a client certificate if the cluster wants one ([`ClientConfig::tls_from_pem`]).
    /// `None`: plaintext.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// A bearer token sent with every call (`authorization: Bearer ...`),
    /// for a cluster with a tokens file. `None`: no token.
    pub token: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            tls: None,
            token: None,
        }
    }
}

impl ClientConfig {
    /// TLS from PEM text: the CA certificate that signs the nodes', and
    /// optionally a client certificate and its key.
    pub fn tls_from_pem(
        ca: impl AsRef<[u8]>,
        identity: Option<(Vec<u8>, Vec<u8>)>,
    ) -> tonic::transport::ClientTlsConfig {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(ca));
        match identity {
            Some((cert, key)) => tls.identity(tonic::transport::Identity::from_pem(cert, key)),
            None => tls,
        }
    }

    /// Checks that every timeout is positive and the policy allows one attempt.
    pub fn validate(self) -> Result<Self, ClientError> {
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("probe_timeout", self.probe_timeout),
            ("retry.total_timeout", self.retry.total_timeout),
        ] {
            if value.is_zero() {
                return Err(ClientError::InvalidConfig(format!(
                    "{name} must be positive"
                )));
            }
        }
        if let Some(token) = &self.token
            && (token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ClientError::InvalidConfig(
                "token must be printable ASCII without spaces".to_string(),
            ));
        }
        if self.retry.rounds == 0 {
            return Err(ClientError::InvalidConfig(
                "retry.rounds must be at least 1".to_string(),
            ));
        }
        if self.retry.max_backoff < self.retry.initial_backoff {
            return Err(ClientError::InvalidConfig(
                "retry.max_backoff must not be less than retry.initial_backoff".to_string(),
            ));
        }
        Ok(self)
    }
}

/// Retries as data: a call goes through the endpoint list up to `rounds`
/// times, pausing between rounds, and gives up once `total_timeout` has passed.
///
/// A leader hint is followed at once, without a pause. Which failures are
/// retried at all depends on the call; see the crate docs.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// How many times a call may go through the whole endpoint list.
    pub rounds: u32,
    /// The pause before the second round; each later pause doubles it.
    pub initial_backoff: Duration,
    /// The longest pause between two rounds.
    pub max_backoff: Duration,
    /// Bound on a whole call, every attempt and pause included.
    pub total_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            rounds: 3,
            initial_backoff: Duration::from_millis(300),
            max_backoff: Duration::from_secs(2),
            total_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A policy that tries every endpoint once and never pauses.
    pub fn once() -> Self {
        RetryPolicy {
            rounds: 1,
            initial_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            ..RetryPolicy::default()
        }
    }

    /// The pauses before round 2, 3, ...: doubling from `initial_backoff`,
    /// capped at `max_backoff`. Jitter is added when the pause is taken.
    pub fn backoffs(&self) -> impl Iterator<Item = Duration> + use<> {
        let max = self.max_backoff;
        std::iter::successors(Some(self.initial_backoff.min(max)), move |d| {
            Some(d.saturating_mul(2).min(max))
        })
        .take(self.rounds.saturating_sub(1) as usize)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn default_config_is_valid() {
        let config = ClientConfig::default().validate().unwrap();
        assert_eq!(config.connect_timeout, Duration::from_secs(1));
        assert_eq!(config.request_timeout, Duration::from_secs(5));
    }

    #[test]
    fn zero_timeouts_and_rounds_are_refused() {
        let err = ClientConfig {
            request_timeout: Duration::ZERO,
            ..ClientConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid client config: request_timeout must be positive"
        );

        let err = ClientConfig {
            retry: RetryPolicy {
                rounds: 0,
                ..RetryPolicy::default()
            },
            ..ClientConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("rounds"));
    }

    #[test]
    fn backoffs_double_up_to_the_cap_and_stop_after_the_last_round() {
        let policy = RetryPolicy {
            rounds: 5,
            initial_backoff: Duration::from_millis(300),
            max_backoff: Duration::from_secs(1),
            total_timeout: Duration::from_secs(10),
        };
        let pauses: Vec<_> = policy.backoffs().collect();
        assert_eq!(
            pauses,
            [300, 600, 1000, 1000].map(Duration::from_millis).to_vec()
        );
        assert_eq!(RetryPolicy::once().backoffs().count(), 0);
    }
}
