//! The vector type, the helpers every family shares, and the bundle rows of
//! provenance.md §7 (1–23): pure functions from the honest material (a real bundle,
//! export and proofs from the real ledger) to one vector file each. The other families
//! live in the `mutate_*` modules (see `vectors.rs`).
//!
//! Mutations that model a dishonest *log operator* re-sign with the log's key (the test
//! seed); mutations that model an outside attacker never touch it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sworn_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use sworn_ledger::entry::ErasureBody;
use sworn_ledger::keys::{LogKey, note_key_id};
use sworn_ledger::merkle::{
    Hash, MemoryTree, empty_root, hash_leaf, hash_node, prove_inclusion, root,
};

use crate::fixture::{ORIGIN, key};

/// One derived vector: its file, what it models, and what the verifier must say.
pub(crate) struct Vector {
    pub(crate) file: String,
    pub(crate) row: u32,
    pub(crate) title: &'static str,
    pub(crate) command: &'static str,
    pub(crate) failed: Vec<&'static str>,
    /// Extra `layer → status` expectations.
    pub(crate) outcomes: Vec<(&'static str, &'static str)>,
    /// For audits: finding kinds that must appear (with the index they name).
    pub(crate) findings: Vec<(&'static str, Option<u64>)>,
    /// Needs a live chain (run by the Anvil tests, not offline).
    pub(crate) needs_chain: bool,
    pub(crate) content: Vec<u8>,
    /// For `content`: the prompt file disclosed beside the bundle (name, bytes).
    pub(crate) prompt: Option<(String, Vec<u8>)>,
    /// For `content`: the response file disclosed beside the bundle (name, bytes).
    pub(crate) response: Option<(String, Vec<u8>)>,
}

impl Vector {
    /// A `receipt` vector (`NAME.bundle.json`) failing exactly the `failed` layers. Without
    /// a chain, anchor and finality must be skipped, never ok; a bundle that is refused
    /// outright has no other layer.
    pub(crate) fn receipt(
        file: &str,
        row: u32,
        title: &'static str,
        failed: &[&'static str],
        content: Vec<u8>,
    ) -> Vector {
        let outcomes = if failed.contains(&"bundle") {
            vec![("bundle", "failed")]
        } else {
            vec![("anchor", "skipped"), ("finality", "skipped")]
        };
        Vector {
            file: format!("{file}.bundle.json"),
            row,
            title,
            command: "receipt",
            failed: failed.to_vec(),
            outcomes,
            findings: vec![],
            needs_chain: false,
            content,
            prompt: None,
            response: None,
        }
    }

    /// A further `layer → status` expectation.
    pub(crate) fn expect(mut self, layer: &'static str, status: &'static str) -> Vector {
        self.outcomes.push((layer, status));
        self
    }
}

pub(crate) fn pretty(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(&sworn_ledger::jcs::sorted(v)).unwrap();
    out.push(b'\n');
    out
}

/// An outside attacker's key (and the key of "another log" where one is needed).
pub(crate) fn attacker() -> LogKey {
    LogKey::from_seed([0x66; 32])
}

pub(crate) fn hash(v: &Value) -> Hash {
    Hash::from_hex(v.as_str().unwrap()).unwrap()
}

pub(crate) fn sign_checkpoint(origin: &str, size: u64, root: Hash, with: &LogKey) -> String {
    SignedCheckpoint::sign(Checkpoint::new(origin, size, root), with)
        .unwrap()
        .note
}

/// A signed note over any `text`, built by hand: `sign_note` refuses malformed texts, and
/// a dishonest operator's tools need not.
pub(crate) fn hand_note(text: &str, name: &str, with: &LogKey) -> String {
    format!("{text}\n{}\n", signature_line(text, name, with))
}

/// The signature line `— name base64(key id ‖ signature)` over `text`.
pub(crate) fn signature_line(text: &str, name: &str, with: &LogKey) -> String {
    let mut blob = note_key_id(name, &with.public_key_bytes()).to_vec();
    blob.extend_from_slice(&with.sign(text.as_bytes()).to_bytes());
    format!("\u{2014} {name} {}", BASE64.encode(blob))
}

pub(crate) fn set_checkpoint(bundle: &mut Value, size: u64, root: Hash, note: &str) {
    bundle["checkpoint"] = json!({"size": size, "root_hash": root.to_hex(), "note": note});
}

/// Adds ℓ (the group order) to the S half of a signature: same value mod ℓ, non-canonical.
pub(crate) fn non_canonical_s(sig: &[u8]) -> Vec<u8> {
    const ELL: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = sig.to_vec();
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(out[32 + i]) + u16::from(ELL[i]) + carry;
        out[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

pub(crate) fn sign_b64(with: &LogKey, body: &str) -> String {
    BASE64.encode(with.sign(body.as_bytes()).to_bytes())
}

pub(crate) fn with_body(bundle: &mut Value, body: &str, signer: &LogKey) {
    bundle["receipt"]["body"] = json!(body);
    bundle["receipt"]["signature"] = json!(sign_b64(signer, body));
    bundle["receipt"]["leaf_hash"] = json!(hash_leaf(body.as_bytes()).to_hex());
}

/// `hex` with bit 3 of its first byte flipped.
pub(crate) fn flip_hex(hex: &Value) -> Value {
    let mut h = hash(hex);
    h.0[0] ^= 0x08;
    json!(h.to_hex())
}

/// `b64` (standard base64) with bit 3 of byte `at` flipped.
pub(crate) fn flip_b64(b64: &Value, at: usize) -> Value {
    let mut bytes = BASE64.decode(b64.as_str().unwrap()).unwrap();
    bytes[at] ^= 0x08;
    json!(BASE64.encode(bytes))
}

/// Placeholder member name that sorts before every real one (serde_json's maps are
/// ordered), so the duplicate it becomes comes *first* and the honest member last.
const DUP: &str = "!dup!";

/// `v` as pretty JSON with a second member `name` in the object at `pointer`, written
/// before the existing one and holding `first`: a reader keeping the last member sees the
/// honest document, one keeping the first sees `first`.
pub(crate) fn with_duplicate(v: &Value, pointer: &str, name: &str, first: Value) -> Vec<u8> {
    let mut v = v.clone();
    let object = v.pointer_mut(pointer).unwrap().as_object_mut().unwrap();
    assert!(object.contains_key(name), "{pointer} has no {name}");
    object.insert(DUP.into(), first);
    let text = String::from_utf8(pretty(&v)).unwrap();
    let placeholder = format!("\"{DUP}\"");
    assert_eq!(text.matches(&placeholder).count(), 1);
    text.replacen(&placeholder, &json!(name).to_string(), 1)
        .into_bytes()
}

/// The export's entry lines, in order: `(index, body, signature)`.
pub(crate) fn export_entries(material: &Value) -> Vec<(u64, String, String)> {
    material["export"]
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "entry")
        .map(|v| {
            (
                v["index"].as_u64().unwrap(),
                v["body"].as_str().unwrap().to_string(),
                v["signature"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The leaf hashes of every entry of the export, in order.
pub(crate) fn export_leaves(material: &Value) -> Vec<Hash> {
    export_entries(material)
        .iter()
        .map(|(_, body, _)| hash_leaf(body.as_bytes()))
        .collect()
}

/// A tree over `leaves` (to recompute what a dishonest operator would serve).
pub(crate) fn tree(leaves: &[Hash]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for leaf in leaves {
        t.push(*leaf);
    }
    t
}

/// The root of the first `size` leaves of `t`.
pub(crate) fn tree_root(t: &MemoryTree, size: u64) -> Hash {
    root(t, size).unwrap()
}

/// An inclusion section for `index` in the first `size` leaves of `t`.
pub(crate) fn inclusion_json(t: &MemoryTree, index: u64, size: u64) -> Value {
    let proof = prove_inclusion(t, index, size).unwrap();
    json!({
        "index": index,
        "tree_size": size,
        "hashes": proof.path.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
    })
}

/// The material's erasure event (entry 7, erasing receipt 2), parsed.
pub(crate) fn erasure_event(material: &Value) -> ErasureBody {
    let body = &material["erased"]["bundle"]["erasure"]["entry"]["body"];
    serde_json::from_str(body.as_str().unwrap()).unwrap()
}

/// The canonical bytes of an erasure event, as text.
pub(crate) fn erasure_text(event: &ErasureBody) -> String {
    String::from_utf8(event.to_canonical_bytes().unwrap()).unwrap()
}

/// All vectors, from the honest material.
pub(crate) fn derive(material: &Value) -> Vec<Vector> {
    let honest = &material["bundle"];
    let mut out = Vec::new();
    let mut receipt =
        |file: &str, row, title, failed: Vec<&'static str>, f: &dyn Fn(&mut Value)| {
            let mut b = honest.clone();
            f(&mut b);
            out.push(Vector::receipt(file, row, title, &failed, pretty(&b)));
        };
    let path = honest["inclusion"]["hashes"].as_array().unwrap().clone();
    let body = honest["receipt"]["body"].as_str().unwrap().to_string();
    let leaf = hash_leaf(body.as_bytes());
    let size = honest["checkpoint"]["size"].as_u64().unwrap();

    receipt("00-honest", 0, "the honest bundle", vec![], &|_| {});
    receipt(
        "01-forged-signature",
        1,
        "one bit of the signature flipped",
        vec!["signature"],
        &|b| {
            let mut sig = BASE64
                .decode(b["receipt"]["signature"].as_str().unwrap())
                .unwrap();
            sig[10] ^= 0x08;
            b["receipt"]["signature"] = json!(BASE64.encode(sig));
        },
    );
    receipt(
        "01b-body-bit-flip",
        1,
        "one character of the body changed (prompt tokens 12 → 13), hash field left as is",
        vec!["signature", "inclusion"],
        &|b| {
            let body = b["receipt"]["body"]
                .as_str()
                .unwrap()
                .replace("\"tokens\":12", "\"tokens\":13");
            b["receipt"]["body"] = json!(body);
        },
    );
    receipt(
        "02-wrong-key",
        2,
        "a valid signature by an attacker's key, not the pinned one",
        vec!["signature"],
        &|b| {
            let sig = attacker().sign(b["receipt"]["body"].as_str().unwrap().as_bytes());
            b["receipt"]["signature"] = json!(BASE64.encode(sig.to_bytes()));
        },
    );
    receipt(
        "03-non-canonical-s",
        3,
        "signature with S + ℓ (same value mod ℓ, non-canonical encoding)",
        vec!["signature"],
        &|b| {
            let sig = BASE64
                .decode(b["receipt"]["signature"].as_str().unwrap())
                .unwrap();
            b["receipt"]["signature"] = json!(BASE64.encode(non_canonical_s(&sig)));
        },
    );
    receipt(
        "04-non-canonical-body",
        4,
        "the body re-serialised with whitespace and signed as such by the log key",
        vec!["signature", "inclusion"],
        &|b| {
            let spaced = body.replacen('{', "{ ", 1);
            with_body(b, &spaced, &key());
        },
    );
    receipt(
        "05-wrong-index-path",
        5,
        "the inclusion path of index 5 presented for index 6 (leafIdx-1)",
        vec!["inclusion"],
        &|b| b["inclusion"]["hashes"] = material["sibling_hashes"].clone(),
    );
    receipt(
        "05b-wrong-index-field",
        5,
        "the proof says index 5",
        vec!["inclusion"],
        &|b| b["inclusion"]["index"] = json!(5),
    );
    receipt(
        "06-tree-size-doubled",
        6,
        "the proof claims tree size ×2",
        vec!["inclusion"],
        &|b| b["inclusion"]["tree_size"] = json!(size * 2),
    );
    receipt(
        "06b-tree-size-halved-resigned",
        6,
        "proof and a log-signed checkpoint both claim size /2 with the real root",
        vec!["inclusion"],
        &|b| {
            let root = hash(&b["checkpoint"]["root_hash"]);
            b["inclusion"]["tree_size"] = json!(size / 2 + 1);
            set_checkpoint(
                b,
                size / 2 + 1,
                root,
                &sign_checkpoint(ORIGIN, size / 2 + 1, root, &key()),
            );
        },
    );
    receipt(
        "07-truncated-proof",
        7,
        "last path element removed",
        vec!["inclusion"],
        &|b| {
            b["inclusion"]["hashes"].as_array_mut().unwrap().pop();
        },
    );
    receipt(
        "08-inserted-component",
        8,
        "an extra element appended",
        vec!["inclusion"],
        &|b| {
            b["inclusion"]["hashes"]
                .as_array_mut()
                .unwrap()
                .push(json!(leaf.to_hex()));
        },
    );
    receipt(
        "08b-preceding-garbage",
        8,
        "an extra element in front",
        vec!["inclusion"],
        &|b| {
            b["inclusion"]["hashes"]
                .as_array_mut()
                .unwrap()
                .insert(0, json!(leaf.to_hex()));
        },
    );
    receipt(
        "09-short-element",
        9,
        "a 31-byte path element",
        vec!["inclusion"],
        &|b| {
            let short = &path[0].as_str().unwrap()[..62];
            b["inclusion"]["hashes"][0] = json!(short);
        },
    );
    receipt(
        "09b-oversized-path",
        9,
        "a path of 65 elements",
        vec!["inclusion"],
        &|b| {
            b["inclusion"]["hashes"] = json!(vec![leaf.to_hex(); 65]);
        },
    );
    receipt(
        "09c-uppercase-hex",
        9,
        "an element in upper-case hex",
        vec!["inclusion"],
        &|b| {
            let upper = path[0].as_str().unwrap().to_uppercase();
            b["inclusion"]["hashes"][0] = json!(upper);
        },
    );
    receipt(
        "10-leaf-node-confusion",
        10,
        "leaf_hash replaced by the inner node over the leaf, path shortened to match",
        vec!["signature", "inclusion"],
        &|b| {
            let node = hash_node(&hash(&path[0]), &leaf);
            b["receipt"]["leaf_hash"] = json!(node.to_hex());
            b["inclusion"]["hashes"] = json!([path[1].clone()]);
        },
    );
    receipt(
        "11-duplicated-last-leaf",
        11,
        "Bitcoin-style tree (last leaf duplicated) signed by the log: path [leaf, H(4,5), H(0..4)]",
        vec!["inclusion"],
        &|b| {
            let (h45, h03) = (hash(&path[0]), hash(&path[1]));
            let root = hash_node(&h03, &hash_node(&h45, &hash_node(&leaf, &leaf)));
            b["inclusion"]["hashes"] = json!([leaf.to_hex(), h45.to_hex(), h03.to_hex()]);
            set_checkpoint(b, size, root, &sign_checkpoint(ORIGIN, size, root, &key()));
        },
    );
    receipt(
        "12-checkpoint-other-origin",
        12,
        "checkpoint signed by the log key under another origin",
        vec!["checkpoint"],
        &|b| {
            let root = hash(&b["checkpoint"]["root_hash"]);
            let note = sign_checkpoint("sworn.example/other", size, root, &key());
            set_checkpoint(b, size, root, &note);
        },
    );
    receipt(
        "12b-unsigned-checkpoint",
        12,
        "checkpoint note without its signature line",
        vec!["checkpoint"],
        &|b| {
            let note = b["checkpoint"]["note"].as_str().unwrap();
            let text = note.split("\n\n").next().unwrap().to_string() + "\n";
            b["checkpoint"]["note"] = json!(text);
        },
    );
    receipt(
        "12c-checkpoint-attacker-key",
        12,
        "checkpoint for the right origin signed by an attacker's key",
        vec!["checkpoint"],
        &|b| {
            let root = hash(&b["checkpoint"]["root_hash"]);
            set_checkpoint(
                b,
                size,
                root,
                &sign_checkpoint(ORIGIN, size, root, &attacker()),
            );
        },
    );
    receipt(
        "15-replayed-receipt",
        15,
        "the same receipt presented again: valid alone; the report gives its log index and leaf hash for dedup",
        vec![],
        &|_| {},
    );
    receipt(
        "20-switched-identity",
        20,
        "the bundle's unsigned `log` member names another origin",
        vec!["signature"],
        &|b| b["receipt"]["log"] = json!("sworn.example/other"),
    );
    receipt(
        "20b-other-log-entirely",
        20,
        "a whole bundle of another log (its own origin and key), checked against the pinned log",
        vec!["signature", "inclusion", "checkpoint"],
        &|b| {
            let other = "sworn.example/other";
            let spoof = body.replace(ORIGIN, other);
            with_body(b, &spoof, &attacker());
            b["receipt"]["log"] = json!(other);
            let root = hash(&b["checkpoint"]["root_hash"]);
            set_checkpoint(
                b,
                size,
                root,
                &sign_checkpoint(other, size, root, &attacker()),
            );
        },
    );
    receipt(
        "21-hybrid-proof",
        21,
        "a proof carrying prover-supplied directions",
        vec!["inclusion"],
        &|b| b["inclusion"]["directions"] = json!(["left", "left"]),
    );
    receipt(
        "22-claimed-finality",
        22,
        "an anchor record claiming finality; without a chain the anchor layer is skipped, never ok",
        vec![],
        &|b| {
            b["anchor"] = json!({
                "seq": 1, "chain_id": 31337,
                "contract": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
                "log_id": format!("0x{}", "00".repeat(32)),
                "tree_size": size, "root": format!("0x{}", "00".repeat(32)),
                "checkpoint_hash": format!("0x{}", "00".repeat(32)),
                "tx_hash": format!("0x{}", "11".repeat(32)), "nonce": 0,
                "state": "finalized", "block_number": 3,
                "block_hash": format!("0x{}", "22".repeat(32)), "resubmissions": 0
            })
        },
    );
    receipt(
        "23-empty-tree",
        23,
        "proof against an empty tree: log-signed size-0 checkpoint with SHA-256(\"\")",
        vec!["inclusion"],
        &|b| {
            b["inclusion"] = json!({"index": 6, "tree_size": 0, "hashes": []});
            set_checkpoint(
                b,
                0,
                empty_root(),
                &sign_checkpoint(ORIGIN, 0, empty_root(), &key()),
            );
        },
    );
    out.extend(chain_vectors(material));
    out.extend(crate::mutate_body::body_vectors(material));
    out.extend(crate::mutate_proof::proof_vectors(material));
    out.extend(crate::mutate_note::note_vectors(material));
    out.extend(crate::mutate_bundle::bundle_vectors(material));
    out.extend(crate::mutate_content::content_vectors(material));
    out.extend(crate::mutate_checkpoint::checkpoint_vectors(material));
    out.extend(crate::mutate_export::export_vectors(material));
    out
}

fn chain_vectors(material: &Value) -> Vec<Vector> {
    let mut b = material["bundle"].clone();
    let size = b["checkpoint"]["size"].as_u64().unwrap();
    b["anchor"] = json!({
        "seq": 1, "chain_id": 1,
        "contract": "0x000000000000000000000000000000000000dead",
        "log_id": format!("0x{}", "00".repeat(32)), "tree_size": size,
        "root": format!("0x{}", "00".repeat(32)), "checkpoint_hash": format!("0x{}", "00".repeat(32)),
        "tx_hash": format!("0x{}", "11".repeat(32)), "nonce": 0, "state": "submitted", "resubmissions": 0
    });
    vec![Vector {
        file: "13-anchor-other-chain.bundle.json".into(),
        row: 13,
        title: "anchor record on another chain id and contract (checked against a live chain)",
        command: "receipt",
        failed: vec!["anchor"],
        outcomes: vec![],
        findings: vec![],
        needs_chain: true,
        content: pretty(&b),
        prompt: None,
        response: None,
    }]
}
