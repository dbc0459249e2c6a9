//! The transparency-dev/merkle corpus (Apache-2.0, `tests/data/transparency-dev-merkle/`):
//! every inclusion and consistency case, with `wantErr` honoured.
//!
//! One deliberate difference: our verifier takes roots as 32-byte hashes and refuses
//! anything else at decode time. The corpus has exactly one `wantErr: false` case whose
//! roots are not hashes (`consistency/additional/sizes-are-equal-one-and-proof-is-empty`,
//! roots "don't care 2", 12 bytes); we reject it. The test names it, so any other
//! disagreement fails.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use sworn_ledger::merkle::{
    Hash, MAX_CONSISTENCY_PROOF_LEN, MAX_INCLUSION_PROOF_LEN, ProofError, decode_path,
    verify_consistency, verify_inclusion,
};

const STRICTER_THAN_UPSTREAM: &[&str] =
    &["consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InclusionCase {
    leaf_idx: u64,
    tree_size: u64,
    root: String,
    leaf_hash: String,
    proof: Option<Vec<String>>,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsistencyCase {
    size1: u64,
    size2: u64,
    root1: String,
    root2: String,
    proof: Option<Vec<String>>,
    want_err: bool,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/transparency-dev-merkle")
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

fn b64(text: &str) -> Vec<u8> {
    BASE64.decode(text).unwrap()
}

fn hash(text: &str) -> Result<Hash, ProofError> {
    Hash::from_slice(&b64(text)).map_err(|_| ProofError::RootMismatch)
}

fn decode_proof(proof: &Option<Vec<String>>, max: usize) -> Result<Vec<Hash>, ProofError> {
    let raw: Vec<Vec<u8>> = proof.iter().flatten().map(|p| b64(p)).collect();
    decode_path(&raw, max)
}

fn run_inclusion(case: &InclusionCase) -> Result<(), ProofError> {
    let leaf = hash(&case.leaf_hash)?;
    let root = hash(&case.root)?;
    let path = decode_proof(&case.proof, MAX_INCLUSION_PROOF_LEN)?;
    verify_inclusion(&leaf, case.leaf_idx, case.tree_size, &path, &root)
}

fn run_consistency(case: &ConsistencyCase) -> Result<(), ProofError> {
    let root1 = hash(&case.root1)?;
    let root2 = hash(&case.root2)?;
    let path = decode_proof(&case.proof, MAX_CONSISTENCY_PROOF_LEN)?;
    verify_consistency(case.size1, case.size2, &root1, &root2, &path)
}

#[test]
fn transparency_dev_corpus_every_case() {
    let root = data_dir();
    let mut files = Vec::new();
    json_files(&root, &mut files);
    files.sort();
    let (mut inclusion, mut consistency, mut accepted, mut rejected) = (0, 0, 0, 0);
    let mut disagreements = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(file).unwrap();
        let (want_err, result) = if rel.starts_with("inclusion/") {
            inclusion += 1;
            let case: InclusionCase = serde_json::from_str(&text).unwrap();
            (case.want_err, run_inclusion(&case))
        } else {
            consistency += 1;
            let case: ConsistencyCase = serde_json::from_str(&text).unwrap();
            (case.want_err, run_consistency(&case))
        };
        if result.is_ok() {
            accepted += 1;
        } else {
            rejected += 1;
        }
        if want_err == result.is_ok() {
            disagreements.push(rel);
        }
    }
    println!(
        "transparency-dev/merkle: {} cases ({inclusion} inclusion, {consistency} consistency): \
         {accepted} accepted, {rejected} rejected; stricter than upstream on {:?}",
        files.len(),
        disagreements
    );
    assert_eq!(inclusion, 98, "inclusion case count changed");
    assert_eq!(consistency, 98, "consistency case count changed");
    assert_eq!(disagreements, STRICTER_THAN_UPSTREAM);
}
