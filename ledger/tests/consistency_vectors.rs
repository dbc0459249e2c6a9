//! The consistency-proof cases that SwornAnchor's Forge tests hold the contract's on-chain
//! verifier to (`contracts/test/data/consistency.json`): the contract must give the Rust
//! verifier's verdict on every case, and reject every corruption of a valid one.
//!
//! The file is generated here from a fixed seed: honest proofs over random trees (with
//! the edge cases: equal sizes, an old size that is a power of two, one new leaf, large
//! gaps), honest proofs between huge sizes (up to 2^64 - 1, where no tree fits in memory;
//! see [`SplitTree`]), and corruptions of those, each with the verdict of
//! `sworn_ledger::merkle::verify_consistency`. The first `honest` cases are the honest
//! ones (all valid), which the Forge fuzz corrupts further; the `gas` list names the cases
//! the contract tests measure an anchor transaction with (2^10, 2^20 and 2^30 entries).
//!
//! `consistency_vectors_are_what_the_generator_produces` fails when the committed file is
//! not exactly this generator's output. To regenerate after a deliberate change:
//! `cargo test -p sworn-ledger --test tests -- --ignored regenerate_consistency_vectors`,
//! then rerun `anvil/test-contracts.sh`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sworn_ledger::merkle::{
    Hash, HashSource, MAX_CONSISTENCY_PROOF_LEN, MemoryTree, ProofError, hash_leaf, hash_node,
    prove_consistency, root, verify_consistency,
};

/// The generator's seed; changing it changes every case.
const SEED: u64 = 0x5704_a2c4;
/// New entries per anchor in the gas cases: about what a busy log seals between two
/// anchors (one anchor a minute at ~17 requests a second).
const GAS_NEW_ENTRIES: u64 = 1000;

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contracts/test/data/consistency.json")
}

/// One case: a proof between two (size, root) pairs and the Rust verifier's verdict.
#[derive(Clone)]
struct Case {
    name: String,
    old_size: u64,
    new_size: u64,
    old_root: Hash,
    new_root: Hash,
    proof: Vec<Hash>,
}

impl Case {
    fn verdict(&self) -> Result<(), ProofError> {
        verify_consistency(
            self.old_size,
            self.new_size,
            &self.old_root,
            &self.new_root,
            &self.proof,
        )
    }

    fn to_json(&self) -> Value {
        let verdict = self.verdict();
        json!({
            "name": self.name,
            "oldSize": self.old_size,
            "newSize": self.new_size,
            "oldRoot": hex32(&self.old_root),
            "newRoot": hex32(&self.new_root),
            "proof": self.proof.iter().map(hex32).collect::<Vec<_>>(),
            "valid": verdict.is_ok(),
            "rust": verdict.err().map_or_else(|| "ok".to_string(), |e| format!("{e:?}")),
        })
    }
}

fn hex32(h: &Hash) -> String {
    format!("0x{}", h.to_hex())
}

/// A tree of any size up to 2^64 - 1 whose proofs and roots between one old size and any
/// larger size are consistent, without holding the leaves. Every complete subtree that
/// lies wholly on one side of the old size is an opaque pseudo-random hash (it stands for
/// whatever leaves hash to it); a subtree that straddles the old size is the hash of its
/// two children, as in a real tree. Only straddling subtrees are ever split by a root or a
/// proof, so everything the verifier recomputes agrees; `honest` checks each case.
struct SplitTree {
    old_size: u64,
    salt: [u8; 32],
    memo: RefCell<HashMap<(u8, u64), Hash>>,
}

impl SplitTree {
    fn new(old_size: u64, salt: [u8; 32]) -> Self {
        SplitTree {
            old_size,
            salt,
            memo: RefCell::new(HashMap::new()),
        }
    }
}

impl HashSource for SplitTree {
    type Error = Infallible;

    fn node(&self, level: u8, index: u64) -> Result<Hash, Infallible> {
        if let Some(h) = self.memo.borrow().get(&(level, index)) {
            return Ok(*h);
        }
        let start = u128::from(index) << level;
        let end = (u128::from(index) + 1) << level;
        let old = u128::from(self.old_size);
        let h = if level > 0 && start < old && old < end {
            let left = self.node(level - 1, 2 * index)?;
            let right = self.node(level - 1, 2 * index + 1)?;
            hash_node(&left, &right)
        } else {
            let mut hasher = Sha256::new();
            hasher.update(self.salt);
            hasher.update([level]);
            hasher.update(index.to_be_bytes());
            Hash(hasher.finalize().into())
        };
        self.memo.borrow_mut().insert((level, index), h);
        Ok(h)
    }
}

