//! Proof types and the errors of proving and verifying.
//!
//! A proof carries only hashes and the sizes it is about; it never carries directions.
//! Verifiers derive left/right from `(index, size)` (RFC 9162 §2.1.3.2 / §2.1.4.2).
//!
//! This module holds data only and depends on nothing but `hash`: the algorithms, and the
//! `verify` methods of these types, live in `inclusion` and `consistency`, which use it.

use serde::{Deserialize, Serialize};

use super::hash::{Hash, HashDecodeError};

/// Longest inclusion path that can be valid: every element moves one level up a tree of
/// at most 2^64 leaves, so a path of more than 64 elements is refused before hashing.
pub const MAX_INCLUSION_PROOF_LEN: usize = 64;
/// Longest consistency path that can be valid: the RFC 9162 verifier consumes one element
/// per level after the seed element, so 64 levels plus one.
pub const MAX_CONSISTENCY_PROOF_LEN: usize = 65;

/// Why a proof did not verify, or could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// Index claimed.
        index: u64,
        /// Tree size claimed.
        size: u64,
    },
    /// The proof has more elements than any valid proof can have.
    #[error("proof has {len} elements, more than the cap of {max}")]
    TooLong {
        /// Elements received.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The proof has more elements than this (index, size) allows.
    #[error("proof has more elements than the tree allows")]
    ExtraElements,
    /// The proof ended before reaching the root.
    #[error("proof is truncated: it ends before the root")]
    Truncated,
    /// A proof element is not a 32-byte hash.
    #[error("proof element {position} is not a hash: {source}")]
    BadElement {
        /// Position of the element in the path.
        position: usize,
        /// What was wrong with it.
        source: HashDecodeError,
    },
    /// The recomputed root differs from the expected root.
    #[error("recomputed root does not match the expected root")]
    RootMismatch,
    /// The consistency proof's first size is larger than its second.
    #[error("old size {old_size} is larger than new size {new_size}")]
    SizesReversed {
        /// Older tree size.
        old_size: u64,
        /// Newer tree size.
        new_size: u64,
    },
    /// A consistency proof from the empty tree proves nothing and is refused.
    #[error("consistency from the empty tree to size {new_size} proves nothing")]
    EmptyOldTree {
        /// Newer tree size.
        new_size: u64,
    },
    /// Equal sizes need an empty proof.
    #[error("sizes are equal but the proof is not empty")]
    NonEmptyProofForEqualSizes,
    /// The empty tree's root must be SHA-256 of nothing.
    #[error("the root given for the empty tree is not SHA-256(\"\")")]
    EmptyTreeRootMismatch,
    /// A consistency proof between different sizes cannot be empty.
    #[error("consistency proof is empty")]
    EmptyProof,
}

/// Checks a proof's length against its cap and decodes every element as a 32-byte hash.
pub fn decode_path<B: AsRef<[u8]>>(elements: &[B], max: usize) -> Result<Vec<Hash>, ProofError> {
    if elements.len() > max {
        return Err(ProofError::TooLong {
            len: elements.len(),
            max,
        });
    }
    elements
        .iter()
        .enumerate()
        .map(|(position, e)| {
            Hash::from_slice(e.as_ref())
                .map_err(|source| ProofError::BadElement { position, source })
        })
        .collect()
}

/// Proof that the leaf at `index` is in the tree of `tree_size` leaves. `path` runs from
/// the leaf's sibling up to the root's child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Index of the leaf.
    pub index: u64,
    /// Size of the tree the proof is against.
    pub tree_size: u64,
    /// Sibling hashes, leaf to root.
    pub path: Vec<Hash>,
}

/// Proof that the tree of `old_size` leaves is a prefix of the tree of `new_size` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// Size of the older tree.
    pub old_size: u64,
    /// Size of the newer tree.
    pub new_size: u64,
    /// Proof hashes as RFC 9162 §2.1.4.1 orders them.
    pub path: Vec<Hash>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_path_refuses_long_and_short_elements() {
        let too_many = vec![[0u8; 32]; MAX_INCLUSION_PROOF_LEN + 1];
        assert_eq!(
            decode_path(&too_many, MAX_INCLUSION_PROOF_LEN),
            Err(ProofError::TooLong { len: 65, max: 64 })
        );
        let short: Vec<Vec<u8>> = vec![vec![0u8; 32], vec![0u8; 31]];
        assert!(matches!(
            decode_path(&short, MAX_INCLUSION_PROOF_LEN),
            Err(ProofError::BadElement { position: 1, .. })
        ));
    }
}
