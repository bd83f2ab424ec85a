//! Which service URL a request goes to: failover and quarantine across the URL list (EUREKA.md,
//! "Client semantics"), as Java's `RetryableEurekaHttpClient` does it.
//!
//! A working endpoint is sticky: every request goes to it until it fails. A failure (IO error,
//! time-out, 5xx, an unreadable answer) quarantines it and the request moves on to the next
//! endpoint not quarantined. Once at least [`QUARANTINE_CLEAR_PERCENT`] of the endpoints are
//! quarantined, the quarantine is cleared, so a cluster that was down as a whole is tried again
//! instead of being given up for ever.
//!
//! This is plain state without IO, so the rule is unit tested on its own.

use std::collections::BTreeSet;

use super::service_url::ServiceUrl;
use crate::credentials::Credentials;

/// The share of quarantined endpoints (percent) at which the quarantine is cleared (Java's
/// `retryableClientQuarantineRefreshPercentage`, 0.66).
pub(crate) const QUARANTINE_CLEAR_PERCENT: usize = 66;

/// The endpoints of one client, the sticky one and the quarantined ones.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    urls: Vec<ServiceUrl>,
    /// The endpoint that answered last; `None` after it failed.
    current: Option<usize>,
    quarantined: BTreeSet<usize>,
}

impl Endpoints {
    /// Endpoints for `urls`, in the order requests try them.
    pub(crate) fn new(urls: Vec<ServiceUrl>) -> Endpoints {
        Endpoints { urls, current: None, quarantined: BTreeSet::new() }
    }

    /// The URL of endpoint `index`, without its credential.
    pub(crate) fn url(&self, index: usize) -> &str {
        &self.urls[index].base
    }

    /// The credential requests to endpoint `index` carry, if its URL had one.
    pub(crate) fn credential(&self, index: usize) -> Option<&Credentials> {
        self.urls[index].credential.as_ref()
    }

    /// The sticky endpoint's URL, if one answered and has not failed since.
    pub(crate) fn current(&self) -> Option<&str> {
        self.current.map(|index| self.url(index))
    }

    /// The quarantined URLs, in list order.
    pub(crate) fn quarantined(&self) -> Vec<String> {
        self.quarantined.iter().map(|&index| self.urls[index].base.clone()).collect()
    }

    /// The endpoint for the next attempt of a request that has already tried `tried`: the sticky one
    /// if it has not been tried, else the first endpoint neither quarantined nor tried. `None` when
    /// no endpoint is left for this request.
    pub(crate) fn pick(&mut self, tried: &[usize]) -> Option<usize> {
        if let Some(current) = self.current.filter(|current| !tried.contains(current)) {
            return Some(current);
        }
        // Checked before every pick, not only on failure, so a list that is mostly quarantined
        // gets a fresh chance on the next request.
        if !self.quarantined.is_empty() && self.quarantined.len() * 100 >= self.urls.len() * QUARANTINE_CLEAR_PERCENT {
            self.quarantined.clear();
        }
        (0..self.urls.len()).find(|index| !self.quarantined.contains(index) && !tried.contains(index))
    }

    /// Endpoint `index` answered: it becomes the sticky one.
    pub(crate) fn succeeded(&mut self, index: usize) {
        self.current = Some(index);
    }

    /// Endpoint `index` failed: it is quarantined and no longer sticky.
    pub(crate) fn failed(&mut self, index: usize) {
        if self.current == Some(index) {
            self.current = None;
        }
        self.quarantined.insert(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: usize) -> Endpoints {
        Endpoints::new((0..n).map(|i| ServiceUrl { base: format!("http://h{i}/eureka"), credential: None }).collect())
    }

    #[test]
    fn a_working_endpoint_is_sticky() {
        let mut endpoints = list(3);
        assert_eq!(endpoints.pick(&[]), Some(0));
        endpoints.failed(0);
        assert_eq!(endpoints.pick(&[0]), Some(1));
        endpoints.succeeded(1);
        assert_eq!(endpoints.current(), Some("http://h1/eureka"));
        // Later requests go to 1 first, not back to the head of the list.
        assert_eq!(endpoints.pick(&[]), Some(1));
        assert_eq!(endpoints.quarantined(), vec!["http://h0/eureka".to_owned()]);
    }

    #[test]
    fn a_failed_request_tries_each_endpoint_once() {
        let mut endpoints = list(2);
        assert_eq!(endpoints.pick(&[]), Some(0));
        endpoints.failed(0);
        assert_eq!(endpoints.pick(&[0]), Some(1));
        endpoints.failed(1);
        // Both quarantined (100 %): cleared, but this request has tried both already.
        assert_eq!(endpoints.pick(&[0, 1]), None);
        assert!(endpoints.quarantined().is_empty());
        // The next request starts over.
        assert_eq!(endpoints.pick(&[]), Some(0));
    }

    #[test]
    fn quarantine_clears_at_66_percent() {
        let mut endpoints = list(3);
        endpoints.failed(0);
        // 1 of 3 (33 %): kept.
        assert_eq!(endpoints.pick(&[]), Some(1));
        assert_eq!(endpoints.quarantined().len(), 1);
        endpoints.failed(1);
        // 2 of 3 (66.7 %): cleared, so endpoint 0 is back at the head of the list.
        assert_eq!(endpoints.pick(&[]), Some(0));
        assert!(endpoints.quarantined().is_empty());

        let mut endpoints = list(2);
        endpoints.failed(0);
        // 1 of 2 (50 %): kept.
        assert_eq!(endpoints.pick(&[]), Some(1));
        assert_eq!(endpoints.quarantined().len(), 1);
    }

    #[test]
    fn a_single_endpoint_is_retried_after_failing() {
        let mut endpoints = list(1);
        endpoints.failed(0);
        assert_eq!(endpoints.pick(&[0]), None);
        assert_eq!(endpoints.pick(&[]), Some(0));
    }
}