/// The honest case between `old_size` and `new_size` of `source`; panics if the proof
/// does not verify (the generator must only call valid cases honest).
fn honest<S: HashSource>(source: &S, name: String, old_size: u64, new_size: u64) -> Case
where
    S::Error: std::fmt::Debug,
{
    let case = Case {
        name,
        old_size,
        new_size,
        old_root: root(source, old_size).unwrap(),
        new_root: root(source, new_size).unwrap(),
        proof: prove_consistency(source, old_size, new_size).unwrap().path,
    };
    assert_eq!(case.verdict(), Ok(()), "{} must verify", case.name);
    case
}

fn random_hash(rng: &mut ChaCha8Rng) -> Hash {
    Hash(rng.r#gen())
}

fn random_tree(rng: &mut ChaCha8Rng, size: u64) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for _ in 0..size {
        let data: [u8; 16] = rng.r#gen();
        tree.push(hash_leaf(&data));
    }
    tree
}

fn flip_bit(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out.0[bit / 8] ^= 0x80 >> (bit % 8);
    out
}

/// A corruption of a valid case, named after what was done; `None` where it does not apply.
fn corrupt(rng: &mut ChaCha8Rng, case: &Case, kind: usize) -> Option<Case> {
    let mut c = case.clone();
    let len = c.proof.len();
    let what = match kind {
        0 if len > 0 => {
            let i = rng.gen_range(0..len);
            let bit = rng.gen_range(0..256);
            c.proof[i] = flip_bit(&c.proof[i], bit);
            format!("proof[{i}] bit {bit} flipped")
        }
        1 => {
            let bit = rng.gen_range(0..256);
            c.old_root = flip_bit(&c.old_root, bit);
            format!("old root bit {bit} flipped")
        }
        2 => {
            let bit = rng.gen_range(0..256);
            c.new_root = flip_bit(&c.new_root, bit);
            format!("new root bit {bit} flipped")
        }
        3 if len > 0 => {
            c.proof.pop();
            "last element dropped".to_string()
        }
        4 if len > 1 => {
            c.proof.remove(0);
            "first element dropped".to_string()
        }
        5 => {
            c.proof.push(random_hash(rng));
            "random element appended".to_string()
        }
        6 => {
            let h = random_hash(rng);
            c.proof.insert(0, h);
            "random element prepended".to_string()
        }
        7 if len > 1 => {
            let i = rng.gen_range(0..len - 1);
            c.proof.swap(i, i + 1);
            if c.proof == case.proof {
                return None;
            }
            format!("elements {i} and {} swapped", i + 1)
        }
        8 if c.old_root != c.new_root => {
            std::mem::swap(&mut c.old_root, &mut c.new_root);
            "roots swapped".to_string()
        }
        9 if len > 0 => {
            c.proof.clear();
            "proof emptied".to_string()
        }
        10 if c.new_size < u64::MAX => {
            c.new_size += 1;
            "new size + 1".to_string()
        }
        11 if c.old_size < c.new_size => {
            c.old_size += 1;
            "old size + 1".to_string()
        }
        12 if c.old_size > 1 => {
            c.old_size -= 1;
            "old size - 1".to_string()
        }
        13 if c.old_size < c.new_size => {
            std::mem::swap(&mut c.old_size, &mut c.new_size);
            std::mem::swap(&mut c.old_root, &mut c.new_root);
            "sizes and roots reversed".to_string()
        }
        14 => {
            c.proof
                .resize(MAX_CONSISTENCY_PROOF_LEN + 1, random_hash(rng));
            "padded past the length cap".to_string()
        }
        15 => {
            c.old_size = 0;
            "old size zero".to_string()
        }
        _ => return None,
    };
    c.name = format!("{}: {what}", case.name);
    Some(c)
}

