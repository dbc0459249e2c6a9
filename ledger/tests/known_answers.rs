//! Sworn's own known-answer vectors (`tests/vectors/*.json`): canonical bytes,
//! commitments, receipts (leaf hashes, signatures), checkpoints and a small log — each
//! happy path with named corruptions beside it. The verifier and the contract tests read
//! the same files.
//!
//! The files are produced by `vector_generator::generate()` from a fixed seed key;
//! `vectors_are_what_the_generator_produces` keeps them in step. To regenerate after a
//! deliberate change: `cargo test -p sworn-ledger --test tests -- --ignored regenerate_vectors`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sworn_ledger::checkpoint::SignedCheckpoint;
use sworn_ledger::commitment::{Commitment, Domain, Salt};
use sworn_ledger::entry::{EntryError, Receipt, ReceiptJson, ReceiptSalts, SignedEntry};
use sworn_ledger::jcs;
use sworn_ledger::keys::PinnedKey;
use sworn_ledger::receipt::BodyError;

use crate::vector_generator::{ORIGIN, generate, text, vectors_dir};

#[test]
#[ignore = "writes tests/vectors; run by hand after a deliberate format change"]
fn regenerate_vectors() {
    std::fs::create_dir_all(vectors_dir()).unwrap();
    for (name, content) in generate() {
        std::fs::write(vectors_dir().join(name), content).unwrap();
    }
}

#[test]
fn vectors_are_what_the_generator_produces() {
    for (name, content) in generate() {
        let on_disk = std::fs::read_to_string(vectors_dir().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e} (run the regenerate_vectors test)"));
        assert!(
            on_disk == content,
            "{name} differs from the generator's output"
        );
    }
}

fn load(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(vectors_dir().join(name)).unwrap()).unwrap()
}

fn layer_of(e: &EntryError) -> &'static str {
    match e {
        EntryError::Body(BodyError::Jcs(_)) => "canonical",
        EntryError::Body(_) => "schema",
        EntryError::IndexMismatch { .. } => "index",
        EntryError::OriginMismatch { .. } => "origin",
        EntryError::Signature(_) => "signature",
        EntryError::LeafHashMismatch => "leaf_hash",
        EntryError::NotAReceipt => "kind",
        EntryError::Malformed { .. } => "malformed",
    }
}

