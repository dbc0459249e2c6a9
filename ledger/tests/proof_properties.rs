//! Property tests: for random sizes and indices, generated proofs verify, and every
//! single-bit flip, wrong index, wrong size, truncation or extension is rejected.

use proptest::prelude::*;
use sworn_ledger::merkle::{
    Hash, MemoryTree, hash_leaf, prove_consistency, prove_inclusion, root, verify_consistency,
    verify_inclusion,
};

fn tree(size: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..size {
        t.push(hash_leaf(&i.to_le_bytes()));
    }
    t
}

fn flip(path: &[Hash], element: usize, bit: usize) -> Vec<Hash> {
    let mut out = path.to_vec();
    out[element].0[bit / 8] ^= 1 << (bit % 8);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inclusion_proofs_bind_leaf_index_size_and_path(
        size in 1u64..3000,
        index_seed in any::<u64>(),
        other_seed in any::<u64>(),
        element_seed in any::<usize>(),
        bit in 0usize..256,
        extra in any::<[u8; 32]>(),
    ) {
        let t = tree(size);
        let index = index_seed % size;
        let leaf = hash_leaf(&index.to_le_bytes());
        let r = root(&t, size).unwrap();
        let proof = prove_inclusion(&t, index, size).unwrap();
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof.path, &r), Ok(()));

        if !proof.path.is_empty() {
            let e = element_seed % proof.path.len();
            prop_assert!(verify_inclusion(&leaf, index, size, &flip(&proof.path, e, bit), &r).is_err());
            prop_assert!(verify_inclusion(&leaf, index, size, &proof.path[..proof.path.len() - 1], &r).is_err());
            prop_assert!(verify_inclusion(&leaf, index, size, &proof.path[1..], &r).is_err());
        }
        let mut longer = proof.path.clone();
        longer.push(Hash(extra));
        prop_assert!(verify_inclusion(&leaf, index, size, &longer, &r).is_err());
        let mut prefixed = vec![Hash(extra)];
        prefixed.extend_from_slice(&proof.path);
        prop_assert!(verify_inclusion(&leaf, index, size, &prefixed, &r).is_err());

        let wrong_index = other_seed % size.max(2);
        if wrong_index != index {
            prop_assert!(verify_inclusion(&leaf, wrong_index, size, &proof.path, &r).is_err());
        }
        prop_assert!(verify_inclusion(&leaf, size, size, &proof.path, &r).is_err());
        // A different size, checked against that size's root (sizes travel with roots in
        // checkpoints), never verifies.
        let big = tree(size + 8);
        for wrong_size in [size + 1, size + 7, (size / 2).max(index + 1), size * 2] {
            if wrong_size != size {
                let wrong_root = root(&big, wrong_size.min(size + 8)).unwrap();
                let s = wrong_size.min(size + 8);
                prop_assert!(verify_inclusion(&leaf, index, s, &proof.path, &wrong_root).is_err());
            }
        }
    }

    #[test]
    fn consistency_proofs_bind_both_sizes_and_path(
        new_size in 2u64..3000,
        old_seed in any::<u64>(),
        element_seed in any::<usize>(),
        bit in 0usize..256,
        extra in any::<[u8; 32]>(),
    ) {
        let t = tree(new_size + 1);
        let old_size = 1 + old_seed % (new_size - 1);
        let old_root = root(&t, old_size).unwrap();
        let new_root = root(&t, new_size).unwrap();
        let proof = prove_consistency(&t, old_size, new_size).unwrap();
        prop_assert_eq!(verify_consistency(old_size, new_size, &old_root, &new_root, &proof.path), Ok(()));

        let e = element_seed % proof.path.len();
        prop_assert!(verify_consistency(old_size, new_size, &old_root, &new_root, &flip(&proof.path, e, bit)).is_err());
        prop_assert!(verify_consistency(old_size, new_size, &old_root, &new_root, &proof.path[..proof.path.len() - 1]).is_err());
        let mut longer = proof.path.clone();
        longer.push(Hash(extra));
        prop_assert!(verify_consistency(old_size, new_size, &old_root, &new_root, &longer).is_err());
        prop_assert!(verify_consistency(old_size, new_size, &new_root, &old_root, &proof.path).is_err());

        for wrong_old in [old_size - 1, old_size + 1] {
            if wrong_old != old_size && wrong_old >= 1 && wrong_old < new_size {
                let wr = root(&t, wrong_old).unwrap();
                prop_assert!(verify_consistency(wrong_old, new_size, &wr, &new_root, &proof.path).is_err());
            }
        }
        let wrong_new = new_size + 1;
        let wr = root(&t, wrong_new).unwrap();
        prop_assert!(verify_consistency(old_size, wrong_new, &old_root, &wr, &proof.path).is_err());
    }
}
