//! The `checkpoints` tree as the rest of the crate sees it: reads go straight to sled, and
//! storing a checkpoint makes it durable in the store and then in the high-water record
//! before it returns.

use std::ops::Deref;
use std::sync::Arc;

use crate::key_history::KeyHistory;

use super::error::StoreError;
use super::highwater::{HighWater, SignedMark};

/// The `checkpoints` tree (tree size u64 BE → signed note). It dereferences to the sled
/// tree for reads; [`CheckpointTree::insert`] replaces sled's own insert, so that no
/// checkpoint is stored without being recorded.
pub(crate) struct CheckpointTree {
    tree: sled::Tree,
    db: sled::Db,
    high_water: Arc<HighWater>,
    keys: KeyHistory,
    origin: String,
}

impl std::fmt::Debug for CheckpointTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointTree")
            .field("origin", &self.origin)
            .finish()
    }
}

impl CheckpointTree {
    pub(crate) fn new(
        tree: sled::Tree,
        db: sled::Db,
        high_water: Arc<HighWater>,
        keys: KeyHistory,
        origin: String,
    ) -> CheckpointTree {
        CheckpointTree {
            tree,
            db,
            high_water,
            keys,
            origin,
        }
    }

    /// Stores the signed checkpoint `note` under its size `key`, flushes the database, then
    /// records the checkpoint in the high-water record (synced); returns the note it
    /// replaced, if any. The note must be this log's, for the size `key` names: the record
    /// keeps its size, root and SHA-256.
    pub(crate) fn insert(
        &self,
        key: [u8; 8],
        note: &[u8],
    ) -> Result<Option<sled::IVec>, StoreError> {
        let text = std::str::from_utf8(note)
            .map_err(|_| StoreError::corrupt("checkpoint note is not UTF-8"))?;
        let (signed, _) = self.keys.verify_checkpoint(text)?;
        let size = u64::from_be_bytes(key);
        if signed.checkpoint.size != size {
            return Err(StoreError::corrupt(format!(
                "a checkpoint of size {} cannot be stored under size {size}",
                signed.checkpoint.size
            )));
        }
        let replaced = self.tree.insert(key, note)?;
        self.db.flush()?;
        self.high_water.signed(SignedMark {
            size,
            root: signed.checkpoint.root,
            note_sha256: signed.note_hash(),
        })?;
        Ok(replaced)
    }
}

impl Deref for CheckpointTree {
    type Target = sled::Tree;

    fn deref(&self) -> &sled::Tree {
        &self.tree
    }
}
