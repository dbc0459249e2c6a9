//! The sealer: turns the durable log into signed checkpoints every N entries or T
//! milliseconds, whichever comes first, when anything new is durable.
//!
//! Sealing reads the durable size, computes its root from stored subtree hashes
//! (O(log n) reads), signs the C2SP checkpoint, stores it under its size and flushes. One
//! lock serialises the sealer thread and [`crate::Ledger::seal_now`], so sizes only grow.
//!
//! A store thread: it owns `Shared::seal_lock` and the `checkpoints` tree's writes, reads
//! the durable size and the stored hashes, and latches its storage faults in
//! `Shared::fault`.

use std::time::{Duration, Instant};

use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::merkle::root;

use super::error::StoreError;
use super::schema::decode_u64;
use super::shared::Shared;

fn last_sealed_size(shared: &Shared) -> Result<u64, StoreError> {
    match shared.checkpoints.last()? {
        None => Ok(0),
        Some((key, _)) => decode_u64(&key).ok_or_else(|| StoreError::Corrupt {
            what: "checkpoint key".into(),
        }),
    }
}

/// Seals a checkpoint of the current durable size if it is larger than the newest one.
pub(super) fn seal(shared: &Shared) -> Result<Option<SignedCheckpoint>, StoreError> {
    let _guard = shared.seal_lock.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(halted) = shared.fault.halted() {
        return Err(halted);
    }
    let size = shared.durable_size.get();
    if size == 0 || size <= last_sealed_size(shared)? {
        return Ok(None);
    }
    let root = root(&shared.hashes(), size).map_err(|e| match e {
        crate::merkle::ProveError::Source(e) => e,
        crate::merkle::ProveError::InvalidRequest { reason } => StoreError::Corrupt {
            what: reason.to_string(),
        },
    })?;
    let signed = SignedCheckpoint::sign(Checkpoint::new(&shared.origin, size, root), &shared.key)?;
    shared
        .checkpoints
        .insert(size.to_be_bytes(), signed.note.as_bytes())?;
    shared.db.flush()?;
    Ok(Some(signed))
}

/// The sealer thread: waits for `every_entries` new durable entries or `interval`, seals,
/// repeats until stopped. Errors are logged and retried at the next interval.
pub(super) fn run_sealer(shared: &Shared, every_entries: u64, interval: Duration) {
    let mut deadline = Instant::now() + interval;
    // After a failure, wait out the interval rather than retrying on every wake-up.
    let mut backing_off = false;
    loop {
        let last = last_sealed_size(shared).unwrap_or(0);
        let count_enabled = every_entries > 0 && !backing_off;
        let (stop, durable) = {
            let state = shared
                .signal
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let wait = deadline.saturating_duration_since(Instant::now());
            let (state, _) = shared
                .signal
                .cv
                .wait_timeout_while(state, wait, |s| {
                    !s.stop && (!count_enabled || s.durable.saturating_sub(last) < every_entries)
                })
                .unwrap_or_else(|p| p.into_inner());
            (state.stop, state.durable)
        };
        if stop {
            return;
        }
        let now = Instant::now();
        let count_due = count_enabled && durable.saturating_sub(last) >= every_entries;
        if count_due || now >= deadline {
            backing_off = false;
            if durable > last {
                if let Err(e) = seal(shared) {
                    shared.fault.raise(&e);
                    tracing::warn!(error = %e, "sealing a checkpoint failed; will retry");
                    backing_off = true;
                }
            }
            deadline = now + interval;
        }
    }
}
