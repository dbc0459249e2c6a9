//! Inclusion proofs: generation (RFC 9162 §2.1.3.1) and verification (§2.1.3.2).

use super::hash::{Hash, hash_node};
use super::proof::{InclusionProof, MAX_INCLUSION_PROOF_LEN, ProofError};
use super::tree::{HashSource, ProveError, largest_pow2_below, subtree_root};

/// The inclusion proof of the leaf at `index` in the tree of the first `size` leaves.
/// Reads O(log size) nodes: every sibling below the first left turn is one perfect node.
pub fn prove_inclusion<S: HashSource>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<InclusionProof, ProveError<S::Error>> {
    if index >= size {
        return Err(ProveError::InvalidRequest {
            reason: "leaf index is not below tree size",
        });
    }
    // Walk down from the root, recording the sibling of each step; RFC order is
    // leaf-to-root, so reverse at the end.
    let mut siblings = Vec::with_capacity(64);
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = largest_pow2_below(hi - lo);
        if index < lo + k {
            siblings.push(subtree_root(source, lo + k, hi)?);
            hi = lo + k;
        } else {
            siblings.push(subtree_root(source, lo, lo + k)?);
            lo += k;
        }
    }
    siblings.reverse();
    Ok(InclusionProof {
        index,
        tree_size: size,
        path: siblings,
    })
}

/// Root implied by an inclusion path, following RFC 9162 §2.1.3.2 step by step. Directions
/// come from `(index, size)` only.
pub fn root_from_inclusion_path(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
) -> Result<Hash, ProofError> {
    if path.len() > MAX_INCLUSION_PROOF_LEN {
        return Err(ProofError::TooLong {
            len: path.len(),
            max: MAX_INCLUSION_PROOF_LEN,
        });
    }
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = *leaf_hash;
    for p in path {
        if s_n == 0 {
            return Err(ProofError::ExtraElements);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = hash_node(p, &r);
            if f_n & 1 == 0 {
                // Right edge of an incomplete subtree: climb until this node is a right child.
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = hash_node(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::Truncated);
    }
    Ok(r)
}

/// Verifies that `leaf_hash` is the leaf at `index` of the tree of `size` leaves with root
/// `root` (RFC 9162 §2.1.3.2). Compute `leaf_hash` yourself from the entry's bytes.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion_path(leaf_hash, index, size, path)?;
    if computed == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

impl InclusionProof {
    /// Verifies that `leaf_hash` is at `self.index` in the tree whose root is `root`.
    pub fn verify(&self, leaf_hash: &Hash, root: &Hash) -> Result<(), ProofError> {
        verify_inclusion(leaf_hash, self.index, self.tree_size, &self.path, root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::hash::hash_leaf;
    use crate::merkle::tree::{MemoryTree, root};

    #[test]
    fn every_leaf_of_small_trees_proves() {
        let mut tree = MemoryTree::new();
        for n in 1u64..=40 {
            tree.push(hash_leaf(&n.to_le_bytes()));
            let r = root(&tree, n).unwrap();
            for i in 0..n {
                let proof = prove_inclusion(&tree, i, n).unwrap();
                let leaf = hash_leaf(&(i + 1).to_le_bytes());
                assert_eq!(proof.verify(&leaf, &r), Ok(()), "index {i} size {n}");
                if n > 1 {
                    let other = (i + 1) % n;
                    assert!(verify_inclusion(&leaf, other, n, &proof.path, &r).is_err());
                }
            }
        }
    }

    #[test]
    fn index_at_or_past_size_is_refused() {
        let tree = MemoryTree::from_leaf_data(&[b"a"]);
        assert!(prove_inclusion(&tree, 1, 1).is_err());
        let leaf = hash_leaf(b"a");
        assert_eq!(
            verify_inclusion(&leaf, 0, 0, &[], &leaf),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
    }
}
