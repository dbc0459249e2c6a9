//! The RFC 9162 Merkle tree: hashing, stored-subtree roots, inclusion and consistency
//! proofs with verification exactly as RFC 9162 §2.1.3.2 and §2.1.4.2 describe.

pub mod compact;
pub mod consistency;
pub mod hash;
pub mod inclusion;
pub mod proof;
pub mod tree;

pub use compact::{CompactRange, NewNode};
pub use consistency::{prove_consistency, verify_consistency};
pub use hash::{Hash, HashDecodeError, empty_root, hash_leaf, hash_node};
pub use inclusion::{prove_inclusion, root_from_inclusion_path, verify_inclusion};
pub use proof::{
    ConsistencyProof, InclusionProof, MAX_CONSISTENCY_PROOF_LEN, MAX_INCLUSION_PROOF_LEN,
    ProofError, decode_path,
};
pub use tree::{HashSource, MemoryTree, ProveError, root, subtree_root};
