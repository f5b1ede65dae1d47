//! Stopping steps: the run's cancel and suspend signals and an attempt's deadline, as one
//! [`Cancel`] each step (and each part of a `map` or `workflow` step) watches.

use std::future::pending;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::SuspendMode;

/// Cancellation as seen by one step: the run's cancel and suspend signals and, for `map` and
/// `workflow` steps, the attempt's deadline.
#[derive(Clone)]
pub(super) struct Cancel {
    /// `true` cancels: stop, and undo what completed.
    rx: Option<watch::Receiver<bool>>,
    /// `Drain`: start nothing new; `Now`: stop without undoing anything.
    suspend: Option<watch::Receiver<Option<SuspendMode>>>,
    deadline: Option<Instant>,
    /// The limit behind `deadline`, for the error message.
    timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Stop {
    Cancelled,
    TimedOut(Duration),
    /// Suspended `Now`: stop, and undo or compensate nothing.
    Halted,
}

impl Cancel {
    /// Without a deadline; a signal that is `None` never fires.
    pub(super) fn new(
        rx: Option<watch::Receiver<bool>>,
        suspend: Option<watch::Receiver<Option<SuspendMode>>>,
    ) -> Self {
        Self {
            rx,
            suspend,
            deadline: None,
            timeout: None,
        }
    }

    /// The suspension asked for, if any.
    pub(super) fn suspending(&self) -> Option<SuspendMode> {
        self.suspend.as_ref().and_then(|rx| *rx.borrow())
    }

    pub(super) fn halted(&self) -> bool {
        self.suspending() == Some(SuspendMode::Now)
    }

    /// Resolves once a suspension (either mode) is asked for; never if none can be.
    pub(super) async fn wait_suspend(&self) {
        if let Some(rx) = &self.suspend {
            let mut rx = rx.clone();
            if rx.wait_for(Option::is_some).await.is_ok() {
                return;
            }
        }
        pending::<()>().await;
    }

    /// Resolves once a suspension `Now` is asked for; never if none can be.
    pub(super) async fn wait_halt(&self) {
        if let Some(rx) = &self.suspend {
            let mut rx = rx.clone();
            if rx.wait_for(|m| *m == Some(SuspendMode::Now)).await.is_ok() {
                return;
            }
        }
        pending::<()>().await;
    }

    /// The same signals, with a deadline `timeout` from now unless the one set is earlier.
    pub(super) fn within(&self, timeout: Option<Duration>) -> Self {
        let Some(t) = timeout else {
            return self.clone();
        };
        let d = Instant::now() + t;
        match self.deadline {
            Some(existing) if existing <= d => self.clone(),
            _ => Self {
                rx: self.rx.clone(),
                suspend: self.suspend.clone(),
                deadline: Some(d),
                timeout: Some(t),
            },
        }
    }

    /// Why the step must stop, if it must, as of now.
    pub(super) fn now(&self) -> Option<Stop> {
        if self.rx.as_ref().is_some_and(|rx| *rx.borrow()) {
            return Some(Stop::Cancelled);
        }
        if self.halted() {
            return Some(Stop::Halted);
        }
        match (self.deadline, self.timeout) {
            (Some(d), Some(t)) if Instant::now() >= d => Some(Stop::TimedOut(t)),
            _ => None,
        }
    }

    /// Resolves with the first stop: a cancel, a suspension `Now`, or the deadline.
    pub(super) async fn wait(&self) -> Stop {
        let signal = async {
            if let Some(rx) = &self.rx {
                let mut rx = rx.clone();
                if rx.wait_for(|c| *c).await.is_ok() {
                    return;
                }
            }
            // No sender any more means nobody can cancel.
            pending::<()>().await;
        };
        tokio::select! {
            () = signal => Stop::Cancelled,
            () = self.wait_halt() => Stop::Halted,
            () = sleep_until(self.deadline) => Stop::TimedOut(self.timeout.unwrap_or_default()),
        }
    }
}

/// Sleeps until `deadline`; forever without one.
pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => pending::<()>().await,
    }
}
