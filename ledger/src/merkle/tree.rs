//! The RFC 9162 Merkle Tree Hash computed from stored subtree hashes.
//!
//! A log stores the hash of every *complete aligned subtree*: the node at `(level, index)`
//! covers leaves `[index·2^level, (index+1)·2^level)`. Every range that the RFC's recursive
//! definition ever asks about — `[a, b)` with `a` a multiple of the smallest power of two
//! ≥ `b − a` — splits into at most 64 such nodes (the binary digits of `b − a`), so a root,
//! an inclusion proof or a consistency proof costs O(log n) reads whatever the tree size.

use super::hash::{Hash, empty_root, hash_leaf, hash_node};

/// Where the hashes of complete aligned subtrees come from (memory, sled, a test double).
pub trait HashSource {
    /// Error of the underlying storage.
    type Error;

    /// Hash of the complete subtree at `level` covering leaves
    /// `[index << level, (index + 1) << level)`. Only nodes inside the tree are asked for.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a root or proof could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProveError<E> {
    /// The arguments do not describe a proof that exists (index ≥ size, old > new, …).
    #[error("invalid proof request: {reason}")]
    InvalidRequest {
        /// Which precondition failed.
        reason: &'static str,
    },
    /// The hash source failed.
    #[error("hash source failed: {0}")]
    Source(E),
}

/// Largest power of two strictly below `n`; `n` must be at least 2.
pub(crate) fn largest_pow2_below(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// RFC 9162 hash of leaves `[start, end)`, where `start` is a multiple of the smallest
/// power of two ≥ `end − start` (true of every range in RFC 9162's definitions). Reads at
/// most one node per set bit of `end − start`.
pub fn subtree_root<S: HashSource>(
    source: &S,
    start: u64,
    end: u64,
) -> Result<Hash, ProveError<S::Error>> {
    if start >= end {
        return Err(ProveError::InvalidRequest {
            reason: "empty subtree range",
        });
    }
    let width = end - start;
    let aligned_to = width.checked_next_power_of_two().unwrap_or(0);
    // `aligned_to == 0` means width > 2^63, which only the range starting at 0 may have.
    if (aligned_to == 0 && start != 0) || (aligned_to != 0 && !start.is_multiple_of(aligned_to)) {
        return Err(ProveError::InvalidRequest {
            reason: "subtree range is not aligned",
        });
    }
    // Perfect blocks from the left, largest first (the binary digits of `width`), folded
    // from the right: MTH([a,b)) = H(block₀, H(block₁, … blockₖ)).
    let mut blocks: Vec<Hash> = Vec::with_capacity(64);
    let mut offset = start;
    for level in (0..64u8).rev() {
        let size = 1u64 << level;
        if width & size != 0 {
            blocks.push(
                source
                    .node(level, offset >> level)
                    .map_err(ProveError::Source)?,
            );
            offset += size;
        }
    }
    let mut acc = match blocks.pop() {
        Some(last) => last,
        None => {
            return Err(ProveError::InvalidRequest {
                reason: "empty subtree range",
            });
        }
    };
    while let Some(left) = blocks.pop() {
        acc = hash_node(&left, &acc);
    }
    Ok(acc)
}

/// Root of the tree of the first `size` leaves (SHA-256("") for the empty tree).
pub fn root<S: HashSource>(source: &S, size: u64) -> Result<Hash, ProveError<S::Error>> {
    if size == 0 {
        return Ok(empty_root());
    }
    subtree_root(source, 0, size)
}

/// Every level of a tree held in memory: for tests, vectors and small trees.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    /// `levels[l][i]` is the node at `(l, i)`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree over the given leaf *data* (each is hashed with the leaf prefix).
    pub fn from_leaf_data<B: AsRef<[u8]>>(leaves: &[B]) -> Self {
        let mut tree = Self::new();
        for leaf in leaves {
            tree.push(hash_leaf(leaf.as_ref()));
        }
        tree
    }

    /// Appends a leaf hash and every complete subtree it closes.
    pub fn push(&mut self, leaf_hash: Hash) {
        let mut level = 0usize;
        let mut node = leaf_hash;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(node);
            let len = self.levels[level].len();
            if len % 2 == 1 {
                break;
            }
            node = hash_node(&self.levels[level][len - 2], &self.levels[level][len - 1]);
            level += 1;
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }
}

/// A node that a [`MemoryTree`] does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no node at level {level} index {index}")]
pub struct MissingNode {
    /// Level asked for.
    pub level: u8,
    /// Index asked for.
    pub index: u64,
}

impl HashSource for MemoryTree {
    type Error = MissingNode;

    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.levels.get(usize::from(level))?.get(i))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

/// The reference recursive definition of RFC 9162 §2.1.1, for cross-checking in tests.
pub fn reference_root(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes.len() {
        0 => empty_root(),
        1 => leaf_hashes[0],
        n => {
            let k = largest_pow2_below(n as u64) as usize;
            hash_node(
                &reference_root(&leaf_hashes[..k]),
                &reference_root(&leaf_hashes[k..]),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_roots_match_the_recursive_definition() {
        let mut tree = MemoryTree::new();
        let mut leaves = Vec::new();
        for i in 0u32..70 {
            let h = hash_leaf(&i.to_be_bytes());
            leaves.push(h);
            tree.push(h);
            for size in 1..=leaves.len() {
                assert_eq!(
                    root(&tree, size as u64),
                    Ok(reference_root(&leaves[..size]))
                );
            }
        }
    }

    #[test]
    fn misaligned_ranges_are_refused() {
        let tree = MemoryTree::from_leaf_data(&[b"a", b"b", b"c", b"d"]);
        assert!(matches!(
            subtree_root(&tree, 1, 4),
            Err(ProveError::InvalidRequest { .. })
        ));
        assert!(matches!(
            subtree_root(&tree, 2, 2),
            Err(ProveError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn largest_power_below() {
        assert_eq!(largest_pow2_below(2), 1);
        assert_eq!(largest_pow2_below(3), 2);
        assert_eq!(largest_pow2_below(8), 4);
        assert_eq!(largest_pow2_below(9), 8);
        assert_eq!(largest_pow2_below(u64::MAX), 1 << 63);
    }
}
