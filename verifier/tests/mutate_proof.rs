//! Inclusion proofs (rows 5–9, 23): the mutation shapes of transparency-dev's
//! `merkle/testonly` proof tests applied to the honest proof of leaf 6 in the tree of 7 —
//! index and size moved, each element flipped, elements removed, inserted and repeated,
//! the root smuggled in front or behind, mistyped elements — and checkpoints whose signed
//! root lies.

use serde_json::{Value, json};
use sworn_ledger::merkle::{empty_root, hash_leaf};

use crate::fixture::{ORIGIN, key};
use crate::mutate::{Vector, flip_hex, hash, pretty, set_checkpoint, sign_checkpoint};

pub(crate) fn proof_vectors(material: &Value) -> Vec<Vector> {
    let honest = &material["bundle"];
    let path = honest["inclusion"]["hashes"].as_array().unwrap().clone();
    let index = honest["inclusion"]["index"].as_u64().unwrap();
    let size = honest["checkpoint"]["size"].as_u64().unwrap();
    let root = honest["checkpoint"]["root_hash"].clone();
    assert_eq!(path.len(), 2, "leaf 6 of 7 has a two-element path");
    let mut out = Vec::new();
    let mut add = |file: &str, row, title, f: &dyn Fn(&mut Value)| {
        let mut b = honest.clone();
        f(&mut b);
        assert_ne!(&b, honest, "{file} must change the bundle");
        out.push(Vector::receipt(
            file,
            row,
            title,
            &["inclusion"],
            pretty(&b),
        ));
    };
    let set_path = |b: &mut Value, hashes: Vec<Value>| b["inclusion"]["hashes"] = json!(hashes);

    add(
        "05c-index-plus-one",
        5,
        "the proof's index moved to 7 (leafIdx+1: the index equals the tree size)",
        &|b| b["inclusion"]["index"] = json!(index + 1),
    );
    add(
        "05d-index-xor-two",
        5,
        "the proof's index moved to 6 ^ 2 = 4 (leafIdx^2)",
        &|b| b["inclusion"]["index"] = json!(index ^ 2),
    );
    add(
        "06c-tree-size-plus-one",
        6,
        "the proof claims tree size 8 against the signed size 7",
        &|b| b["inclusion"]["tree_size"] = json!(size + 1),
    );
    add(
        "06d-tree-size-halved",
        6,
        "the proof alone claims tree size 7 / 2 = 3",
        &|b| b["inclusion"]["tree_size"] = json!(size / 2),
    );
    add(
        "07b-removed-first-component",
        7,
        "the first path element removed",
        &|b| set_path(b, path[1..].to_vec()),
    );
    add(
        "07c-empty-path",
        7,
        "an empty path (the leaf offered as the root)",
        &|b| set_path(b, vec![]),
    );
    add(
        "08c-duplicated-component",
        8,
        "the first path element repeated",
        &|b| set_path(b, vec![path[0].clone(), path[0].clone(), path[1].clone()]),
    );
    add(
        "08d-trailing-root",
        8,
        "the signed root appended to the path",
        &|b| set_path(b, vec![path[0].clone(), path[1].clone(), root.clone()]),
    );
    add(
        "08e-preceding-root",
        8,
        "the signed root put in front of the path",
        &|b| set_path(b, vec![root.clone(), path[0].clone(), path[1].clone()]),
    );
    add(
        "09d-element-0-bit-flipped",
        9,
        "one bit of path element 0 flipped",
        &|b| b["inclusion"]["hashes"][0] = flip_hex(&path[0]),
    );
    add(
        "09e-element-1-bit-flipped",
        9,
        "one bit of path element 1 flipped",
        &|b| b["inclusion"]["hashes"][1] = flip_hex(&path[1]),
    );
    add(
        "09f-hex-with-0x-prefix",
        9,
        "a path element written 0x-prefixed",
        &|b| b["inclusion"]["hashes"][0] = json!(format!("0x{}", path[0].as_str().unwrap())),
    );
    add(
        "09g-element-as-byte-array",
        9,
        "a path element as a JSON array of its 32 bytes instead of hex",
        &|b| b["inclusion"]["hashes"][0] = json!(hash(&path[0]).0.to_vec()),
    );
    add(
        "09h-index-negative",
        9,
        "the proof's index is -1 (a wrapping reader makes it 2^64 - 1)",
        &|b| b["inclusion"]["index"] = json!(-1),
    );
    // Rows 6 and 23: the operator signs a checkpoint of the right size with a root no
    // tree of these leaves has.
    add(
        "23b-empty-root-at-size",
        23,
        "log-signed checkpoint of size 7 whose root is SHA-256(\"\") (the empty tree's)",
        &|b| {
            let r = empty_root();
            set_checkpoint(b, size, r, &sign_checkpoint(ORIGIN, size, r, &key()));
        },
    );
    add(
        "23c-random-root",
        23,
        "log-signed checkpoint of size 7 with an unrelated root",
        &|b| {
            let r = hash_leaf(b"an unrelated root");
            set_checkpoint(b, size, r, &sign_checkpoint(ORIGIN, size, r, &key()));
        },
    );
    out
}
