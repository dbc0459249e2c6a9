//! Stored subtree hashes as a [`HashSource`]: the in-memory top of the tree first, then one
//! sled read per node (for leaves, the entry row that holds the leaf hash).

use crate::merkle::{Hash, HashSource};

use super::error::StoreError;
use super::node_cache::NodeCache;
use super::schema::{decode_hash, entry_key, hash_key, leaf_of_row};

/// Reads complete-subtree hashes from the `log` tree, through the node cache when given.
#[derive(Debug, Clone, Copy)]
pub struct SledHashes<'a> {
    tree: &'a sled::Tree,
    cache: Option<&'a NodeCache>,
}

impl<'a> SledHashes<'a> {
    pub(crate) fn new(tree: &'a sled::Tree) -> Self {
        SledHashes { tree, cache: None }
    }

    pub(crate) fn cached(tree: &'a sled::Tree, cache: &'a NodeCache) -> Self {
        SledHashes {
            tree,
            cache: Some(cache),
        }
    }
}

impl HashSource for SledHashes<'_> {
    type Error = StoreError;

    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        if let Some(hash) = self.cache.and_then(|c| c.get(level, index)) {
            return Ok(hash);
        }
        if level == 0 {
            // Current entry rows hold their leaf hash; rows of the earlier layout have it in
            // a hash row, read below.
            if let Some(row) = self.tree.get(entry_key(index))? {
                if let Some(leaf) = leaf_of_row(&row) {
                    return Ok(leaf);
                }
            }
        }
        let value = self
            .tree
            .get(hash_key(level, index))?
            .ok_or_else(|| StoreError::corrupt(format!("hash node ({level}, {index}) missing")))?;
        decode_hash(&value).ok_or_else(|| {
            StoreError::corrupt(format!("hash node ({level}, {index}) is not 32 bytes"))
        })
    }
}
