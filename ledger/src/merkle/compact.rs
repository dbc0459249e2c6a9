//! The right edge of an append-only tree: one perfect subtree per set bit of the size.
//!
//! Appending a leaf closes zero or more complete subtrees; their hashes are what a store
//! persists so that later proofs need no recomputation. The root of the current size is
//! the fold of the edge, so the writer never reads storage to append.

use super::hash::{Hash, empty_root, hash_node};
use super::tree::{HashSource, ProveError};

/// A complete aligned subtree closed by an append: persist it under `(level, index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewNode {
    /// Height of the subtree (0 for a leaf).
    pub level: u8,
    /// Position of the subtree among those of its level.
    pub index: u64,
    /// Its hash.
    pub hash: Hash,
}

/// The perfect subtrees on the right edge of a tree, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// Hashes of the perfect subtrees, one per set bit of `size`, most significant first.
    edge: Vec<Hash>,
}

impl CompactRange {
    /// The edge of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the edge of the tree of `size` leaves from stored subtree hashes
    /// (one read per set bit of `size`).
    pub fn from_source<S: HashSource>(source: &S, size: u64) -> Result<Self, ProveError<S::Error>> {
        let mut edge = Vec::with_capacity(64);
        let mut offset = 0u64;
        for level in (0..64u8).rev() {
            let width = 1u64 << level;
            if size & width != 0 {
                edge.push(
                    source
                        .node(level, offset >> level)
                        .map_err(ProveError::Source)?,
                );
                offset += width;
            }
        }
        Ok(Self { size, edge })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash, returning the leaf node and every subtree it completes (the
    /// leaf first, then each parent upwards). `None` once the tree holds `u64::MAX` leaves.
    pub fn push(&mut self, leaf_hash: Hash) -> Option<Vec<NewNode>> {
        let index = self.size;
        let new_size = index.checked_add(1)?;
        let mut nodes = vec![NewNode {
            level: 0,
            index,
            hash: leaf_hash,
        }];
        let mut node = leaf_hash;
        let mut level = 0u8;
        // Every trailing one bit of the old size is a left sibling that the new leaf completes.
        while (index >> level) & 1 == 1 {
            let left = self.edge.pop()?;
            node = hash_node(&left, &node);
            level += 1;
            nodes.push(NewNode {
                level,
                index: index >> level,
                hash: node,
            });
        }
        self.edge.push(node);
        self.size = new_size;
        Some(nodes)
    }

    /// Root of the tree of the current size.
    pub fn root(&self) -> Hash {
        let mut iter = self.edge.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| hash_node(left, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::hash::hash_leaf;
    use crate::merkle::tree::{MemoryTree, reference_root};

    #[test]
    fn edge_root_matches_reference_and_nodes_match_memory_tree() {
        let mut range = CompactRange::new();
        let mut tree = MemoryTree::new();
        let mut leaves = Vec::new();
        for i in 0u64..100 {
            let leaf = hash_leaf(&i.to_be_bytes());
            leaves.push(leaf);
            tree.push(leaf);
            for n in range.push(leaf).unwrap() {
                assert_eq!(tree.node(n.level, n.index), Ok(n.hash));
            }
            assert_eq!(range.root(), reference_root(&leaves));
            assert_eq!(CompactRange::from_source(&tree, i + 1).unwrap(), range);
        }
    }
}
