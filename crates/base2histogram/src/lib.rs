//! The part of `base2histogram`'s API that openraft 0.10.0-alpha.37 uses
//! for its runtime statistics: [`Histogram`], [`PercentileStats`] and
//! [`AsciiChart`].
//!
//! Why it exists: base2histogram 0.2.3 builds, on the first
//! `Histogram::new()`, a table of bucket bounds for each of its 16 bucket
//! widths (2^(w-1) × (66-w) entries of 8 bytes each, 1.6 M entries for
//! width 16) and keeps them for the life of the process. openraft makes its
//! histograms at start-up with the default width, so every `swarmd` carried
//! 26 MB of resident memory for nine histograms it never reads (measured with
//! heaptrack and with a two-line program printing RssAnon before and after
//! one `Histogram::new()`). The workspace's `[patch.crates-io]` puts this
//! crate in its place.
//!
//! The buckets are the same log-linear ones as base2histogram's default
//! width 3: exact below 4, then four buckets per power of two (252 buckets
//! over all of `u64`), each found with a few bit operations instead of a
//! table. A percentile is the lower bound of the bucket holding that rank.

use std::fmt;
use std::marker::PhantomData;

/// Buckets below this hold one value each.
const EXACT: u64 = 4;
/// Buckets per power of two above [`EXACT`].
const PER_OCTAVE: usize = 4;
/// Buckets covering `0..=u64::MAX`.
const BUCKETS: usize = EXACT as usize + (63 - 1) * PER_OCTAVE;

/// The bucket that holds `value`.
fn bucket_of(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    // value >= 4: its highest set bit is bit 2 or above.
    let msb = 63 - value.leading_zeros() as usize;
    let sub = ((value >> (msb - 2)) & 3) as usize;
    EXACT as usize + (msb - 2) * PER_OCTAVE + sub
}

/// The smallest value bucket `index` holds.
fn lower_bound(index: usize) -> u64 {
    if index < EXACT as usize {
        return index as u64;
    }
    let rest = index - EXACT as usize;
    let msb = rest / PER_OCTAVE + 2;
    let sub = (rest % PER_OCTAVE) as u64;
    (1u64 << msb) | (sub << (msb - 2))
}

/// Counts of values in log-linear buckets. `T` is data a caller may attach
/// (unused here; openraft uses `()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram<T = ()> {
    buckets: Vec<u64>,
    samples: u64,
    _data: PhantomData<T>,
}

impl<T> Default for Histogram<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Histogram<T> {
    /// An empty histogram (252 counters: 2 KiB).
    pub fn new() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS],
            samples: 0,
            _data: PhantomData,
        }
    }

    /// Records `value` once.
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `value` `count` times.
    pub fn record_n(&mut self, value: u64, count: u64) {
        if let Some(b) = self.buckets.get_mut(bucket_of(value)) {
            *b = b.saturating_add(count);
        }
        self.samples = self.samples.saturating_add(count);
    }

    /// How many values were recorded.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The value at fraction `p` (0.0..=1.0) of the recorded ones, as the
    /// lower bound of its bucket; 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.samples == 0 {
            return 0;
        }
        let wanted = ((p.clamp(0.0, 1.0) * self.samples as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(n);
            if seen >= wanted {
                return lower_bound(i);
            }
        }
        lower_bound(BUCKETS - 1)
    }

    /// The percentiles openraft reports.
    pub fn percentile_stats(&self) -> PercentileStats {
        PercentileStats {
            samples: self.samples,
            p0_1: self.percentile(0.001),
            p1: self.percentile(0.01),
            p5: self.percentile(0.05),
            p10: self.percentile(0.10),
            p50: self.percentile(0.50),
            p90: self.percentile(0.90),
            p99: self.percentile(0.99),
            p99_9: self.percentile(0.999),
        }
    }
}

/// Percentiles of a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PercentileStats {
    pub samples: u64,
    pub p0_1: u64,
    pub p1: u64,
    pub p5: u64,
    pub p10: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
}

impl fmt::Display for PercentileStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[samples: {}, P0.1: {}, P1: {}, P5: {}, P10: {}, P50: {}, P90: {}, P99: {}, P99.9: {}]",
            self.samples,
            self.p0_1,
            self.p1,
            self.p5,
            self.p10,
            self.p50,
            self.p90,
            self.p99,
            self.p99_9
        )
    }
}

/// Named histograms drawn as text, one line of percentiles each.
#[derive(Debug, Clone, Default)]
pub struct AsciiChart {
    rows: Vec<(String, PercentileStats)>,
}

impl AsciiChart {
    pub fn new() -> Self {
        AsciiChart::default()
    }

    /// Adds `histogram` under `name`.
    pub fn add<T>(mut self, name: impl Into<String>, histogram: Histogram<T>) -> Self {
        self.rows.push((name.into(), histogram.percentile_stats()));
        self
    }

    /// The chart as text.
    pub fn detailed(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for AsciiChart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .rows
            .iter()
            .map(|(n, _)| n.chars().count())
            .max()
            .unwrap_or(0);
        for (name, stats) in &self.rows {
            writeln!(f, "{name:>width$}: {stats}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_the_bucket_whose_bounds_hold_it() {
        let mut values: Vec<u64> = (0..5000).collect();
        values.extend((0..64).map(|s| 1u64 << s));
        values.extend((1..64).map(|s| (1u64 << s) - 1));
        values.extend([u64::MAX, u64::MAX - 1, 1_000_000_007]);
        for v in values {
            let b = bucket_of(v);
            assert!(b < BUCKETS, "{v} -> {b}");
            assert!(lower_bound(b) <= v, "{v} below its bucket {b}");
            if b + 1 < BUCKETS {
                assert!(v < lower_bound(b + 1), "{v} beyond its bucket {b}");
            }
        }
        assert_eq!(BUCKETS, 252);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        // Bounds rise strictly: no bucket is empty by construction.
        assert!((1..BUCKETS).all(|i| lower_bound(i - 1) < lower_bound(i)));
    }

    #[test]
    fn percentiles_name_the_bucket_of_that_rank() {
        let mut h = Histogram::<()>::new();
        assert_eq!(h.percentile_stats(), PercentileStats::default());
        for v in 1..=100 {
            h.record(v);
        }
        h.record_n(1000, 0);
        let s = h.percentile_stats();
        assert_eq!(s.samples, 100);
        assert_eq!(s.p0_1, 1);
        assert_eq!(s.p1, 1);
        // Rank 50 is 50, in bucket [48, 56); rank 90 is 90, in [80, 96).
        assert_eq!(s.p50, 48);
        assert_eq!(s.p90, 80);
        assert_eq!(s.p99_9, 96);
        let chart = AsciiChart::new().add("a", h.clone()).add("longer", h);
        assert_eq!(chart.detailed().lines().count(), 2);
        assert!(chart.detailed().starts_with("     a: [samples: 100"));
    }
}
