//! Stored subtree hashes as a [`HashSource`]: the in-memory top of the tree first, then
//! sled. Leaves come from their entry rows (in packs, or rows of their own in stores
//! written before packs), levels 1–3 inside a pack are rebuilt from its leaves, and higher
//! levels are stored in the pack that completes them. Only subtrees that start below
//! `packs_from` (stores written before packs) have hash rows.

use crate::merkle::{Hash, HashSource};

use super::error::StoreError;
use super::node_cache::NodeCache;
use super::pack::{
    PACK_LEVELS, completed_in, completing_pack, find_pack, node_is_stored, pack_of, slot_in,
    subtree_in,
};
use super::schema::{decode_hash, entry_key, hash_key, leaf_of_row, pack_key};

/// Reads complete-subtree hashes from the `log` tree, through the node cache when given.
#[derive(Debug, Clone, Copy)]
pub struct SledHashes<'a> {
    tree: &'a sled::Tree,
    cache: Option<&'a NodeCache>,
    packs_from: u64,
}

impl<'a> SledHashes<'a> {
    pub(crate) fn new(tree: &'a sled::Tree, packs_from: u64) -> Self {
        SledHashes {
            tree,
            cache: None,
            packs_from,
        }
    }

    pub(crate) fn cached(tree: &'a sled::Tree, cache: &'a NodeCache, packs_from: u64) -> Self {
        SledHashes {
            tree,
            cache: Some(cache),
            packs_from,
        }
    }

    /// A node inside a pack (folded or open): a leaf, or a subtree at levels 1–3 rebuilt
    /// from the pack's leaves.
    fn in_pack(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        let missing = || StoreError::corrupt(format!("hash node ({level}, {index}) missing"));
        let first_leaf = index.checked_mul(1 << level).ok_or_else(missing)?;
        let (pack_no, slot) = pack_of(first_leaf);
        let pack = find_pack(self.tree, pack_no)?.ok_or_else(missing)?;
        let hash = if level == 0 {
            slot_in(pack.bytes(), slot).flatten().and_then(leaf_of_row)
        } else {
            subtree_in(pack.bytes(), level, index)
        };
        hash.ok_or_else(|| StoreError::corrupt(format!("entry pack {pack_no}")))
    }

    /// A subtree at level ≥ 4, stored in the full pack that completes it.
    fn completed(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        let missing = || StoreError::corrupt(format!("hash node ({level}, {index}) missing"));
        let pack_no = completing_pack(level, index).ok_or_else(missing)?;
        let value = self.tree.get(pack_key(pack_no))?.ok_or_else(missing)?;
        completed_in(&value, level).ok_or_else(missing)
    }
}

impl HashSource for SledHashes<'_> {
    type Error = StoreError;

    fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        if let Some(hash) = self.cache.and_then(|c| c.get(level, index)) {
            return Ok(hash);
        }
        if !node_is_stored(level, index, self.packs_from) {
            return if level < PACK_LEVELS {
                self.in_pack(level, index)
            } else {
                self.completed(level, index)
            };
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
