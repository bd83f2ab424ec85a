//! The graceful stop: what the gateway's connections and sessions are told when it stops, and how
//! it waits for them.
//!
//! Every task that serves a client (its HTTP connection, its TLS handshake, its WebSocket session)
//! is spawned through [`Drain::spawn`]. [`Drain::stop`] tells them all at once, across the workers'
//! runtimes: an HTTP connection finishes the request in flight and closes, a WebSocket session
//! closes both peers with 1001 on a frame boundary and waits for their answering closes
//! ([`crate::relay::LINGER`] at most). Then [`Drain::stop`] waits until every such task has ended,
//! or the time-out given has passed.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// The stop signal and the tasks it must wait for.
#[derive(Debug, Default)]
pub struct Drain {
    stopping: CancellationToken,
    tasks: TaskTracker,
}

impl Drain {
    /// A drain with no task yet.
    pub fn new() -> Drain {
        Drain::default()
    }

    /// Spawns `task` on the current runtime; [`Drain::stop`] waits for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.tasks.spawn(task));
    }

    /// Completes once the gateway is stopping (at once when it already is).
    pub fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.stopping.cancelled()
    }

    /// Completes once [`Drain::stop`] was called and every spawned task has ended.
    pub async fn finished(&self) {
        self.tasks.wait().await;
    }

    /// Tells every task that the gateway stops, without waiting for them: [`Drain::finished`]
    /// completes once they have ended.
    pub fn close(&self) {
        self.stopping.cancel();
        self.tasks.close();
    }

    /// Tells every task that the gateway stops ([`Drain::close`]), and waits up to `timeout` for them
    /// to end. Returns how many were still running then (0: all ended in time).
    pub async fn stop(&self, timeout: Duration) -> usize {
        self.close();
        match tokio::time::timeout(timeout, self.tasks.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tasks.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_tells_the_tasks_and_waits_for_them() {
        let drain = std::sync::Arc::new(Drain::new());
        let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..3 {
            let (drain_in_task, ended_tx) = (std::sync::Arc::clone(&drain), ended_tx.clone());
            drain.spawn(async move {
                drain_in_task.stopping().await;
                // A task may still take a moment to finish its close.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = ended_tx.send(());
            });
        }
        // Longer than a task takes once told: none gets past its wait before the stop.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(ended.try_recv().is_err(), "nothing ends before the stop");
        assert_eq!(drain.stop(Duration::from_secs(5)).await, 0);
        for _ in 0..3 {
            assert!(ended.try_recv().is_ok(), "every task ended before stop returned");
        }
        drain.finished().await;
        // A task that comes after the stop is told at once.
        tokio::time::timeout(Duration::from_secs(1), drain.stopping()).await.expect("already stopping");
    }

    #[tokio::test]
    async fn a_task_that_does_not_end_is_counted_after_the_time_out() {
        let drain = Drain::new();
        drain.spawn(std::future::pending());
        assert_eq!(drain.stop(Duration::from_millis(50)).await, 1);
    }
}
