//! Malformed input of every kind is a typed error, never a panic: random bytes and random
//! mutations of valid bodies, receipt bundles, checkpoints, verifier keys, proofs and
//! exports go through every parser and verifier.

use proptest::prelude::*;
use sworn_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use sworn_ledger::entry::{EntryBody, Receipt};
use sworn_ledger::jcs;
use sworn_ledger::keys::{LogKey, PinnedKey};
use sworn_ledger::merkle::{
    MAX_CONSISTENCY_PROOF_LEN, MAX_INCLUSION_PROOF_LEN, decode_path, hash_leaf, verify_consistency,
    verify_inclusion,
};
use sworn_ledger::note::parse_note;

use crate::vector_generator::{ORIGIN, vectors_dir};

fn valid_bundle() -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vectors_dir().join("receipts.json")).unwrap(),
    )
    .unwrap();
    serde_json::to_vec(&v["happy"][0]["bundle"]).unwrap()
}

fn key() -> PinnedKey {
    LogKey::from_seed(std::array::from_fn(|i| i as u8))
        .pinned(ORIGIN)
        .unwrap()
}

fn valid_checkpoint() -> String {
    let k = LogKey::from_seed(std::array::from_fn(|i| i as u8));
    SignedCheckpoint::sign(Checkpoint::new(ORIGIN, 4, hash_leaf(b"x")), &k)
        .unwrap()
        .note
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    for &(pos, val) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = pos % bytes.len();
        match val % 3 {
            0 => bytes[i] ^= val | 1,
            1 => {
                bytes.remove(i);
            }
            _ => bytes.insert(i, val),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let k = key();
        let _ = jcs::parse_canonical(&bytes);
        let _ = EntryBody::parse_canonical(&bytes);
        let _ = Receipt::verify_json(&bytes, &k);
        let _ = parse_note(&text);
        let _ = Checkpoint::parse_text(&text);
        let _ = SignedCheckpoint::verify(&text, &k, ORIGIN);
        let _ = PinnedKey::from_vkey(&text);
        let chunks: Vec<&[u8]> = bytes.chunks(31).collect();
        let _ = decode_path(&chunks, MAX_INCLUSION_PROOF_LEN);
    }

    #[test]
    fn mutated_valid_inputs_are_rejected_or_accepted_but_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let k = key();
        let bundle = mutate(valid_bundle(), &edits);
        let _ = Receipt::verify_json(&bundle, &k);
        let note = mutate(valid_checkpoint().into_bytes(), &edits);
        let _ = SignedCheckpoint::verify(&String::from_utf8_lossy(&note), &k, ORIGIN);
    }

    #[test]
    fn extreme_proof_parameters_never_panic(
        index in any::<u64>(),
        size in any::<u64>(),
        old in any::<u64>(),
        len in 0usize..70,
    ) {
        let h = hash_leaf(b"x");
        let path = vec![h; len];
        let _ = verify_inclusion(&h, index, size, &path, &h);
        let _ = verify_consistency(old, size, &h, &h, &path);
        let _ = decode_path(&vec![[0u8; 32]; len], MAX_CONSISTENCY_PROOF_LEN);
    }
}
