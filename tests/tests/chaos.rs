//! The CI tier of the chaos suite: a bounded run of real `swarmd` processes
//! under every nemesis, with fixed seeds printed in the output, that must
//! check at least 10,000 operations and find no anomaly. Long runs:
//! `scripts/chaos.sh --duration 10m`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use swarm_tests::chaos::nemesis::FaultKind;
use swarm_tests::chaos::runner::{self, ChaosConfig};

/// The seed of the CI run; change it only with a reason in the commit.
const CI_SEED: u64 = 20261124;

/// The nodes' retention in the CI run: short enough that most items
/// finished in the first minutes are removed while the run goes on (so the
/// checker has to tell removed from lost), long enough that a submit retried
/// with its idempotency key, seconds later, never finds its first item
/// already removed.
const CI_RETENTION: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_tier_every_nemesis_no_anomaly() {
    let seed = std::env::var("SWARM_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CI_SEED);
    let duration = std::env::var("SWARM_CHAOS_DURATION")
        .ok()
        .and_then(|s| humantime::parse_duration(&s).ok())
        .unwrap_or(Duration::from_secs(120));
    eprintln!(
        "chaos CI tier: seed {seed}, duration {duration:?} (SWARM_CHAOS_SEED / SWARM_CHAOS_DURATION to change)"
    );
    let mut config = ChaosConfig::new(seed, duration);
    config.history_path = Some(std::env::temp_dir().join(format!("swarm-chaos-ci-{seed}.json")));
    config.save_history_on_anomaly_only = true;
    config.retention = Some(CI_RETENTION);
    let report = runner::run(config).await.expect("the chaos run itself");
    eprintln!("{report}");
    eprintln!("{}", serde_json::to_string(&report.to_json()).unwrap());

    assert!(
        report.passed(),
        "anomalies found (seed {seed}): {:?}",
        report.anomalies()
    );
    assert!(
        report.liveness_error.is_none(),
        "{:?}",
        report.liveness_error
    );
    assert!(
        report.check.stale_rejected > 0,
        "no stale write was rejected: the fault paths did not run"
    );
    for kind in FaultKind::ALL {
        assert!(
            report.faults.get(kind.name()).is_some_and(|s| s.count > 0),
            "nemesis {} never ran (seed {seed})",
            kind.name()
        );
    }
    assert!(
        report.removed_by_retention > 0,
        "no finished item was removed after the retention period of {CI_RETENTION:?}"
    );
    assert!(
        report.check.ops_checked >= 10_000,
        "only {} operations checked (seed {seed})",
        report.check.ops_checked
    );
}

/// The same checks over TLS and mutual TLS, shorter: every peer message and
/// client call goes through rustls, and the link proxies cut, slow and
/// partition TLS connections they cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_tier_over_mutual_tls_no_anomaly() {
    let certs = tempfile::tempdir().expect("a directory for certificates");
    swarm_cli::make_ca(certs.path()).expect("a CA");
    for id in 1..=3 {
        swarm_cli::make_node(certs.path(), id, &["127.0.0.1".to_string()])
            .expect("a node certificate");
    }
    let seed = CI_SEED + 1;
    let mut config = ChaosConfig::new(seed, Duration::from_secs(30));
    config.save_history_on_anomaly_only = true;
    config.history_path =
        Some(std::env::temp_dir().join(format!("swarm-chaos-ci-tls-{seed}.json")));
    config.retention = Some(CI_RETENTION);
    config.tls_dir = Some(certs.path().to_path_buf());
    let report = runner::run(config).await.expect("the chaos run itself");
    eprintln!("{report}");
    assert!(
        report.passed(),
        "anomalies found over TLS (seed {seed}): {:?}",
        report.anomalies()
    );
    assert!(
        report.liveness_error.is_none(),
        "{:?}",
        report.liveness_error
    );
    assert!(report.check.ops_checked > 0, "no operation was checked");
}
