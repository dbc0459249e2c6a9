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
//!
//! Loading scans sled's rows level by level and asks a [`HashSource`] (the store's
//! `SledHashes`, which in turn reads through this cache) only for the nodes a scan cannot
//! give; taking it as a parameter keeps this module below `hashes` rather than beside it.

use std::sync::RwLock;

use crate::merkle::{Hash, HashSource, NewNode, hash_node};

use super::error::StoreError;
use super::pack::{node_is_stored, pack_of, slot_in};
use super::schema::{decode_hash, decode_u64, entry_key, hash_key, leaf_of_row, pack_range};

const HASH_BYTES: usize = 32;
/// Levels a `u64`-sized tree can have.
const MAX_LEVELS: u8 = 64;

/// The first `count` leaf hashes, each read once: the entry rows below `packs_from` in one
/// scan (a row of the earlier layout has its leaf in a hash row), then the folded packs in
/// one (and the rows of the open pack).
fn load_leaves(
    tree: &sled::Tree,
    hashes: &impl HashSource<Error = StoreError>,
    packs_from: u64,
    count: u64,
) -> Result<Vec<Hash>, StoreError> {
    let mut nodes = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let rows_end = count.min(packs_from);
    let mut rows = tree.range(entry_key(0)..entry_key(rows_end)).peekable();
    for index in 0..rows_end {
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
    // From `packs_from` on: folded packs in one scan; rows of open packs one by one.
    let mut packs = tree.range(pack_range(pack_of(packs_from).0));
    let mut current: Option<(u64, sled::IVec)> = None;
    for index in packs_from..count {
        let (pack, slot) = pack_of(index);
        while current.as_ref().is_none_or(|(no, _)| *no < pack) {
            match packs.next() {
                Some(item) => {
                    let (key, value) = item?;
                    let no = decode_u64(&key[1..])
                        .ok_or_else(|| StoreError::corrupt("entry pack key"))?;
                    current = Some((no, value));
                }
                None => break,
            }
        }
        let leaf = match &current {
            Some((no, value)) if *no == pack => slot_in(value, slot)
                .flatten()
                .and_then(leaf_of_row)
                .ok_or_else(|| StoreError::corrupt(format!("entry pack {pack}")))?,
            _ => hashes.node(0, index)?,
        };
        nodes.push(leaf);
    }
    Ok(nodes)
}

/// The first `count` nodes of `level` ≥ 1: hash rows in one scan, and the nodes inside packs
/// from the level below when it is loaded (from the pack otherwise).
fn load_level(
    tree: &sled::Tree,
    hashes: &impl HashSource<Error = StoreError>,
    packs_from: u64,
    level: u8,
    count: u64,
    below: Option<&[Hash]>,
) -> Result<Vec<Hash>, StoreError> {
    let mut nodes = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut rows = tree
        .range(hash_key(level, 0)..hash_key(level, count))
        .peekable();
    for index in 0..count {
        if !node_is_stored(level, index, packs_from) {
            let child = |i: u64| below.and_then(|b| b.get(usize::try_from(i).ok()?)).copied();
            nodes.push(match (child(2 * index), child(2 * index + 1)) {
                (Some(left), Some(right)) => hash_node(&left, &right),
                _ => hashes.node(level, index)?,
            });
            continue;
        }
        let hash = match rows.next() {
            Some(item) => {
                let (key, value) = item?;
                if key[..] != hash_key(level, index)[..] {
                    return Err(StoreError::corrupt(format!(
                        "hash node ({level}, {index}) missing"
                    )));
                }
                decode_hash(&value).ok_or_else(|| {
                    StoreError::corrupt(format!("hash node at key {key:?} is not 32 bytes"))
                })?
            }
            None => {
                return Err(StoreError::corrupt(format!(
                    "hash node ({level}, {index}) missing"
                )));
            }
        };
        nodes.push(hash);
    }
    Ok(nodes)
}

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
    /// Loads the levels of the first `size` leaves that fit `budget_bytes` from `tree`;
    /// `hashes` (uncached: the stored tree's own nodes) answers for the nodes the scans of
    /// `tree` do not hold. A budget of 0 disables the cache.
    pub(crate) fn load(
        tree: &sled::Tree,
        hashes: &impl HashSource<Error = StoreError>,
        packs_from: u64,
        size: u64,
        budget_bytes: usize,
    ) -> Result<NodeCache, StoreError> {
        let mut min_level = 0u8;
        while min_level < MAX_LEVELS && bytes_from_level(size, min_level) > budget_bytes {
            min_level += 1;
        }
        let mut levels: Vec<Vec<Hash>> = Vec::new();
        let mut bytes = 0;
        if budget_bytes > 0 {
            for level in min_level..MAX_LEVELS {
                let count = size >> level;
                if count == 0 {
                    break;
                }
                let below = levels.last().filter(|_| level > min_level);
                let nodes = if level == 0 {
                    load_leaves(tree, hashes, packs_from, count)?
                } else {
                    load_level(
                        tree,
                        hashes,
                        packs_from,
                        level,
                        count,
                        below.map(Vec::as_slice),
                    )?
                };
                if nodes.len() as u64 != count {
                    return Err(StoreError::corrupt(format!(
                        "level {level} holds {} hash nodes, expected {count}",
                        nodes.len()
                    )));
                }
                bytes += nodes.capacity() * HASH_BYTES;
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
                // Counted by capacity: what a level holds in memory, growth reserve
                // included, is what the budget bounds.
                let before = level.capacity();
                level.push(node.hash);
                let grown = level.capacity() - before;
                inner.bytes += grown * HASH_BYTES;
            }
        }
        while inner.bytes > self.budget_bytes && !inner.levels.is_empty() {
            let dropped = inner.levels.remove(0);
            inner.bytes -= dropped.capacity() * HASH_BYTES;
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

    /// The hash rows of a tree written by `tree_with`: what the store's `SledHashes` reads
    /// for nodes below `packs_from` (here every node), without the node cache.
    struct HashRows<'a>(&'a sled::Tree);

    impl HashSource for HashRows<'_> {
        type Error = StoreError;

        fn node(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
            let value = self
                .0
                .get(hash_key(level, index))?
                .ok_or_else(|| StoreError::corrupt(format!("hash node ({level}, {index})")))?;
            decode_hash(&value).ok_or_else(|| StoreError::corrupt("hash node size"))
        }
    }

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
        let cache =
            NodeCache::load(&tree, &HashRows(&tree), u64::MAX, 1000, 244 * 32).expect("load");
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
        let cache =
            NodeCache::load(&tree, &HashRows(&tree), u64::MAX, 256, 600 * 32).expect("load");
        // 256 leaves: all 511 nodes fit.
        assert_eq!(cache.footprint(), (0, 511 * 32));
        cache.extend(later);
        // 512 leaves: 1023 nodes do not fit 600; levels ≥ 1 (511) do. Bytes count the
        // levels' capacity: the small top levels grew to Vec's minimum of 4 (516 slots).
        assert_eq!(cache.footprint(), (1, 516 * 32));
        for node in &all {
            let expected = (node.level >= 1).then_some(node.hash);
            assert_eq!(cache.get(node.level, node.index), expected);
        }
    }

    #[test]
    fn a_zero_budget_caches_nothing() {
        let (_dir, tree, all) = tree_with(64);
        let cache = NodeCache::load(&tree, &HashRows(&tree), u64::MAX, 64, 0).expect("load");
        cache.extend(&all);
        assert!(all.iter().all(|n| cache.get(n.level, n.index).is_none()));
    }
}
