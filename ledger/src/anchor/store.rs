//! The anchorer's seam to storage: what it reads (the newest sealed checkpoint, and the
//! consistency proof from the previously anchored tree to it) and what it keeps (one
//! [`AnchorRecord`] per seq). Two implementations: the sled-backed
//! [`Ledger`] the service runs, and [`MemoryAnchorStore`] for unit tests.
//!
//! Contract for implementations:
//! - `save_record` is durable when it returns (the anchorer broadcasts a transaction only
//!   after its record is saved) and replaces any record under the same seq atomically;
//! - records are only ever written by one anchorer at a time;
//! - every error is terminal for the current pass; the anchorer retries on its next pass.
//!
//! Calls may block (sled flushes); the anchorer runs them off the async workers.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::error::AnchorError;
use super::state::AnchorRecord;
use crate::checkpoint::SignedCheckpoint;
use crate::merkle::{Hash, MemoryTree, ProveError, prove_consistency};
use crate::store::{Ledger, StoreError};

/// Storage the anchorer needs. See the module documentation for the contract.
pub trait AnchorStore: Send + Sync + 'static {
    /// The newest sealed checkpoint, if any.
    fn newest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, AnchorError>;
    /// The RFC 9162 consistency proof (its path) from the log's first `old_size` entries
    /// to its first `new_size`; `old_size <= new_size <= ` the newest checkpoint's size.
    fn consistency_path(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, AnchorError>;
    /// The record with the highest seq, if any.
    fn last_record(&self) -> Result<Option<AnchorRecord>, AnchorError>;
    /// The record under `seq`, if any.
    fn record(&self, seq: u64) -> Result<Option<AnchorRecord>, AnchorError>;
    /// Stores `record` under its seq, durably, replacing any previous one.
    fn save_record(&self, record: &AnchorRecord) -> Result<(), AnchorError>;
}

impl AnchorStore for Ledger {
    fn newest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, AnchorError> {
        Ok(self.latest_checkpoint()?)
    }

    fn consistency_path(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, AnchorError> {
        Ok(Ledger::consistency_proof(self, old_size, new_size)?.path)
    }

    fn last_record(&self) -> Result<Option<AnchorRecord>, AnchorError> {
        match self.last_anchor_seq()? {
            None => Ok(None),
            Some(seq) => self.record(seq),
        }
    }

    fn record(&self, seq: u64) -> Result<Option<AnchorRecord>, AnchorError> {
        match self.get_anchor_record(seq)? {
            None => Ok(None),
            Some(bytes) => AnchorRecord::from_bytes(seq, &bytes).map(Some),
        }
    }

    fn save_record(&self, record: &AnchorRecord) -> Result<(), AnchorError> {
        Ok(self.put_anchor_record(record.seq, &record.to_bytes()?)?)
    }
}

/// An in-memory store for tests: checkpoints (and, where a test anchors more than one,
/// the leaf hashes they cover) are pushed by the test, records kept in a map. Nothing
/// survives the process.
#[derive(Debug, Default)]
pub struct MemoryAnchorStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    checkpoints: Vec<SignedCheckpoint>,
    tree: MemoryTree,
    records: BTreeMap<u64, Vec<u8>>,
}

impl MemoryAnchorStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sealed checkpoint (the newest one is what the anchorer anchors).
    pub fn push_checkpoint(&self, checkpoint: SignedCheckpoint) {
        self.lock().checkpoints.push(checkpoint);
    }

    /// Appends a leaf hash to the tree that consistency proofs are made from.
    pub fn push_leaf(&self, leaf_hash: Hash) {
        self.lock().tree.push(leaf_hash);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A panic while holding this lock only happens in a failing test; the data is
        // still consistent (every write is a single insert), so keep going.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl AnchorStore for MemoryAnchorStore {
    fn newest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, AnchorError> {
        Ok(self.lock().checkpoints.last().cloned())
    }

    fn consistency_path(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, AnchorError> {
        let proof = prove_consistency(&self.lock().tree, old_size, new_size).map_err(|e| {
            AnchorError::from(match e {
                ProveError::InvalidRequest { reason } => StoreError::InvalidProofRequest {
                    reason: reason.to_string(),
                },
                ProveError::Source(missing) => StoreError::NotFound {
                    what: format!("leaves of the memory store's tree ({missing})"),
                },
            })
        })?;
        Ok(proof.path)
    }

    fn last_record(&self) -> Result<Option<AnchorRecord>, AnchorError> {
        match self.lock().records.last_key_value() {
            None => Ok(None),
            Some((seq, bytes)) => AnchorRecord::from_bytes(*seq, bytes).map(Some),
        }
    }

    fn record(&self, seq: u64) -> Result<Option<AnchorRecord>, AnchorError> {
        match self.lock().records.get(&seq) {
            None => Ok(None),
            Some(bytes) => AnchorRecord::from_bytes(seq, bytes).map(Some),
        }
    }

    fn save_record(&self, record: &AnchorRecord) -> Result<(), AnchorError> {
        let bytes = record.to_bytes()?;
        self.lock().records.insert(record.seq, bytes);
        Ok(())
    }
}