#[test]
fn receipt_vectors_verify_and_every_corruption_fails_at_its_layer() {
    let v = load("receipts.json");
    let key = PinnedKey::from_vkey(v["verifier_key"].as_str().unwrap()).unwrap();
    let mut receipts = 0;
    for case in v["happy"].as_array().unwrap() {
        let bundle: ReceiptJson = serde_json::from_value(case["bundle"].clone()).unwrap();
        let entry = SignedEntry {
            index: bundle.index,
            body: bundle.body.clone().into_bytes(),
            signature: sworn_ledger::keys::Signature::from_slice(
                &BASE64.decode(case["signature"].as_str().unwrap()).unwrap(),
            )
            .unwrap(),
        };
        assert_eq!(
            entry.leaf_hash().to_hex(),
            case["leaf_hash"].as_str().unwrap()
        );
        entry.verify(&key).unwrap();
        if Receipt::verify_bundle(&bundle, &key).is_ok() {
            receipts += 1;
        }
    }
    assert_eq!(
        receipts, 3,
        "three receipt bundles (the fourth entry is an erasure event)"
    );
    let corruptions = v["corruptions"].as_array().unwrap();
    assert!(corruptions.len() >= 15);
    for case in corruptions {
        let name = case["name"].as_str().unwrap();
        let bytes = serde_json::to_vec(&case["bundle"]).unwrap();
        let err = Receipt::verify_json(&bytes, &key).expect_err(name);
        assert_eq!(
            layer_of(&err),
            case["expect_layer"].as_str().unwrap(),
            "{name}: {err}"
        );
    }
    for weak in v["weak_public_keys_hex"].as_array().unwrap() {
        let bytes: [u8; 32] = hex::decode(weak.as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        assert!(PinnedKey::new(ORIGIN, &bytes).is_err());
    }
    // Salts in a bundle are optional; present ones must be hex.
    let mut b = v["happy"][0]["bundle"].clone();
    b["salts"] = json!({"prompt": "00".repeat(32), "response": "11".repeat(32)});
    let r = Receipt::verify_json(&serde_json::to_vec(&b).unwrap(), &key).unwrap();
    assert_eq!(
        r.salts,
        Some(ReceiptSalts {
            prompt: Salt([0; 32]),
            response: Salt([0x11; 32])
        })
    );
}

#[test]
fn bulk_verification_gives_every_bundle_its_single_verdict() {
    let v = load("receipts.json");
    let key = PinnedKey::from_vkey(v["verifier_key"].as_str().unwrap()).unwrap();
    let happy = v["happy"].as_array().unwrap().iter();
    let corrupt = v["corruptions"].as_array().unwrap().iter();
    // Interleave honest and corrupted bundles, plus bytes that are not a bundle at all.
    let mut bundles: Vec<Vec<u8>> = Vec::new();
    for (h, c) in happy.cycle().zip(corrupt) {
        bundles.push(serde_json::to_vec(&h["bundle"]).unwrap());
        bundles.push(serde_json::to_vec(&c["bundle"]).unwrap());
    }
    bundles.insert(3, b"{not json".to_vec());
    let bulk = Receipt::verify_json_each(bundles.iter().map(Vec::as_slice), &key);
    assert_eq!(bulk.len(), bundles.len());
    let mut accepted = 0;
    for (bytes, verdict) in bundles.iter().zip(&bulk) {
        match (Receipt::verify_json(bytes, &key), verdict) {
            (Ok(single), Ok(each)) => {
                assert_eq!(&single, each);
                accepted += 1;
            }
            (Err(single), Err(each)) => assert_eq!(single.to_string(), each.to_string()),
            (single, each) => panic!("single {single:?} but bulk {each:?}"),
        }
    }
    assert!(
        accepted >= 3 && accepted < bundles.len() / 2 + 1,
        "{accepted} accepted"
    );
    let entries: Vec<SignedEntry> = bulk
        .iter()
        .flatten()
        .map(|r| {
            let mut forged = r.entry.clone();
            forged.body.push(b' ');
            forged
        })
        .collect();
    for verdict in SignedEntry::verify_each(&entries, &key) {
        assert!(matches!(verdict, Err(EntryError::Body(_))), "{verdict:?}");
    }
}

#[test]
fn checkpoint_vectors_verify_and_corruptions_fail_at_their_layer() {
    use sworn_ledger::checkpoint::CheckpointError;
    use sworn_ledger::note::NoteError;
    let v = load("checkpoints.json");
    let key = PinnedKey::from_vkey(v["verifier_key"].as_str().unwrap()).unwrap();
    let origin = v["origin"].as_str().unwrap();
    let good =
        SignedCheckpoint::verify(v["happy"]["note"].as_str().unwrap(), &key, origin).unwrap();
    assert_eq!(
        good.checkpoint.root.to_hex(),
        v["happy"]["root_hex"].as_str().unwrap()
    );
    SignedCheckpoint::verify(v["cosigned"].as_str().unwrap(), &key, origin).unwrap();
    for case in v["corruptions"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let err =
            SignedCheckpoint::verify(case["note"].as_str().unwrap(), &key, origin).expect_err(name);
        let layer = match &err {
            CheckpointError::Note(NoteError::BadSignature) => "signature",
            CheckpointError::Note(NoteError::NotSignedByPinnedKey { .. }) => "no_pinned_signature",
            CheckpointError::Note(_) => "note_format",
            CheckpointError::WrongOrigin { .. } => "origin",
            _ => "checkpoint_format",
        };
        assert_eq!(
            layer,
            case["expect_layer"].as_str().unwrap(),
            "{name}: {err}"
        );
    }
}

#[test]
fn jcs_and_commitment_vectors_hold() {
    let v = load("jcs.json");
    for case in v["happy"].as_array().unwrap() {
        let input: Value = serde_json::from_str(case["input"].as_str().unwrap()).unwrap();
        let canonical = case["canonical"].as_str().unwrap();
        assert_eq!(text(&jcs::canonicalize(&input).unwrap()), canonical);
        assert!(jcs::is_canonical(canonical.as_bytes()));
    }
    for case in v["refused"].as_array().unwrap() {
        let input: Value = serde_json::from_str(case["input"].as_str().unwrap()).unwrap();
        assert!(jcs::canonicalize(&input).is_err(), "{}", case["name"]);
    }
    for case in v["not_canonical"].as_array().unwrap() {
        assert!(
            !jcs::is_canonical(case["input"].as_str().unwrap().as_bytes()),
            "{}",
            case["name"]
        );
    }
    let c = load("commitments.json");
    let domain = |d: &str| {
        if d == "sworn/v1/prompt" {
            Domain::Prompt
        } else {
            Domain::Response
        }
    };
    let opens = |case: &Value| {
        let salt = Salt::from_hex(case["salt"].as_str().unwrap()).unwrap();
        let content = hex::decode(case["content_hex"].as_str().unwrap()).unwrap();
        let expected = Commitment::from_hex(case["commitment"].as_str().unwrap()).unwrap();
        sworn_ledger::commitment::opens(
            &expected,
            domain(case["domain"].as_str().unwrap()),
            &salt,
            &content,
        )
    };
    assert!(c["happy"].as_array().unwrap().iter().all(opens));
    assert!(!c["corruptions"].as_array().unwrap().iter().any(opens));
}

#[test]
fn log_vectors_reproduce() {
    use sworn_ledger::merkle::{Hash, verify_consistency, verify_inclusion};
    let v = load("log.json");
    let h = |x: &Value| Hash::from_hex(x.as_str().unwrap()).unwrap();
    let roots: Vec<Hash> = v["roots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| h(&r["root_hex"]))
        .collect();
    let n = roots.len() as u64 - 1;
    for case in v["inclusion"].as_array().unwrap() {
        let path: Vec<Hash> = case["path"].as_array().unwrap().iter().map(h).collect();
        let i = case["index"].as_u64().unwrap();
        verify_inclusion(&h(&case["leaf_hash"]), i, n, &path, &roots[n as usize]).unwrap();
        assert!(
            verify_inclusion(
                &h(&case["leaf_hash"]),
                (i + 1) % n,
                n,
                &path,
                &roots[n as usize]
            )
            .is_err()
        );
    }
    for case in v["consistency"].as_array().unwrap() {
        let path: Vec<Hash> = case["path"].as_array().unwrap().iter().map(h).collect();
        let m = case["old_size"].as_u64().unwrap();
        verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &path).unwrap();
    }
}
