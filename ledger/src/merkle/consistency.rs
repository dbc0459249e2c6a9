//! Consistency proofs: generation (RFC 9162 §2.1.4.1) and verification (§2.1.4.2).

use super::hash::{Hash, empty_root, hash_node};
use super::proof::{ConsistencyProof, MAX_CONSISTENCY_PROOF_LEN, ProofError};
use super::tree::{HashSource, ProveError, largest_pow2_below, subtree_root};

/// The proof that the first `old_size` leaves are a prefix of the first `new_size`.
/// `old_size == new_size` gives the empty proof; `old_size == 0 < new_size` is refused
/// (it proves nothing and verifiers refuse it).
pub fn prove_consistency<S: HashSource>(
    source: &S,
    old_size: u64,
    new_size: u64,
) -> Result<ConsistencyProof, ProveError<S::Error>> {
    if old_size > new_size {
        return Err(ProveError::InvalidRequest {
            reason: "old size is larger than new size",
        });
    }
    let mut path = Vec::with_capacity(65);
    if old_size == new_size {
        return Ok(ConsistencyProof {
            old_size,
            new_size,
            path,
        });
    }
    if old_size == 0 {
        return Err(ProveError::InvalidRequest {
            reason: "consistency from the empty tree proves nothing",
        });
    }
    // SUBPROOF(m, D[lo:hi], b), unrolled: descend, recording each right/left sibling,
    // then reverse to RFC order (deepest first).
    let (mut lo, mut hi, mut m) = (0u64, new_size, old_size);
    let mut complete_subtree_is_old_root = true;
    loop {
        if m == hi - lo {
            if !complete_subtree_is_old_root {
                path.push(subtree_root(source, lo, hi)?);
            }
            break;
        }
        let k = largest_pow2_below(hi - lo);
        if m <= k {
            path.push(subtree_root(source, lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(subtree_root(source, lo, lo + k)?);
            lo += k;
            m -= k;
            complete_subtree_is_old_root = false;
        }
    }
    path.reverse();
    Ok(ConsistencyProof {
        old_size,
        new_size,
        path,
    })
}

/// Verifies that the tree of `old_size` leaves with root `old_root` is a prefix of the tree
/// of `new_size` leaves with root `new_root`, following RFC 9162 §2.1.4.2, with the trivial
/// cases handled explicitly: equal sizes need equal roots and an empty proof; the empty
/// tree's root must be SHA-256(""); a proof from the empty tree to a non-empty one is
/// refused.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> Result<(), ProofError> {
    if path.len() > MAX_CONSISTENCY_PROOF_LEN {
        return Err(ProofError::TooLong {
            len: path.len(),
            max: MAX_CONSISTENCY_PROOF_LEN,
        });
    }
    if old_size > new_size {
        return Err(ProofError::SizesReversed { old_size, new_size });
    }
    if old_size == new_size {
        if !path.is_empty() {
            return Err(ProofError::NonEmptyProofForEqualSizes);
        }
        if old_size == 0 && *old_root != empty_root() {
            return Err(ProofError::EmptyTreeRootMismatch);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if old_size == 0 {
        return Err(ProofError::EmptyOldTree { new_size });
    }
    if path.is_empty() {
        return Err(ProofError::EmptyProof);
    }
    // Step 2: when the old tree is a complete subtree its root is the seed.
    let seeded: Vec<Hash>;
    let path: &[Hash] = if old_size.is_power_of_two() {
        seeded = std::iter::once(*old_root)
            .chain(path.iter().copied())
            .collect();
        &seeded
    } else {
        path
    };
    let mut f_n = old_size - 1;
    let mut s_n = new_size - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (first, rest) = match path.split_first() {
        Some(split) => split,
        None => return Err(ProofError::EmptyProof),
    };
    let mut f_r = *first;
    let mut s_r = *first;
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::ExtraElements);
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = hash_node(c, &f_r);
            s_r = hash_node(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = hash_node(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::Truncated);
    }
    if f_r == *old_root && s_r == *new_root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

impl ConsistencyProof {
    /// Verifies that `old_root` (of `old_size`) is consistent with `new_root` (of `new_size`).
    pub fn verify(&self, old_root: &Hash, new_root: &Hash) -> Result<(), ProofError> {
        verify_consistency(self.old_size, self.new_size, old_root, new_root, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::hash::hash_leaf;
    use crate::merkle::tree::{MemoryTree, root};

    #[test]
    fn every_pair_of_small_sizes_is_consistent() {
        let mut tree = MemoryTree::new();
        for n in 1u64..=33 {
            tree.push(hash_leaf(&n.to_le_bytes()));
        }
        for new in 1u64..=33 {
            let new_root = root(&tree, new).unwrap();
            for old in 1..=new {
                let old_root = root(&tree, old).unwrap();
                let proof = prove_consistency(&tree, old, new).unwrap();
                assert_eq!(proof.verify(&old_root, &new_root), Ok(()), "{old} -> {new}");
                if old != new {
                    assert!(
                        verify_consistency(old, new, &new_root, &old_root, &proof.path).is_err()
                    );
                }
            }
        }
    }

    #[test]
    fn from_empty_tree_is_refused() {
        let tree = MemoryTree::from_leaf_data(&[b"a"]);
        assert!(prove_consistency(&tree, 0, 1).is_err());
        let r = root(&tree, 1).unwrap();
        assert_eq!(
            verify_consistency(0, 1, &empty_root(), &r, &[]),
            Err(ProofError::EmptyOldTree { new_size: 1 })
        );
    }
}
