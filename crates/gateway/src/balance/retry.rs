//! Retrying a failed connect on another instance: which instances a request has tried, and how long
//! to wait before the next try.

use std::time::Duration;

/// The pause before the first retry; it doubles for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// The longest pause between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The pause before retry number `retry` (1 for the first retry): 50 ms, 100 ms, 200 ms... up to 1 s.
/// Short, because the next try goes to another instance: it only spreads a burst of retries.
pub fn backoff(retry: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << retry.saturating_sub(1).min(16)).min(MAX_BACKOFF)
}

/// The instances one request has tried so far, by index in its service's instance list: a retry
/// never goes to an instance that already failed this request. Allocates only once a try failed.
#[derive(Debug, Default)]
pub struct Tried {
    indices: Vec<usize>,
}

impl Tried {
    /// Remembers that the instance at `index` was tried.
    pub(super) fn add(&mut self, index: usize) {
        self.indices.push(index);
    }

    /// Whether the instance at `index` was tried.
    pub(super) fn contains(&self, index: usize) -> bool {
        self.indices.contains(&index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_second() {
        let pauses: Vec<u64> = (1..=7).map(|retry| backoff(retry).as_millis() as u64).collect();
        assert_eq!(pauses, [50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