/// Every case and the gas list, as the committed file holds them.
fn generate() -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut honest_cases = Vec::new();

    // One tree of 300 leaves: the edge cases by hand, then random pairs.
    let big = random_tree(&mut rng, 300);
    let edges: [(u64, u64); 28] = [
        (1, 1),
        (1, 2),
        (1, 3),
        (1, 300),
        (2, 3),
        (3, 4),
        (3, 7),
        (4, 4),
        (4, 8),
        (5, 6),
        (6, 8),
        (7, 8),
        (8, 9),
        (15, 16),
        (16, 17),
        (31, 33),
        (32, 64),
        (63, 65),
        (64, 300),
        (100, 100),
        (127, 128),
        (128, 129),
        (129, 300),
        (200, 201),
        (255, 257),
        (256, 300),
        (299, 300),
        (300, 300),
    ];
    for (old, new) in edges {
        honest_cases.push(honest(&big, format!("tree 300: {old} -> {new}"), old, new));
    }
    for _ in 0..12 {
        let new = rng.gen_range(1..=300u64);
        let old = rng.gen_range(1..=new);
        honest_cases.push(honest(&big, format!("tree 300: {old} -> {new}"), old, new));
    }
    // Smaller trees of random sizes, each with an equal pair, a power-of-two old size,
    // one new leaf and a random pair.
    for t in 0..6 {
        let size = rng.gen_range(2..=160u64);
        let tree = random_tree(&mut rng, size);
        let pow2 = 1u64 << rng.gen_range(0..=(63 - (size - 1).leading_zeros()));
        let random_new = rng.gen_range(1..=size);
        let random_old = rng.gen_range(1..=random_new);
        let equal = rng.gen_range(1..=size);
        for (old, new) in [
            (equal, equal),
            (pow2, size),
            (size - 1, size),
            (random_old, random_new),
        ] {
            honest_cases.push(honest(
                &tree,
                format!("tree {t} of {size}: {old} -> {new}"),
                old,
                new,
            ));
        }
    }
    // Huge sizes, where only a split tree fits: powers of two on either side, the
    // longest possible proof (65 elements), the largest sizes, and large gaps.
    let huge: [(u64, u64); 12] = [
        (1 << 32, (1 << 32) + 1),
        ((1 << 40) - 1, (1 << 40) + 5),
        (1, u64::MAX),
        (3, u64::MAX),
        ((1 << 63) - 1, (1 << 63) + 1),
        (1 << 63, u64::MAX),
        (u64::MAX - 1, u64::MAX),
        (u64::MAX, u64::MAX),
        (12_345_678_901, 98_765_432_109_876),
        ((1 << 62) + 3, (1 << 62) + 3),
        (0x5555_5555_5555, 0xaaaa_aaaa_aaaa),
        ((1 << 48) + 1, 1 << 49),
    ];
    for (old, new) in huge {
        let tree = SplitTree::new(old, rng.r#gen());
        honest_cases.push(honest(&tree, format!("huge: {old} -> {new}"), old, new));
    }
    let longest = honest_cases
        .iter()
        .map(|c| c.proof.len())
        .max()
        .unwrap_or(0);
    assert_eq!(
        longest, MAX_CONSISTENCY_PROOF_LEN,
        "the cases reach the length cap"
    );

    // The gas cases: at 2^e entries, an anchor of 1,000 new entries on top of an old size
    // just below 2^e (the longest proofs around there: the old tree's last leaf sits
    // deepest) and on top of a random old size in [2^e, 2^(e+1)).
    let mut gas = Vec::new();
    for e in [10u32, 20, 30] {
        let crossing = (1u64 << e) - 1;
        let random = (1u64 << e) + rng.gen_range(0..(1u64 << e));
        for (label, old) in [
            (
                format!("2^{e}: {crossing} -> +{GAS_NEW_ENTRIES} (worst)"),
                crossing,
            ),
            (
                format!("2^{e}: {random} -> +{GAS_NEW_ENTRIES} (random)"),
                random,
            ),
        ] {
            let tree = SplitTree::new(old, rng.r#gen());
            let new = old + GAS_NEW_ENTRIES;
            gas.push(json!({"label": label, "case": honest_cases.len()}));
            honest_cases.push(honest(&tree, format!("gas {label}"), old, new));
        }
    }

    // Corruptions: every kind of every honest case where it applies would be thousands;
    // take two random kinds per case, plus the equal-size split view once by hand.
    let mut cases = honest_cases.clone();
    for case in &honest_cases {
        let mut made = 0;
        while made < 2 {
            let kind = rng.gen_range(0..16);
            if let Some(bad) = corrupt(&mut rng, case, kind) {
                cases.push(bad);
                made += 1;
            }
        }
    }
    let split_view = Case {
        name: "tree 300: 100 -> 100 with another root (a split view)".to_string(),
        new_root: random_hash(&mut rng),
        ..honest_cases[19].clone()
    };
    assert_eq!(
        (split_view.old_size, split_view.new_size),
        (100, 100),
        "the split view is an equal-size case"
    );
    cases.push(split_view);

    render(&[
        (
            "about",
            json!(
                "RFC 9162 consistency proofs with the Rust verifier's verdict, for SwornAnchor's \
                 differential tests. Generated by ledger/tests/consistency_vectors.rs; do not edit."
            ),
        ),
        ("seed", json!(SEED)),
        ("count", json!(cases.len())),
        ("honest", json!(honest_cases.len())),
        ("gas", Value::Array(gas)),
        (
            "cases",
            Value::Array(cases.iter().map(Case::to_json).collect()),
        ),
    ])
}

/// Pretty JSON with the top-level members in the order given and each array item on one
/// line, so the file stays readable and diffs case by case.
fn render(members: &[(&str, Value)]) -> String {
    let mut out = String::from("{\n");
    let last = members.len() - 1;
    for (i, (key, value)) in members.iter().enumerate() {
        out += &format!("  {}: ", Value::String((*key).to_string()));
        match value {
            Value::Array(items) => {
                out += "[\n";
                for (j, item) in items.iter().enumerate() {
                    out += "    ";
                    out += &sworn_ledger::jcs::sorted(item).to_string();
                    out += if j + 1 < items.len() { ",\n" } else { "\n" };
                }
                out += "  ]";
            }
            other => out += &sworn_ledger::jcs::sorted(other).to_string(),
        }
        out += if i < last { ",\n" } else { "\n" };
    }
    out + "}\n"
}

#[test]
#[ignore = "writes contracts/test/data/consistency.json; run by hand after a deliberate change"]
fn regenerate_consistency_vectors() {
    let path = vectors_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, generate()).unwrap();
}

