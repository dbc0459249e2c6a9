//! The upper levels of the tree in memory, within a configured budget.
//!
//! A proof or root touches one stored node per level, and random proofs miss the sled page
//! cache at the wide lower levels. This cache holds every complete-subtree hash at levels
//! `≥ min_level`, level by level in index order, and picks the lowest `min_level` whose nodes
//! fit the budget; when the log grows past the budget the lowest cached level is dropped, so
//! memory is bounded by configuration while only the few levels below `min_level` are read
//! from sled.
//!
//! Only durable nodes enter the cache (the flusher adds a group's nodes after its flush), so
//! the cache never holds a hash that a crash or a failed flush could take back. A node the
//! cache lacks is simply read from sled.

use std::sync::RwLock;

use crate::merkle::{Hash, HashSource, NewNode};

use super::error::StoreError;
use super::hashes::SledHashes;
use super::schema::{decode_hash, entry_key, hash_key, leaf_of_row};

const HASH_BYTES: usize = 32;
/// Levels a `u64`-sized tree can have.
const MAX_LEVELS: u8 = 64;

/// Cached levels `min_level..` of the tree.
#[derive(Debug)]
struct Levels {
    min_level: u8,
    /// `levels[i]` holds the nodes of level `min_level + i`, from index 0 on.
    levels: Vec<Vec<Hash>>,
    bytes: usize,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct NodeCache {
    budget_bytes: usize,
    inner: RwLock<Levels>,
}

/// Bytes the nodes at levels `≥ level` of a tree of `size` leaves take.
fn bytes_from_level(size: u64, level: u8) -> usize {
    let nodes: u64 = (level..MAX_LEVELS).map(|l| size >> l).sum();
    usize::try_from(nodes)
        .unwrap_or(usize::MAX)
        .saturating_mul(HASH_BYTES)
}

impl NodeCache {
    /// Loads the levels of the first `size` leaves that fit `budget_bytes` from `tree`.
    /// A budget of 0 disables the cache.
    pub(crate) fn load(
        tree: &sled::Tree,
        size: u64,
        budget_bytes: usize,
    ) -> Result<NodeCache, StoreError> {
        let mut min_level = 0u8;
        while min_level < MAX_LEVELS && bytes_from_level(size, min_level) > budget_bytes {
            min_level += 1;
        }
        let mut levels = Vec::new();
        let mut bytes = 0;
        if budget_bytes > 0 {
            for level in min_level..MAX_LEVELS {
                let count = size >> level;
                if count == 0 {
                    break;
                }
                let mut nodes = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
                if level == 0 {
                    // Leaf hashes live in the entry rows, read in one scan; rows of the
                    // earlier layout have theirs in a hash row.
                    let hashes = SledHashes::new(tree);
                    let mut rows = tree.range(entry_key(0)..entry_key(count)).peekable();
                    for index in 0..count {
                        let mut leaf = None;
                        if let Some(Ok((key, _))) = rows.peek() {
                            if key[..] == entry_key(index)[..] {
                                if let Some(Ok((_, row))) = rows.next() {
                                    leaf = leaf_of_row(&row);
                                }
                            }
                        }
                        nodes.push(match leaf {
                            Some(leaf) => leaf,
                            None => hashes.node(0, index)?,
                        });
                    }
                } else {
                    let start = hash_key(level, 0);
                    let end = hash_key(level, count);
                    for item in tree.range(start..end) {
                        let (key, value) = item?;
                        let hash = decode_hash(&value).ok_or_else(|| {
                            StoreError::corrupt(format!("hash node at key {key:?} is not 32 bytes"))
                        })?;
                        nodes.push(hash);
                    }
                }
                if nodes.len() as u64 != count {
                    return Err(StoreError::corrupt(format!(
                        "level {level} holds {} hash nodes, expected {count}",
                        nodes.len()
                    )));
                }
                bytes += nodes.len() * HASH_BYTES;
                levels.push(nodes);
            }
        }
        Ok(NodeCache {
            budget_bytes,
            inner: RwLock::new(Levels {
                min_level,
                levels,
                bytes,
            }),
        })
    }

