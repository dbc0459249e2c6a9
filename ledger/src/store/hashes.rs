//! Stored subtree hashes as a [`HashSource`]: one sled read per node.

use crate::merkle::{Hash, HashSource};

use super::error::StoreError;
use super::schema::{decode_hash, hash_key};

/// Reads complete-subtree hashes from the `log` tree.
#[derive(Debug, Clone, Copy)]
pub struct SledHashes<'a> {
    tree: &'a sled::Tree,
}

impl<'a> SledHashes<'a> {
    pub(crate) fn new(tree: &'a sled::Tree) -> Self {
        SledHashes { tree }
    }
}

impl HashSource for SledHashes<'_> {
    type Error = StoreError;

    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        let value = self
            .tree
            .get(hash_key(level, index))?
            .ok_or_else(|| StoreError::corrupt(format!("hash node ({level}, {index}) missing")))?;
        decode_hash(&value).ok_or_else(|| {
            StoreError::corrupt(format!("hash node ({level}, {index}) is not 32 bytes"))
        })
    }
}