#[test]
fn consistency_vectors_are_what_the_generator_produces() {
    let path = vectors_path();
    let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run the regenerate_consistency_vectors test)",
            path.display()
        )
    });
    assert!(
        on_disk == generate(),
        "{} differs from the generator's output (run the regenerate_consistency_vectors test)",
        path.display()
    );
}

/// The committed verdicts, re-read through the JSON: what the Forge tests compare with.
#[test]
fn committed_consistency_verdicts_are_the_rust_verifiers() {
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_path()).unwrap()).unwrap();
    let cases = file["cases"].as_array().unwrap();
    assert_eq!(file["count"].as_u64().unwrap() as usize, cases.len());
    let honest = file["honest"].as_u64().unwrap() as usize;
    assert!(
        cases[..honest]
            .iter()
            .all(|c| c["valid"].as_bool().unwrap()),
        "the honest cases are all valid"
    );
    let (mut valid, mut invalid) = (0, 0);
    for case in cases {
        let hash =
            |v: &Value| Hash::from_hex(v.as_str().unwrap().trim_start_matches("0x")).unwrap();
        let proof: Vec<Hash> = case["proof"].as_array().unwrap().iter().map(hash).collect();
        let verdict = verify_consistency(
            case["oldSize"].as_u64().unwrap(),
            case["newSize"].as_u64().unwrap(),
            &hash(&case["oldRoot"]),
            &hash(&case["newRoot"]),
            &proof,
        );
        assert_eq!(
            verdict.is_ok(),
            case["valid"].as_bool().unwrap(),
            "{}",
            case["name"]
        );
        if verdict.is_ok() {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    // Both verdicts are well represented, and every gas case is a valid anchor.
    assert!(
        valid >= 80 && invalid >= 100,
        "{valid} valid, {invalid} invalid"
    );
    for g in file["gas"].as_array().unwrap() {
        let case = &cases[g["case"].as_u64().unwrap() as usize];
        assert!(case["valid"].as_bool().unwrap(), "{}", g["label"]);
        assert!(case["oldSize"].as_u64().unwrap() > 0);
    }
}
