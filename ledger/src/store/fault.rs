//! The ledger's fault latch: the first storage fault on the write path stops every later
//! write, and whoever runs the ledger can see it and watch for it.
//!
//! After an I/O error sled keeps failing (it remembers its first error), and what reached
//! the disk is unknown until the store is opened again and proves itself against its
//! high-water record. So the ledger does not try to write on: appends and erasures are
//! refused with [`StoreError::Halted`], reads keep going where the store can still read,
//! and the service reports itself not ready and exits so that its supervisor restarts it.

use std::sync::Arc;

use tokio::sync::watch;

use super::error::StoreError;

/// The first storage fault, once there is one.
#[derive(Debug)]
pub(crate) struct Fault(watch::Sender<Option<Arc<str>>>);

impl Default for Fault {
    fn default() -> Self {
        Fault(watch::Sender::new(None))
    }
}

impl Fault {
    /// Latches `error` if it is a storage fault and none is latched yet; returns whether
    /// `error` is a storage fault.
    pub(crate) fn raise(&self, error: &StoreError) -> bool {
        if !is_storage_fault(error) {
            return false;
        }
        let cause: Arc<str> = Arc::from(error.to_string());
        let first = self.0.send_if_modified(|latched| {
            if latched.is_some() {
                return false;
            }
            *latched = Some(cause.clone());
            true
        });
        if first {
            tracing::error!(
                error = %cause,
                "storage fault: the ledger stops writing; restart the process to reopen the store"
            );
        }
        true
    }

    /// The latched fault.
    pub(crate) fn get(&self) -> Option<Arc<str>> {
        self.0.borrow().clone()
    }

    /// The error a write gets once a fault is latched.
    pub(crate) fn halted(&self) -> Option<StoreError> {
        self.get().map(|cause| StoreError::Halted {
            cause: cause.to_string(),
        })
    }

    /// A receiver that sees the fault when it is latched.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.0.subscribe()
    }
}

/// Errors that say the disk or the store failed, rather than the request.
fn is_storage_fault(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Sled(_) | StoreError::Corrupt { .. } | StoreError::HighWaterRecord { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_storage_fault_is_latched_and_request_errors_are_not() {
        let fault = Fault::default();
        let mut seen = fault.subscribe();
        assert!(!fault.raise(&StoreError::NotFound { what: "x".into() }));
        assert!(fault.get().is_none() && fault.halted().is_none());
        let io = || StoreError::Sled(sled::Error::Io(std::io::Error::other("disk on fire")));
        assert!(fault.raise(&io()));
        assert!(seen.has_changed().unwrap());
        assert!(fault.raise(&StoreError::corrupt("later")));
        let cause = fault.get().unwrap();
        assert!(cause.contains("disk on fire"), "{cause}");
        assert!(
            matches!(fault.halted(), Some(StoreError::Halted { cause }) if cause.contains("disk on fire"))
        );
        assert_eq!(seen.borrow_and_update().as_deref(), Some(&*cause));
    }
}
