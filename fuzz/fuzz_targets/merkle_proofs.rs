//! RFC 9162 inclusion and consistency verification (`verify_inclusion`,
//! `verify_consistency`) on honest proofs of a 64-leaf tree, mutated by the fuzzer: path
//! elements dropped, inserted, replaced (by real nodes of the tree or raw bytes), swapped,
//! truncated; index and sizes overridden with any u64.
//!
//! Invariants (soundness, assuming SHA-256 has no collisions): the honest proof verifies;
//! an inclusion proof accepted against the root of size m with claimed size m proves the
//! claimed leaf is the tree's leaf at the claimed index; a consistency proof accepted
//! against the root of size m with claimed new size m proves the claimed old root is the
//! tree's root at the claimed old size. `root_from_inclusion_path` agrees with
//! `verify_inclusion`.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sworn_ledger::merkle::{
    Hash, MemoryTree, hash_leaf, prove_consistency, prove_inclusion, root,
    root_from_inclusion_path, verify_consistency, verify_inclusion,
};

const LEAVES: u64 = 64;

struct Tree {
    tree: MemoryTree,
    leaves: Vec<Hash>,
    /// `roots[k]`: root of the first k leaves (`roots[0]` is the empty root).
    roots: Vec<Hash>,
    /// Every hash a forger could reuse: leaves, complete subtrees, prefix roots.
    pool: Vec<Hash>,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let leaves: Vec<Hash> = (0..LEAVES).map(|i| hash_leaf(&i.to_le_bytes())).collect();
        let mut tree = MemoryTree::new();
        for leaf in &leaves {
            tree.push(*leaf);
        }
        let roots: Vec<Hash> = (0..=LEAVES)
            .map(|k| root(&tree, k).expect("prefix root"))
            .collect();
        let mut pool = leaves.clone();
        pool.extend(&roots);
        for level in 1..=6u8 {
            for index in 0..(LEAVES >> level) {
                let start = index << level;
                let end = start + (1 << level);
                pool.push(sworn_ledger::merkle::subtree_root(&tree, start, end).expect("node"));
            }
        }
        Tree {
            tree,
            leaves,
            roots,
            pool,
        }
    })
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Element {
    /// A hash of the tree (index into the pool, wrapped).
    Pool(u16),
    /// Any 32 bytes.
    Raw([u8; 32]),
}

impl Element {
    fn hash(self, t: &Tree) -> Hash {
        match self {
            Element::Pool(i) => t.pool[usize::from(i) % t.pool.len()],
            Element::Raw(bytes) => Hash(bytes),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Drop(u8),
    Insert(u8, Element),
    Replace(u8, Element),
    Swap(u8, u8),
    Truncate(u8),
}

#[derive(Arbitrary, Debug)]
struct Case {
    consistency: bool,
    /// Honest proof parameters (reduced into the tree).
    first: u8,
    size: u8,
    /// What the forger claims instead of the honest values.
    claimed_first: Option<u64>,
    claimed_size: Option<u64>,
    /// The leaf (inclusion) or old root (consistency) presented.
    subject: Option<Element>,
    edits: Vec<Edit>,
}

fn apply(path: &mut Vec<Hash>, edits: &[Edit], t: &Tree) {
    for edit in edits {
        let at = |i: u8, len: usize| usize::from(i) % len.max(1);
        match *edit {
            Edit::Drop(i) if !path.is_empty() => {
                path.remove(at(i, path.len()));
            }
            Edit::Insert(i, e) => path.insert(at(i, path.len() + 1), e.hash(t)),
            Edit::Replace(i, e) if !path.is_empty() => {
                let i = at(i, path.len());
                path[i] = e.hash(t);
            }
            Edit::Swap(i, j) if !path.is_empty() => {
                let (i, j) = (at(i, path.len()), at(j, path.len()));
                path.swap(i, j);
            }
            Edit::Truncate(n) => path.truncate(usize::from(n)),
            _ => {}
        }
        if path.len() > 80 {
            path.truncate(80);
        }
    }
}

fn inclusion(case: &Case, t: &Tree) {
    let m = 1 + u64::from(case.size) % LEAVES;
    let i = u64::from(case.first) % m;
    let honest = prove_inclusion(&t.tree, i, m).expect("honest proof");
    let root = t.roots[m as usize];
    let mut path = honest.path.clone();
    apply(&mut path, &case.edits, t);
    let index = case.claimed_first.unwrap_or(i);
    let size = case.claimed_size.unwrap_or(m);
    let leaf = case.subject.map_or(t.leaves[i as usize], |e| e.hash(t));
    let verdict = verify_inclusion(&leaf, index, size, &path, &root);
    let recomputed = root_from_inclusion_path(&leaf, index, size, &path);
    assert_eq!(verdict.is_ok(), recomputed == Ok(root));
    let untouched = case.edits.is_empty()
        && case.claimed_first.is_none_or(|c| c == i)
        && case.claimed_size.is_none_or(|c| c == m)
        && leaf == t.leaves[i as usize];
    if untouched {
        assert_eq!(
            verdict,
            Ok(()),
            "honest inclusion proof of {i} in {m} refused"
        );
    }
    if verdict.is_ok() && size == m {
        assert!(index < m, "accepted index {index} outside size {m}");
        assert_eq!(
            leaf, t.leaves[index as usize],
            "accepted a leaf that is not at index {index} of size {m}: {path:?}"
        );
    }
}

fn consistency(case: &Case, t: &Tree) {
    let m = 1 + u64::from(case.size) % LEAVES;
    let o = 1 + u64::from(case.first) % m;
    let honest = prove_consistency(&t.tree, o, m).expect("honest proof");
    let new_root = t.roots[m as usize];
    let mut path = honest.path.clone();
    apply(&mut path, &case.edits, t);
    let old_size = case.claimed_first.unwrap_or(o);
    let new_size = case.claimed_size.unwrap_or(m);
    let old_root = case.subject.map_or(t.roots[o as usize], |e| e.hash(t));
    let verdict = verify_consistency(old_size, new_size, &old_root, &new_root, &path);
    let untouched = case.edits.is_empty()
        && case.claimed_first.is_none_or(|c| c == o)
        && case.claimed_size.is_none_or(|c| c == m)
        && old_root == t.roots[o as usize];
    if untouched {
        assert_eq!(
            verdict,
            Ok(()),
            "honest consistency proof {o} -> {m} refused"
        );
    }
    if verdict.is_ok() && new_size == m {
        assert!(old_size <= m, "accepted old size {old_size} above {m}");
        assert_eq!(
            old_root, t.roots[old_size as usize],
            "accepted a root that is not the root of size {old_size}: {path:?}"
        );
    }
}

fuzz_target!(|case: Case| {
    let t = tree();
    if case.consistency {
        consistency(&case, t);
    } else {
        inclusion(&case, t);
    }
});
