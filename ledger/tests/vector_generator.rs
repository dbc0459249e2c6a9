//! The generator of Sworn's known-answer vectors (`tests/vectors/*.json`), from a fixed
//! seed key. `known_answers` checks the files are exactly its output and that the library
//! agrees with every case.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sworn_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use sworn_ledger::commitment::{Domain, Salt, commit};
use sworn_ledger::entry::{ErasedRef, ErasureBody, ErasureKind, SignedEntry};
use sworn_ledger::jcs;
use sworn_ledger::keys::{LogKey, PinnedKey};
use sworn_ledger::merkle::{MemoryTree, hash_leaf, prove_consistency, prove_inclusion, root};
use sworn_ledger::note::sign_note;
use sworn_ledger::receipt::{
    ModelInfo, ParamValue, PromptInfo, ReceiptBody, ReceiptKind, ResponseInfo,
};

/// Fixed seed of the vectors' log key (bytes 0, 1, …, 31).
const SEED: [u8; 32] = {
    let mut s = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        s[i] = i as u8;
        i += 1;
    }
    s
};
pub(crate) const ORIGIN: &str = "sworn.example/vectors";

pub(crate) fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn key() -> LogKey {
    LogKey::from_seed(SEED)
}

fn other_key() -> LogKey {
    LogKey::from_seed([0xee; 32])
}

fn pinned() -> PinnedKey {
    key().pinned(ORIGIN).unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(&sworn_ledger::jcs::sorted(v)).unwrap() + "\n"
}

// ---------------------------------------------------------------------------- jcs

