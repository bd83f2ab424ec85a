//! Lease arithmetic: when an instance expires, how many may be evicted per run, and the renewal
//! rate behind self-preservation (EUREKA.md, "Server semantics").

use crate::model::Instance;

/// Renewals Eureka expects per client and minute: one every 30 s. Java derives the
/// self-preservation threshold from this (`expectedClients × 2 × percent`).
const EXPECTED_RENEWS_PER_CLIENT_MINUTE: f64 = 2.0;

/// When a lease renewed at `now` runs out, on the monotonic clock (ms): `durationInSecs` after the
/// renewal, 90 s when that is 0.
///
/// wsgate expires a lease `durationInSecs` after its last renewal. Java's renew sets the expiry a
/// second duration further (a documented bug); a gateway routing sessions wants the dead instance
/// out as soon as its client promised it would be.
pub(crate) fn expires_at(instance: &Instance, now: u64) -> u64 {
    now.saturating_add(instance.lease_info.duration_ms())
}

/// Whether a lease that runs out at `expires_at` has at `now` (both monotonic ms).
pub(crate) fn is_expired(expires_at: u64, now: u64) -> bool {
    now > expires_at
}

/// How many of `registry_size` instances one eviction run may remove: Java's
/// `size - (int)(size × percent)`, i.e. at most 15% with the default 0.85 (but at least one of a
/// small registry, since the cast rounds down).
pub(crate) fn eviction_limit(registry_size: usize, renewal_percent_threshold: f64) -> usize {
    let kept = (registry_size as f64 * renewal_percent_threshold) as usize;
    registry_size.saturating_sub(kept)
}

/// The self-preservation threshold: Java's `(int)(expectedClients × 2 × percent)` renewals per minute.
pub(crate) fn renews_threshold(expected_clients: u64, renewal_percent_threshold: f64) -> u64 {
    (expected_clients as f64 * EXPECTED_RENEWS_PER_CLIENT_MINUTE * renewal_percent_threshold) as u64
}

/// Whether leases may expire now. With self-preservation on, Java lets them expire only while the
/// renewals of the last minute exceed a positive threshold: when most clients stop renewing at
/// once, the registry suspects its own network rather than all of its clients.
pub(crate) fn expiry_enabled(self_preservation: bool, threshold: u64, renews_last_minute: u64) -> bool {
    !self_preservation || (threshold > 0 && renews_last_minute > threshold)
}

/// Renewals counted over a sliding minute, in one-second buckets (fixed memory, whatever the rate),
/// on the monotonic clock.
#[derive(Debug, Clone)]
pub(crate) struct RenewRate {
    /// `(second of the monotonic clock, renewals in it)`, indexed by second modulo 60.
    buckets: [(u64, u64); 60],
}

impl RenewRate {
    pub(crate) fn new() -> RenewRate {
        RenewRate { buckets: [(0, 0); 60] }
    }

    /// Counts one renewal at `now` (ms).
    pub(crate) fn record(&mut self, now: u64) {
        let second = now / 1000;
        let bucket = &mut self.buckets[(second % 60) as usize];
        if bucket.0 != second {
            *bucket = (second, 0);
        }
        bucket.1 += 1;
    }

    /// Renewals in the minute up to `now` (ms).
    pub(crate) fn last_minute(&self, now: u64) -> u64 {
        let second = now / 1000;
        self.buckets.iter().filter(|(s, _)| *s <= second && s + 60 > second).map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_one_duration_after_its_last_renewal() {
        let mut instance = Instance::new("a", "i", "h", "1");
        instance.lease_info.duration_secs = 3;
        let at = expires_at(&instance, 10_000);
        assert!(!is_expired(at, 13_000));
        assert!(is_expired(at, 13_001));
        instance.lease_info.duration_secs = 0; // read as 90 s
        let at = expires_at(&instance, 10_000);
        assert!(!is_expired(at, 100_000));
        assert!(is_expired(at, 100_001));
        instance.lease_info.duration_secs = u32::MAX;
        assert!(!is_expired(expires_at(&instance, u64::MAX - 1), u64::MAX));
    }

    #[test]
    fn eviction_takes_at_most_fifteen_percent() {
        assert_eq!(eviction_limit(0, 0.85), 0);
        assert_eq!(eviction_limit(1, 0.85), 1);
        assert_eq!(eviction_limit(2, 0.85), 1);
        assert_eq!(eviction_limit(10, 0.85), 2); // 10 - (int)8.5
        assert_eq!(eviction_limit(100, 0.85), 15);
    }

    #[test]
    fn self_preservation_threshold_follows_java() {
        assert_eq!(renews_threshold(1, 0.85), 1);
        assert_eq!(renews_threshold(10, 0.85), 17);
        assert!(!expiry_enabled(true, 0, 100), "no expected client: Java never expires");
        assert!(!expiry_enabled(true, 17, 17));
        assert!(expiry_enabled(true, 17, 18));
        assert!(expiry_enabled(false, 17, 0));
    }

    #[test]
    fn renewals_slide_out_after_a_minute() {
        let mut rate = RenewRate::new();
        rate.record(1_000);
        rate.record(1_500);
        rate.record(30_000);
        assert_eq!(rate.last_minute(30_000), 3);
        assert_eq!(rate.last_minute(60_999), 3);
        assert_eq!(rate.last_minute(61_000), 1);
        rate.record(61_000); // reuses the bucket of second 1
        assert_eq!(rate.last_minute(61_000), 2);
        assert_eq!(rate.last_minute(200_000), 0);
    }
}