    /// The node at `(level, index)`, if cached.
    pub(crate) fn get(&self, level: u8, index: u64) -> Option<Hash> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let slot = level.checked_sub(inner.min_level)?;
        inner
            .levels
            .get(usize::from(slot))?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// Adds durable nodes, in the order the tree produced them; then drops the lowest
    /// levels while over budget.
    pub(crate) fn extend(&self, nodes: &[NewNode]) {
        if self.budget_bytes == 0 || nodes.is_empty() {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let min_level = inner.min_level;
        for node in nodes {
            let Some(slot) = node.level.checked_sub(min_level).map(usize::from) else {
                continue;
            };
            while inner.levels.len() <= slot {
                inner.levels.push(Vec::new());
            }
            let level = &mut inner.levels[slot];
            // Nodes arrive in index order; anything else (never expected) is left to sled.
            if level.len() as u64 == node.index {
                level.push(node.hash);
                inner.bytes += HASH_BYTES;
            }
        }
        while inner.bytes > self.budget_bytes && !inner.levels.is_empty() {
            let dropped = inner.levels.remove(0);
            inner.bytes -= dropped.len() * HASH_BYTES;
            inner.min_level += 1;
        }
    }

    /// Lowest cached level and bytes held.
    #[cfg(test)]
    pub(crate) fn footprint(&self) -> (u8, usize) {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        (inner.min_level, inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{CompactRange, hash_leaf};

    fn tree_with(size: u64) -> (tempfile::TempDir, sled::Tree, Vec<NewNode>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .expect("open sled");
        let tree = db.open_tree("log").expect("tree");
        let mut range = CompactRange::new();
        let mut all = Vec::new();
        for i in 0..size {
            let nodes = range
                .push(hash_leaf(&i.to_be_bytes()))
                .expect("room in the tree");
            for node in &nodes {
                tree.insert(hash_key(node.level, node.index), &node.hash.0[..])
                    .expect("insert");
            }
            all.extend(nodes);
        }
        (dir, tree, all)
    }

    #[test]
    fn loads_what_fits_and_answers_like_the_store() {
        let (_dir, tree, all) = tree_with(1000);
        // 1000 leaves: levels ≥ 3 hold 125+62+31+15+7+3+1 = 244 nodes.
        let cache = NodeCache::load(&tree, 1000, 244 * 32).expect("load");
        assert_eq!(cache.footprint(), (3, 244 * 32));
        for node in &all {
            let cached = cache.get(node.level, node.index);
            if node.level >= 3 {
                assert_eq!(cached, Some(node.hash), "({}, {})", node.level, node.index);
            } else {
                assert_eq!(cached, None);
            }
        }
    }

    #[test]
    fn grows_with_the_log_and_drops_low_levels_past_the_budget() {
        let (_dir, tree, all) = tree_with(512);
        let first_new = all
            .iter()
            .position(|n| n.level == 0 && n.index == 256)
            .expect("leaf 256");
        let later = &all[first_new..];
        let cache = NodeCache::load(&tree, 256, 600 * 32).expect("load");
        // 256 leaves: all 511 nodes fit.
        assert_eq!(cache.footprint(), (0, 511 * 32));
        cache.extend(later);
        // 512 leaves: 1023 nodes do not fit 600; levels ≥ 1 (511) do.
        assert_eq!(cache.footprint(), (1, 511 * 32));
        for node in &all {
            let expected = (node.level >= 1).then_some(node.hash);
            assert_eq!(cache.get(node.level, node.index), expected);
        }
    }

    #[test]
    fn a_zero_budget_caches_nothing() {
        let (_dir, tree, all) = tree_with(64);
        let cache = NodeCache::load(&tree, 64, 0).expect("load");
        cache.extend(&all);
        assert!(all.iter().all(|n| cache.get(n.level, n.index).is_none()));
    }
}
