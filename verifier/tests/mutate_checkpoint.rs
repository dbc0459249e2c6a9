//! The `checkpoint` command (rows 16, 17, 19, 25, 27, 28): a checkpoint checked against
//! the one this auditor accepted before, with a consistency proof between them.
//!
//! Each vector is `{"state", "file" | "file_base64", "consistency"}`: the last accepted
//! checkpoint (or null), the exact bytes of the checkpoint FILE (note text or the
//! `/v1/audit/checkpoint` JSON), and the exact text of the `--consistency` file (or
//! null). Rollbacks, equivocation and forks — including a fork that brings its own
//! self-consistent proof — every transparency-dev mutation of the proof, proof sizes and
//! stated roots that lie, and checkpoint JSON whose unsigned copies contradict its note.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sworn_ledger::merkle::{hash_leaf, prove_consistency};

use crate::fixture::{ORIGIN, key};
use crate::mutate::{
    Vector, export_leaves, flip_hex, hand_note, hash, pretty, sign_checkpoint, tree, tree_root,
    with_duplicate,
};

/// The checkpoint FILE of a vector.
enum CheckpointFile {
    Text(String),
    Bytes(Vec<u8>),
}

fn vector(
    file: &str,
    row: u32,
    title: &'static str,
    failed: &[&'static str],
    state: &Value,
    checkpoint: CheckpointFile,
    consistency: Option<&str>,
) -> Vector {
    let mut input = json!({"state": state, "consistency": consistency});
    match checkpoint {
        CheckpointFile::Text(text) => input["file"] = json!(text),
        CheckpointFile::Bytes(bytes) => input["file_base64"] = json!(BASE64.encode(bytes)),
    }
    Vector {
        file: format!("{file}.checkpoint.json"),
        row,
        title,
        command: "checkpoint",
        failed: failed.to_vec(),
        outcomes: vec![],
        findings: vec![],
        needs_chain: false,
        content: pretty(&input),
        prompt: None,
        response: None,
    }
}

pub(crate) fn checkpoint_vectors(material: &Value) -> Vec<Vector> {
    use CheckpointFile::Text;
    let new_note = material["bundle"]["checkpoint"]["note"]
        .as_str()
        .unwrap()
        .to_string();
    let new_size = material["bundle"]["checkpoint"]["size"].as_u64().unwrap();
    let new_root = hash(&material["bundle"]["checkpoint"]["root_hash"]);
    let old = &material["old_checkpoint"];
    let old_note = old["note"].as_str().unwrap().to_string();
    let old_size = old["size"].as_u64().unwrap();
    let seen = |size: u64, root: &str, note: &str| json!({"origin": ORIGIN, "size": size, "root_hash": root, "note": note});
    let seen_old = seen(old_size, old["root_hash"].as_str().unwrap(), &old_note);
    let seen_new = seen(new_size, &new_root.to_hex(), &new_note);
    let proof = &material["consistency"];
    let text = |v: &Value| Some(v.to_string());
    let honest_proof = text(proof);
    let fork_root = hash_leaf(b"a different history");
    let forked = sign_checkpoint(ORIGIN, new_size, fork_root, &key());
    let checkpoint_json = json!({
        "origin": ORIGIN, "size": new_size, "root_hash": new_root.to_hex(), "note": new_note,
    });
    let consistency = &["consistency"][..];
    let mut out = Vec::new();

    // Rows 16, 17, 19: the history this auditor saw.
    let mut swapped = proof.clone();
    swapped["old_root_hash"] = proof["new_root_hash"].clone();
    swapped["new_root_hash"] = proof["old_root_hash"].clone();
    out.extend([
        vector(
            "16-honest-extension",
            0,
            "newer checkpoint with a valid consistency proof",
            &[],
            &seen_old,
            Text(new_note.clone()),
            honest_proof.as_deref(),
        ),
        vector(
            "16b-rolled-back",
            16,
            "last seen size 7; now size 3 is served",
            consistency,
            &seen_new,
            Text(old_note),
            None,
        ),
        vector(
            "16c-honest-extension-json",
            0,
            "the newer checkpoint as /v1/audit/checkpoint JSON, its copies agreeing with the note",
            &[],
            &seen_old,
            Text(checkpoint_json.to_string()),
            honest_proof.as_deref(),
        ),
        vector(
            "17-equivocation",
            17,
            "two log-signed checkpoints of size 7 with different roots",
            consistency,
            &seen_new,
            Text(forked.clone()),
            None,
        ),
        vector(
            "17b-fork",
            17,
            "a log-signed size-7 checkpoint not consistent with size 3 seen before",
            consistency,
            &seen_old,
            Text(forked.clone()),
            honest_proof.as_deref(),
        ),
        vector(
            "17c-equivocation-at-old-size",
            17,
            "a log-signed size-3 checkpoint with another root than the size 3 seen before",
            consistency,
            &seen_old,
            Text(sign_checkpoint(ORIGIN, old_size, fork_root, &key())),
            None,
        ),
        vector(
            "19-swapped-roots",
            19,
            "the consistency proof's roots swapped",
            consistency,
            &seen_old,
            Text(new_note.clone()),
            text(&swapped).as_deref(),
        ),
    ]);
    // A fork the operator made whole: entry 1 rewritten, the tree recomputed, a size-7
    // checkpoint signed, and a consistency proof from the fork's own size-3 root that is
    // valid for the fork — only the root remembered by the auditor exposes it.
    let mut leaves = export_leaves(material)[..new_size as usize].to_vec();
    leaves[1] = hash_leaf(b"entry 1, rewritten");
    let fork = tree(&leaves);
    let fork_new = tree_root(&fork, new_size);
    let fork_path = prove_consistency(&fork, old_size, new_size).unwrap().path;
    let fork_proof = json!({
        "old_size": old_size, "new_size": new_size,
        "old_root_hash": tree_root(&fork, old_size).to_hex(), "new_root_hash": fork_new.to_hex(),
        "hashes": fork_path.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
    });
    let fork_note = sign_checkpoint(ORIGIN, new_size, fork_new, &key());
    let mut bare = fork_proof.clone();
    for name in ["old_root_hash", "new_root_hash"] {
        bare.as_object_mut().unwrap().remove(name);
    }
    out.extend([
        vector(
            "17d-fork-with-its-own-proof",
            17,
            "a log-signed fork of size 7 with a consistency proof valid from the fork's own size-3 root, which it states",
            consistency,
            &seen_old,
            Text(fork_note.clone()),
            text(&fork_proof).as_deref(),
        ),
        vector(
            "17e-fork-with-bare-proof",
            17,
            "the same fork with its proof and no stated roots",
            consistency,
            &seen_old,
            Text(fork_note),
            text(&bare).as_deref(),
        ),
    ]);

    // Row 19: the proof itself.
    let hashes = proof["hashes"].as_array().unwrap().clone();
    assert_eq!(hashes.len(), 4, "3 → 7 has a four-element proof");
    let names = [
        "19b-proof-element-0-flipped",
        "19c-proof-element-1-flipped",
        "19d-proof-element-2-flipped",
        "19e-proof-element-3-flipped",
    ];
    for (i, name) in names.into_iter().enumerate() {
        let mut p = proof.clone();
        p["hashes"][i] = flip_hex(&hashes[i]);
        out.push(vector(
            name,
            19,
            "one bit of one consistency proof element flipped",
            consistency,
            &seen_old,
            Text(new_note.clone()),
            text(&p).as_deref(),
        ));
    }
    let old_root = old["root_hash"].clone();
    let shapes: [(&str, &'static str, Vec<Value>); 6] = [
        (
            "19f-proof-truncated",
            "the consistency proof's last element removed",
            hashes[..3].to_vec(),
        ),
        (
            "19g-proof-first-removed",
            "the consistency proof's first element removed",
            hashes[1..].to_vec(),
        ),
        (
            "19h-proof-trailing-element",
            "the old root appended to the consistency proof",
            [&hashes[..], std::slice::from_ref(&old_root)].concat(),
        ),
        (
            "19i-proof-preceding-element",
            "the old root put in front of the consistency proof",
            [&[old_root][..], &hashes[..]].concat(),
        ),
        (
            "19j-proof-duplicated-element",
            "the consistency proof's first element repeated",
            [&hashes[..1], &hashes[..]].concat(),
        ),
        ("19k-proof-empty", "an empty consistency proof", vec![]),
    ];
    for (name, title, h) in shapes {
        let mut p = proof.clone();
        p["hashes"] = json!(h);
        out.push(vector(
            name,
            19,
            title,
            consistency,
            &seen_old,
            Text(new_note.clone()),
            text(&p).as_deref(),
        ));
    }
    let lies: [(&str, &'static str, &str, Value); 5] = [
        (
            "19l-proof-old-size-lies",
            "the proof claims old size 4 (the auditor saw 3)",
            "old_size",
            json!(old_size + 1),
        ),
        (
            "19m-proof-new-size-lies",
            "the proof claims new size 8 (the checkpoint says 7)",
            "new_size",
            json!(new_size + 1),
        ),
        (
            "19n-stated-old-root-lies",
            "the proof states an old root other than the one remembered",
            "old_root_hash",
            json!(fork_root.to_hex()),
        ),
        (
            "19o-stated-new-root-lies",
            "the proof states a new root other than the signed one",
            "new_root_hash",
            json!(fork_root.to_hex()),
        ),
        (
            "19p-proof-unknown-member",
            "the proof carries prover-supplied `directions`",
            "directions",
            json!(["left", "right"]),
        ),
    ];
    for (name, title, member, value) in lies {
        let mut p = proof.clone();
        p[member] = value;
        out.push(vector(
            name,
            19,
            title,
            consistency,
            &seen_old,
            Text(new_note.clone()),
            text(&p).as_deref(),
        ));
    }

    // Rows 25, 27, 28: the checkpoint file and the proof file as text.
    let dup_proof = with_duplicate(proof, "", "old_size", json!(new_size));
    out.push(vector(
        "25i-proof-duplicate-member",
        25,
        "a consistency proof with `old_size` twice (7 first, the honest 3 last)",
        consistency,
        &seen_old,
        Text(new_note.clone()),
        Some(std::str::from_utf8(&dup_proof).unwrap()),
    ));
    let dup_note = with_duplicate(&checkpoint_json, "", "note", json!(forked));
    out.push(vector(
        "25j-checkpoint-json-duplicate-note",
        25,
        "checkpoint JSON with `note` twice: a log-signed fork first, the honest note last",
        &["checkpoint"],
        &seen_old,
        Text(String::from_utf8(dup_note).unwrap()),
        honest_proof.as_deref(),
    ));
    let copies: [(&str, &'static str, &str, Value); 4] = [
        (
            "27f-checkpoint-json-size-copy",
            "checkpoint JSON whose unsigned size says 8; the note says 7",
            "size",
            json!(new_size + 1),
        ),
        (
            "27g-checkpoint-json-root-copy",
            "checkpoint JSON whose unsigned root_hash is the fork's",
            "root_hash",
            json!(fork_root.to_hex()),
        ),
        (
            "27h-checkpoint-json-origin-copy",
            "checkpoint JSON whose unsigned origin names another log",
            "origin",
            json!("sworn.example/other"),
        ),
        (
            "28p-checkpoint-json-unknown-member",
            "checkpoint JSON with an unknown `witnesses` member vouching for it",
            "witnesses",
            json!(["sworn.example/witness"]),
        ),
    ];
    for (name, title, member, value) in copies {
        let mut c = checkpoint_json.clone();
        c[member] = value;
        let row = if member == "witnesses" { 28 } else { 27 };
        out.push(vector(
            name,
            row,
            title,
            &["checkpoint"],
            &seen_old,
            Text(c.to_string()),
            honest_proof.as_deref(),
        ));
    }
    let (text_part, _) = new_note.split_once("\n\n").unwrap();
    out.push(vector(
        "28n-checkpoint-extension-line",
        28,
        "a log-signed checkpoint note with an extension line, served as the newer checkpoint",
        &["checkpoint"],
        &seen_old,
        Text(hand_note(
            &format!("{text_part}\nwitnessed-by sworn.example/witness\n"),
            ORIGIN,
            &key(),
        )),
        honest_proof.as_deref(),
    ));
    let mut bytes = new_note.clone().into_bytes();
    let slash = bytes.iter().position(|&b| b == b'/').unwrap();
    bytes.splice(slash..=slash, [0xC0, 0xAF]);
    out.push(vector(
        "28o-checkpoint-not-utf8",
        28,
        "the newer note with an overlong UTF-8 encoding of '/' in its origin",
        &["checkpoint"],
        &seen_old,
        CheckpointFile::Bytes(bytes),
        honest_proof.as_deref(),
    ));
    out
}
