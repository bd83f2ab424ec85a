//! Latency recording in an HDR histogram, in microseconds.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency the histogram tracks exactly (60 s); larger values are clamped to it.
const MAX_TRACKED_US: u64 = 60_000_000;

/// A latency histogram in µs with 3 significant digits, from 1 µs to 60 s.
#[derive(Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

/// The percentiles a report prints, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value recorded.
    pub max: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
        let histogram = Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("valid histogram bounds");
        Self { histogram }
    }

    /// Records one latency, rounded down to whole µs (at least 1 µs, at most 60 s).
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_TRACKED_US);
        self.histogram.saturating_record(us);
    }

    /// Adds every value of `other` to this histogram.
    pub fn merge(&mut self, other: &Latency) {
        // Both have the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    /// Number of values recorded.
    pub fn len(&self) -> u64 {
        self.histogram.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The report's percentiles; all zero when nothing was recorded.
    pub fn percentiles(&self) -> Percentiles {
        if self.histogram.is_empty() {
            return Percentiles::default();
        }
        let h = &self.histogram;
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ordered_and_merge_adds() {
        let mut a = Latency::new();
        for us in 1..=1000u64 {
            a.record(Duration::from_micros(us));
        }
        let mut b = Latency::new();
        b.record(Duration::from_millis(50));
        a.merge(&b);
        assert_eq!(a.len(), 1001);
        let p = a.percentiles();
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max);
        assert!((499..=501).contains(&p.p50), "{p:?}");
        assert!((49_950..=50_050).contains(&p.max), "{p:?}");
    }

    #[test]
    fn empty_and_clamped() {
        assert_eq!(Latency::new().percentiles(), Percentiles::default());
        let mut l = Latency::new();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(3600));
        let p = l.percentiles();
        assert_eq!(p.p50, 1);
        assert!(p.max >= MAX_TRACKED_US - MAX_TRACKED_US / 1000);
    }
}