fn jcs_vectors() -> Value {
    let cases = [
        ("sorted-members", r#"{"b":1,"a":{"d":true,"c":null}}"#),
        (
            "utf16-member-order",
            "{\"\u{fb01}\":1,\"\u{1f600}\":2,\"z\":3}",
        ),
        ("whitespace-removed", "{ \"a\" : [ 1 , 2 ] }"),
        ("escapes", r#"["\u0041\u00e9\u2028\n\t\u001f\"\\/"]"#),
        ("integers", "[0,-1,9007199254740991,-9007199254740991]"),
        ("empty-containers", r#"{"a":[],"b":{}}"#),
    ];
    let happy: Vec<Value> = cases
        .iter()
        .map(|(name, input)| {
            let v: Value = serde_json::from_str(input).unwrap();
            json!({"name": name, "input": input, "canonical": text(&jcs::canonicalize(&v).unwrap())})
        })
        .collect();
    let refused = [
        ("float", "[1.5]", "float"),
        ("float-integral", "[1.0]", "float"),
        ("exponent", "[1e3]", "float"),
        ("beyond-safe-integer", "[9007199254740992]", "integer_range"),
    ];
    let refused: Vec<Value> = refused
        .iter()
        .map(|(name, input, error)| json!({"name": name, "input": input, "error": error}))
        .collect();
    let not_canonical = [
        ("unsorted", r#"{"b":1,"a":2}"#),
        ("space", r#"{"a": 1}"#),
        ("trailing-newline", "{\"a\":1}\n"),
        ("duplicate-member", r#"{"a":1,"a":1}"#),
        ("escaped-ascii", r#"["\u0061"]"#),
        ("uppercase-escape", r#"["\u001F"]"#),
        ("solidus-escaped", r#"["\/"]"#),
        ("negative-zero", "[-0]"),
    ];
    let not_canonical: Vec<Value> = not_canonical
        .iter()
        .map(|(name, input)| json!({"name": name, "input": input}))
        .collect();
    json!({
        "description": "RFC 8785 for Sworn's JSON subset. `happy`: canonicalize(input) == canonical. \
                        `refused`: canonicalize must fail (error names the reason). \
                        `not_canonical`: input is JSON but not canonical; a strict parser must refuse it.",
        "happy": happy,
        "refused": refused,
        "not_canonical": not_canonical,
    })
}

// ---------------------------------------------------------------------- commitments

fn commitment_vectors() -> Value {
    let salt = Salt([0x11; 32]);
    let prompt = br#"[{"content":"What is 2+2?","role":"user"}]"#;
    let response = "2 + 2 = 4. ✓".as_bytes();
    let case = |name: &str, domain: Domain, salt: &Salt, content: &[u8]| {
        json!({
            "name": name,
            "domain": text(domain.label()),
            "salt": salt.to_hex(),
            "content_hex": hex::encode(content),
            "commitment": commit(domain, salt, content).to_hex(),
        })
    };
    let happy = vec![
        case("prompt", Domain::Prompt, &salt, prompt),
        case("response", Domain::Response, &salt, response),
        case("empty-content", Domain::Response, &Salt([0; 32]), b""),
    ];
    let good = commit(Domain::Prompt, &salt, prompt).to_hex();
    let mut flipped_salt = salt;
    flipped_salt.0[0] ^= 1;
    let mut flipped_content = prompt.to_vec();
    flipped_content[3] ^= 1;
    let corrupt = |name: &str, domain: Domain, salt: &Salt, content: &[u8]| {
        json!({
            "name": name,
            "domain": text(domain.label()),
            "salt": salt.to_hex(),
            "content_hex": hex::encode(content),
            "commitment": good,
            "expect": "mismatch",
        })
    };
    let corruptions = vec![
        corrupt("wrong-domain", Domain::Response, &salt, prompt),
        corrupt("salt-bit-flip", Domain::Prompt, &flipped_salt, prompt),
        corrupt("content-bit-flip", Domain::Prompt, &salt, &flipped_content),
        corrupt(
            "content-truncated",
            Domain::Prompt,
            &salt,
            &prompt[..prompt.len() - 1],
        ),
    ];
    json!({
        "description": "commitment = SHA-256(domain ‖ 0x00 ‖ salt ‖ content). Each corruption keeps the \
                        happy prompt commitment and changes one input: it must not open.",
        "happy": happy,
        "corruptions": corruptions,
    })
}

// ------------------------------------------------------------------------ receipts

fn receipt_body(index: u64, request_id: &str, tenant: &str, tokens: u64) -> ReceiptBody {
    let mut params = BTreeMap::new();
    params.insert("max_tokens".to_string(), ParamValue::Int(64));
    params.insert("seed".to_string(), ParamValue::Int(-7));
    params.insert("stream".to_string(), ParamValue::Bool(false));
    params.insert("temperature".to_string(), ParamValue::Str("0.7".into()));
    params.insert("top_p".to_string(), ParamValue::Str("1".into()));
    ReceiptBody {
        v: 1,
        kind: ReceiptKind::Receipt,
        log: ORIGIN.into(),
        index,
        time: format!("2026-11-27T12:00:0{index}.{:06}Z", 123_456 + index),
        request_id: request_id.into(),
        tenant: tenant.into(),
        model: ModelInfo {
            id: "SmolLM2-135M-Instruct".into(),
            sha256: hex::encode(hash_leaf(b"weights").0),
            dtype: "f32".into(),
            device: "cpu".into(),
            engine: "sworn 0.1.0".into(),
            libtorch: "2.11.0".into(),
        },
        params,
        prompt: PromptInfo {
            commitment: commit(Domain::Prompt, &Salt([index as u8; 32]), b"prompt"),
            tokens,
        },
        response: ResponseInfo {
            commitment: commit(
                Domain::Response,
                &Salt([0x80 | index as u8; 32]),
                b"response",
            ),
            tokens: tokens * 2,
            finish_reason: "stop".into(),
        },
    }
}

fn signed(key: &LogKey, index: u64, body: Vec<u8>) -> SignedEntry {
    SignedEntry {
        index,
        signature: key.sign(&body),
        body,
    }
}

fn bundle(entry: &SignedEntry, leaf_override: Option<String>, log: &str) -> Value {
    json!({
        "v": 1,
        "log": log,
        "index": entry.index,
        "leaf_hash": leaf_override.unwrap_or_else(|| entry.leaf_hash().to_hex()),
        "body": text(&entry.body),
        "signature": BASE64.encode(entry.signature.to_bytes()),
        "salts": Value::Null,
    })
}

/// `s + ℓ` for a little-endian scalar `s` (a non-canonical encoding of the same S).
fn add_group_order(s: &[u8]) -> Vec<u8> {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = vec![0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(s[i]) + u16::from(L[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

fn receipt_entries() -> Vec<SignedEntry> {
    let k = key();
    let r0 = receipt_body(0, "req-0001", "team-a", 12);
    let r1 = receipt_body(1, "req-0002", "équipe-α", 30);
    let r2 = receipt_body(2, "req-0003", "team-a", 5);
    let mut entries: Vec<SignedEntry> = [r0, r1, r2]
        .iter()
        .enumerate()
        .map(|(i, b)| signed(&k, i as u64, b.to_canonical_bytes().unwrap()))
        .collect();
    let erasure = ErasureBody {
        v: 1,
        kind: ErasureKind::Erasure,
        log: ORIGIN.into(),
        index: 3,
        time: "2026-11-27T12:00:09.000000Z".into(),
        erased: ErasedRef {
            index: 1,
            leaf_hash: entries[1].leaf_hash(),
        },
    };
    entries.push(signed(&k, 3, erasure.to_canonical_bytes().unwrap()));
    entries
}

fn receipt_vectors() -> Value {
    let k = key();
    let entries = receipt_entries();
    let happy: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "index": e.index,
                "body": text(&e.body),
                "body_hex": hex::encode(&e.body),
                "leaf_hash": e.leaf_hash().to_hex(),
                "signature": BASE64.encode(e.signature.to_bytes()),
                "bundle": bundle(e, None, ORIGIN),
            })
        })
        .collect();
    let good = &entries[0];
    let body = text(&good.body);
    let mut corruptions = Vec::new();
    let mut add = |name: &str, bundle: Value, layer: &str| {
        corruptions.push(json!({"name": name, "bundle": bundle, "expect_layer": layer}));
    };
    let mut sig = good.signature.to_bytes();
    sig[10] ^= 0x04;
    let mut b = bundle(good, None, ORIGIN);
    b["signature"] = json!(BASE64.encode(sig));
    add("signature-bit-flip", b, "signature");

    let tampered = body.replacen("\"tokens\":12", "\"tokens\":13", 1);
    let e = SignedEntry {
        body: tampered.into_bytes(),
        ..good.clone()
    };
    add(
        "body-changed-signature-kept",
        bundle(&e, None, ORIGIN),
        "signature",
    );

    for (name, text_body) in [
        ("body-whitespace", body.replacen("{", "{ ", 1)),
        (
            "body-member-order",
            body.replacen(
                "{\"index\":0,\"kind\":\"receipt\"",
                "{\"kind\":\"receipt\",\"index\":0",
                1,
            ),
        ),
        (
            "body-float",
            body.replacen("\"tokens\":12", "\"tokens\":12.0", 1),
        ),
        (
            "body-duplicate-member",
            body.replacen("{\"index\":0,", "{\"index\":0,\"index\":0,", 1),
        ),
        (
            "body-escaped-ascii",
            body.replacen("\"stop\"", "\"\\u0073top\"", 1),
        ),
    ] {
        // Re-signed by the right key: only canonical form is wrong.
        let e = signed(&k, 0, text_body.into_bytes());
        add(name, bundle(&e, None, ORIGIN), "canonical");
    }
    let extra = body.replacen("\"index\":0,", "\"extra\":1,\"index\":0,", 1);
    add(
        "body-unknown-member",
        bundle(&signed(&k, 0, extra.into_bytes()), None, ORIGIN),
        "schema",
    );
    let v2 = body.replacen("\"v\":1", "\"v\":2", 1);
    add(
        "body-version-2",
        bundle(&signed(&k, 0, v2.into_bytes()), None, ORIGIN),
        "schema",
    );

    let mut b = bundle(good, None, ORIGIN);
    b["index"] = json!(1);
    add("wrong-index", b, "index");
    add(
        "wrong-key",
        bundle(&signed(&other_key(), 0, good.body.clone()), None, ORIGIN),
        "signature",
    );
    let other_origin = body.replacen(ORIGIN, "sworn.example/other", 1);
    add(
        "wrong-origin",
        bundle(
            &signed(&k, 0, other_origin.into_bytes()),
            None,
            "sworn.example/other",
        ),
        "origin",
    );
    add(
        "leaf-hash-mismatch",
        bundle(good, Some(entries[1].leaf_hash().to_hex()), ORIGIN),
        "leaf_hash",
    );
    let mut malleated = good.signature.to_bytes().to_vec();
    let s = add_group_order(&malleated[32..]);
    malleated[32..].copy_from_slice(&s);
    let mut b = bundle(good, None, ORIGIN);
    b["signature"] = json!(BASE64.encode(&malleated));
    add("signature-s-plus-group-order", b, "signature");
    let mut b = bundle(good, None, ORIGIN);
    b["signature"] = json!(BASE64.encode(&good.signature.to_bytes()[..63]));
    add("signature-truncated", b, "malformed");
    add(
        "erasure-event-as-receipt",
        bundle(&entries[3], None, ORIGIN),
        "kind",
    );

    let mut identity = [0u8; 32];
    identity[0] = 1;
    json!({
        "description": "Signed entries under a fixed seed key. Verify a bundle with the pinned key: \
                        body must be canonical v1 for this origin at the bundle's index, leaf_hash = \
                        SHA-256(0x00 ‖ body), Ed25519 verify_strict over the body bytes. Each corruption \
                        names the first layer that must reject it.",
        "origin": ORIGIN,
        "seed_hex": hex::encode(SEED),
        "public_key_hex": hex::encode(k.public_key_bytes()),
        "verifier_key": pinned().to_vkey(),
        "happy": happy,
        "corruptions": corruptions,
        "weak_public_keys_hex": [hex::encode(identity), hex::encode([0u8; 32])],
    })
}

// --------------------------------------------------------------------- checkpoints

fn checkpoint_vectors() -> Value {
    let k = key();
    let entries = receipt_entries();
    let mut tree = MemoryTree::new();
    for e in &entries {
        tree.push(e.leaf_hash());
    }
    let size = tree.size();
    let r = root(&tree, size).unwrap();
    let good = SignedCheckpoint::sign(Checkpoint::new(ORIGIN, size, r), &k).unwrap();
    let (text_part, sig_part) = good.note.split_once("\n\n").unwrap();
    let other_sig = sign_note(&format!("{text_part}\n"), "witness.example", &other_key()).unwrap();
    let cosigned = format!("{}{}", good.note, other_sig.split_once("\n\n").unwrap().1);
    let resign = |t: &str| sign_note(t, ORIGIN, &k).unwrap();
    let mut corruptions = Vec::new();
    let mut add = |name: &str, note: String, layer: &str| {
        corruptions.push(json!({"name": name, "note": note, "expect_layer": layer}));
    };
    add(
        "size-tampered",
        good.note
            .replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1),
        "signature",
    );
    add(
        "root-tampered",
        good.note
            .replacen(&r.to_base64(), &hash_leaf(b"x").to_base64(), 1),
        "signature",
    );
    let mut blob = BASE64
        .decode(sig_part.rsplit_once(' ').unwrap().1.trim_end())
        .unwrap();
    blob[10] ^= 1;
    add(
        "signature-bit-flip",
        format!(
            "{text_part}\n\n\u{2014} {ORIGIN} {}\n",
            BASE64.encode(&blob)
        ),
        "signature",
    );
    add(
        "signed-by-other-key",
        sign_note(&format!("{text_part}\n"), ORIGIN, &other_key()).unwrap(),
        "no_pinned_signature",
    );
    add(
        "other-origin-line",
        resign(&format!("sworn.example/other\n{size}\n{}\n", r.to_base64())),
        "origin",
    );
    add("no-signature", format!("{text_part}\n\n"), "note_format");
    add(
        "carriage-return",
        good.note.replacen('\n', "\r\n", 1),
        "note_format",
    );
    add(
        "size-leading-zero",
        resign(&format!("{ORIGIN}\n0{size}\n{}\n", r.to_base64())),
        "checkpoint_format",
    );
    add(
        "root-short",
        resign(&format!("{ORIGIN}\n{size}\nAAAA\n")),
        "checkpoint_format",
    );
    add(
        "missing-root-line",
        resign(&format!("{ORIGIN}\n{size}\n")),
        "checkpoint_format",
    );
    json!({
        "description": "C2SP tlog-checkpoint as a C2SP signed note, key name = origin, Ed25519 key id = \
                        SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[:4]. Verify with the pinned verifier key and \
                        expected origin. `cosigned` adds an unknown signer, which must be ignored.",
        "origin": ORIGIN,
        "verifier_key": pinned().to_vkey(),
        "key_id_hex": hex::encode(pinned().key_id()),
        "happy": {"size": size, "root_hex": r.to_hex(), "root_base64": r.to_base64(), "note": good.note,
                  "note_sha256_hex": hex::encode(good.note_hash())},
        "cosigned": cosigned,
        "corruptions": corruptions,
    })
}

// ----------------------------------------------------------------------------- log

fn log_vectors() -> Value {
    let entries = receipt_entries();
    let mut tree = MemoryTree::new();
    for e in &entries {
        tree.push(e.leaf_hash());
    }
    let n = tree.size();
    let roots: Vec<Value> = (0..=n)
        .map(|s| json!({"size": s, "root_hex": root(&tree, s).unwrap().to_hex()}))
        .collect();
    let inclusion: Vec<Value> = (0..n)
        .map(|i| {
            let p = prove_inclusion(&tree, i, n).unwrap();
            json!({"index": i, "size": n, "leaf_hash": entries[i as usize].leaf_hash().to_hex(),
                   "path": p.path.iter().map(|h| h.to_hex()).collect::<Vec<_>>()})
        })
        .collect();
    let consistency: Vec<Value> = (1..n)
        .map(|m| {
            let p = prove_consistency(&tree, m, n).unwrap();
            json!({"old_size": m, "new_size": n, "path": p.path.iter().map(|h| h.to_hex()).collect::<Vec<_>>()})
        })
        .collect();
    json!({
        "description": "The receipts.json entries in order (three receipts, then the erasure of entry 1) \
                        as an RFC 9162 tree: every root, every inclusion proof at the full size, every \
                        consistency proof to the full size. Hashes are lowercase hex.",
        "leaf_hashes": entries.iter().map(|e| e.leaf_hash().to_hex()).collect::<Vec<_>>(),
        "roots": roots,
        "inclusion": inclusion,
        "consistency": consistency,
    })
}

pub(crate) fn generate() -> Vec<(&'static str, String)> {
    vec![
        ("jcs.json", pretty(&jcs_vectors())),
        ("commitments.json", pretty(&commitment_vectors())),
        ("receipts.json", pretty(&receipt_vectors())),
        ("checkpoints.json", pretty(&checkpoint_vectors())),
        ("log.json", pretty(&log_vectors())),
    ]
}
