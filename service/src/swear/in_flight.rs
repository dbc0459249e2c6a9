//! The registry of running generation tasks: shutdown waits on it for their receipts, and
//! tells them through it when it stops waiting for their clients.

use std::sync::atomic::Ordering;

use tokio::sync::watch;

/// Counts running generation tasks so shutdown can wait for their receipts, and tells
/// them when shutdown stops waiting for their clients.
#[derive(Debug)]
pub struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
    abort: watch::Sender<bool>,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight {
            count: Default::default(),
            idle: Default::default(),
            abort: watch::Sender::new(false),
        }
    }
}

/// Resolves once shutdown has aborted every generation (see [`InFlight::abort_all`]).
#[derive(Debug)]
pub struct AbortSignal(watch::Receiver<bool>);

impl AbortSignal {
    /// Waits for the abort; pending forever if it never comes.
    pub async fn aborted(&mut self) {
        if self.0.wait_for(|aborted| *aborted).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Held by a generation task; dropping it marks the task done.
#[derive(Debug)]
pub struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    /// Marks a task as started.
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    /// What a generation task watches to learn that shutdown no longer waits for it.
    pub fn abort_signal(&self) -> AbortSignal {
        AbortSignal(self.abort.subscribe())
    }

    /// Shutdown's end of grace: every generation task stops where it is, swears what it
    /// sent as `cancelled`, and stops waiting for a client that does not read.
    pub fn abort_all(&self) {
        self.abort.send_replace(true);
    }

    /// Waits until no task is running.
    pub async fn wait_idle(&self) {
        loop {
            // Register before checking, so a wake-up between the check and the wait is kept.
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
