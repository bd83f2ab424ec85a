//! Passive health: an instance whose connect failed is kept out of picks for `ejectFor`, then
//! tried again.
//!
//! The deadline is one atomic, read by every pick and written only on failures, so healthy
//! instances cost a relaxed load per pick. Times are milliseconds since the picker's epoch, taken as
//! arguments so that the logic is tested without a clock.

use std::sync::atomic::{AtomicU64, Ordering};

/// When an instance may take new sessions again.
#[derive(Debug, Default)]
pub(super) struct Ejection {
    /// Milliseconds since the epoch until which the instance is out; 0 when it is in rotation.
    until: AtomicU64,
}

impl Ejection {
    /// Keeps the instance out for `duration_ms` from `now_ms` (longer if it already is).
    pub(super) fn eject(&self, now_ms: u64, duration_ms: u64) {
        // Never 0, which means "in rotation", even at the epoch itself.
        self.until.fetch_max(now_ms.saturating_add(duration_ms).max(1), Ordering::Relaxed);
    }

    /// Whether the instance is out at `now_ms`.
    pub(super) fn is_ejected(&self, now_ms: u64) -> bool {
        now_ms < self.until.load(Ordering::Relaxed)
    }

    /// Puts the instance back in rotation if its ejection ran out by `now_ms`; true only for the one
    /// caller that did, so the return to rotation is logged once.
    pub(super) fn readmit(&self, now_ms: u64) -> bool {
        let until = self.until.load(Ordering::Relaxed);
        until != 0 && now_ms >= until && self.until.compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_until_the_duration_has_passed_then_readmitted_once() {
        let ejection = Ejection::default();
        assert!(!ejection.is_ejected(0));
        assert!(!ejection.readmit(0));
        ejection.eject(1_000, 30_000);
        assert!(ejection.is_ejected(1_000) && ejection.is_ejected(30_999));
        assert!(!ejection.readmit(30_999));
        assert!(!ejection.is_ejected(31_000));
        assert!(ejection.readmit(31_000));
        assert!(!ejection.readmit(31_000));
    }

    #[test]
    fn a_second_failure_extends_and_never_shortens() {
        let ejection = Ejection::default();
        ejection.eject(0, 10_000);
        ejection.eject(5_000, 10_000);
        assert!(ejection.is_ejected(14_999));
        ejection.eject(6_000, 1_000);
        assert!(ejection.is_ejected(14_999) && !ejection.is_ejected(15_000));
    }

    #[test]
    fn ejected_at_the_epoch_is_still_ejected() {
        let ejection = Ejection::default();
        ejection.eject(0, 0);
        assert!(ejection.is_ejected(0));
        assert!(ejection.readmit(1));
    }
}
