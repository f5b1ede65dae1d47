//! Retry delays as data: exponential growth from `initial` by `factor`, capped at `max`, with
//! optional jitter drawn from a caller-supplied (and so seedable) RNG.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How long to wait before each retry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    #[serde(with = "humantime_serde_lite")]
    pub initial: Duration,
    #[serde(with = "humantime_serde_lite")]
    pub max: Duration,
    pub factor: f64,
    /// Spread each delay uniformly over `[d/2, d]` so retries of many runs do not line up.
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            factor: 2.0,
            jitter: true,
        }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (1 for the first retry) without jitter:
    /// `initial * factor^(retry-1)`, never more than `max`.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial.as_secs_f64() * self.factor.powi(exp);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            return self.max;
        }
        Duration::from_secs_f64(secs).min(self.max)
    }

    /// The delay before retry number `retry`, with jitter drawn from `rng` when enabled.
    pub fn delay<R: Rng + ?Sized>(&self, retry: u32, rng: &mut R) -> Duration {
        let base = self.base_delay(retry);
        if !self.jitter || base.is_zero() {
            return base;
        }
        let half = base / 2;
        half + Duration::from_secs_f64(rng.random_range(0.0..=half.as_secs_f64()))
    }

    /// The delays before retries 1, 2, 3, ... (endless; `take(max_retries)` it).
    pub fn delays<'a, R: Rng + ?Sized>(
        &'a self,
        rng: &'a mut R,
    ) -> impl Iterator<Item = Duration> + 'a {
        (1..).map(move |n| self.delay(n, rng))
    }
}

/// Durations as humantime strings (`"200ms"`), matching how specs are written.
mod humantime_serde_lite {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grows_by_factor_and_caps_at_max() {
        let b = Backoff {
            initial: ms(100),
            max: ms(1000),
            factor: 2.0,
            jitter: false,
        };
        let got: Vec<_> = (1..=6).map(|n| b.base_delay(n)).collect();
        assert_eq!(
            got,
            vec![ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(b.base_delay(10_000), ms(1000));
    }

    #[test]
    fn jitter_stays_within_half_and_full_delay_and_is_seedable() {
        let b = Backoff {
            initial: ms(100),
            max: ms(5000),
            factor: 3.0,
            jitter: true,
        };
        let mut r1 = StdRng::seed_from_u64(7);
        let mut r2 = StdRng::seed_from_u64(7);
        let a: Vec<_> = b.delays(&mut r1).take(8).collect();
        let c: Vec<_> = b.delays(&mut r2).take(8).collect();
        assert_eq!(a, c, "same seed, same delays");
        for (i, d) in a.iter().enumerate() {
            let base = b.base_delay(u32::try_from(i).unwrap_or(0) + 1);
            assert!(
                *d >= base / 2 && *d <= base,
                "{d:?} outside [{:?}, {base:?}]",
                base / 2
            );
            assert!(*d <= b.max);
        }
    }
}
