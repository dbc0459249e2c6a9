//! The offline layers of a receipt: signature, inclusion, checkpoint.
//!
//! Each layer parses only its own section and runs even when another failed, so a
//! report names every broken layer, not just the first. The leaf hash is always
//! recomputed from the body bytes (`SHA-256(0x00 ‖ body)`), never taken from the bundle;
//! the inclusion proof's directions are derived from `(index, size)` by ledger's RFC 9162
//! verifier; the log's identity (origin and key) comes from the auditor, never from the
//! bundle.

use serde::Deserialize;
use serde_json::Value;
use sworn_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use sworn_ledger::entry::{Receipt, ReceiptJson};
use sworn_ledger::ijson;
use sworn_ledger::key_history::KeyHistory;
use sworn_ledger::merkle::{Hash, MAX_INCLUSION_PROOF_LEN, hash_leaf, verify_inclusion};
use sworn_ledger::note::parse_note;
use sworn_ledger::receipt::ReceiptBody;

use crate::bundle::Bundle;
use crate::report::{Layer, Outcome, Report};

/// The inclusion section, exactly as the server emits it. Unknown members are refused:
/// a proof carrying directions or extra structure is not an RFC 9162 proof.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionSection {
    index: u64,
    tree_size: u64,
    hashes: Vec<String>,
}

/// The checkpoint section of a bundle, and the `/v1/audit/checkpoint` JSON: the signed
/// note, with unsigned convenience copies of its origin, size and root, which must agree
/// with the note when present (a reader that trusted a copy would be fooled by it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSection {
    /// The complete signed note.
    pub note: String,
    /// Unsigned copy of the size.
    #[serde(default)]
    pub size: Option<u64>,
    /// Unsigned copy of the root, hex.
    #[serde(default)]
    pub root_hash: Option<String>,
    /// Unsigned copy of the origin.
    #[serde(default)]
    pub origin: Option<String>,
}

impl CheckpointSection {
    /// The unsigned copies that disagree with the signed checkpoint `cp`, by name.
    pub fn disagreements(&self, cp: &Checkpoint) -> Vec<&'static str> {
        let mut wrong = Vec::new();
        if self.size.is_some_and(|s| s != cp.size) {
            wrong.push("size");
        }
        if self
            .root_hash
            .as_ref()
            .is_some_and(|r| *r != cp.root.to_hex())
        {
            wrong.push("root_hash");
        }
        if self.origin.as_ref().is_some_and(|o| *o != cp.origin) {
            wrong.push("origin");
        }
        wrong
    }
}

/// An inclusion proof section as read: index, tree size and the path, each element a
/// 32-byte hash, at most [`MAX_INCLUSION_PROOF_LEN`] of them (checked before hashing).
#[derive(Debug)]
pub struct InclusionPath {
    /// The proven leaf's index.
    pub index: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The path, leaf to root.
    pub path: Vec<Hash>,
}

/// Reads an inclusion section (`{"index","tree_size","hashes"}`, nothing else).
pub fn parse_inclusion(section: &Value) -> Result<InclusionPath, String> {
    let proof: InclusionSection = ijson::object_as(section, &[])
        .map_err(|e| format!("inclusion section is malformed: {e}"))?;
    // Bound the work before hashing anything (RFC 9162 proofs have at most 64 elements).
    if proof.hashes.len() > MAX_INCLUSION_PROOF_LEN {
        return Err(format!(
            "proof has {} elements, more than the cap of {MAX_INCLUSION_PROOF_LEN}",
            proof.hashes.len()
        ));
    }
    let mut path = Vec::with_capacity(proof.hashes.len());
    for (position, text) in proof.hashes.iter().enumerate() {
        path.push(
            Hash::from_hex(text)
                .map_err(|e| format!("proof element {position} is not a hash: {e}"))?,
        );
    }
    Ok(InclusionPath {
        index: proof.index,
        tree_size: proof.tree_size,
        path,
    })
}

/// What the offline layers established, for the chain layers and the content check.
#[derive(Debug, Clone, Default)]
pub struct OfflineResult {
    /// The receipt, when its signature verified.
    pub receipt: Option<Receipt>,
    /// The receipt's section, parsed (verified or not).
    pub receipt_json: Option<ReceiptJson>,
    /// The checkpoint, when its note verified under the pinned key and origin.
    pub checkpoint: Option<SignedCheckpoint>,
}

/// Runs the signature, inclusion and checkpoint layers of `bundle` against `keys` (whose
/// origin is the pinned one): the receipt under the key that signs its index, the
/// checkpoint under a key whose range covers its size. `None` skips the layers that need
/// a key.
pub fn check_offline(
    bundle: &Bundle,
    key: Option<&KeyHistory>,
    report: &mut Report,
) -> OfflineResult {
    let mut result = OfflineResult::default();
    let receipt_json: Result<ReceiptJson, String> =
        ijson::object_as(&bundle.receipt, &["salts"]).map_err(|e| e.to_string());
    check_signature(&receipt_json, key, report, &mut result);
    let checkpoint = bundle.checkpoint.as_ref().map(parse_checkpoint_section);
    check_inclusion(
        bundle.inclusion.as_ref(),
        &receipt_json,
        checkpoint.as_ref(),
        report,
    );
    check_checkpoint(checkpoint.as_ref(), key, report, &mut result);
    result.receipt_json = receipt_json.ok();
    result
}

fn check_signature(
    receipt_json: &Result<ReceiptJson, String>,
    keys: Option<&KeyHistory>,
    report: &mut Report,
    result: &mut OfflineResult,
) {
    let json = match receipt_json {
        Ok(json) => json,
        Err(reason) => {
            report.set(
                Layer::Signature,
                true,
                Outcome::Failed(format!("receipt is malformed: {reason}")),
            );
            return;
        }
    };
    let leaf = hash_leaf(json.body.as_bytes());
    report.fact("log index", json.index.to_string());
    report.fact("leaf hash", leaf.to_hex());
    if let Ok(body) = ReceiptBody::parse_canonical(json.body.as_bytes()) {
        report.fact("request id", body.request_id.clone());
        report.fact("time", body.time.clone());
        report.fact(
            "model",
            format!("{} (sha256 {})", body.model.id, body.model.sha256),
        );
    }
    let Some(keys) = keys else {
        report.set(
            Layer::Signature,
            true,
            Outcome::Skipped("no pinned key (--key or --from-chain)".into()),
        );
        return;
    };
    // The key that signs this index: after a rotation, a retired key's signature over a
    // later index is refused. (The signed body's index must be the bundle's: checked.)
    let key = keys.key_for_entry(json.index);
    match Receipt::verify_bundle(json, key) {
        Ok(receipt) => {
            report.set(
                Layer::Signature,
                true,
                Outcome::Ok(format!(
                    "Ed25519 (strict) over the canonical v1 body by {} key id {}",
                    key.name(),
                    hex::encode(key.key_id())
                )),
            );
            result.receipt = Some(receipt);
        }
        Err(e) => {
            let reason = if keys.rotated() {
                format!(
                    "{e} (key id {}, which signs entries {}..{} of the log's key history)",
                    hex::encode(key.key_id()),
                    keys.epoch_for_entry(json.index).from_size,
                    keys.epochs()
                        .iter()
                        .find(|ep| ep.from_size > json.index)
                        .map_or("".to_string(), |ep| ep.from_size.to_string())
                )
            } else {
                e.to_string()
            };
            report.set(Layer::Signature, true, Outcome::Failed(reason))
        }
    }
}

/// The checkpoint section parsed as far as it goes without a key: the section itself,
/// and the checkpoint text of its note (signature unchecked).
type ParsedCheckpoint = Result<(CheckpointSection, Checkpoint), String>;

fn parse_checkpoint_section(value: &Value) -> ParsedCheckpoint {
    let section: CheckpointSection = ijson::object_as(value, &[])
        .map_err(|e| format!("checkpoint section is malformed: {e}"))?;
    let note = parse_note(&section.note).map_err(|e| format!("checkpoint note: {e}"))?;
    let checkpoint = Checkpoint::parse_text(&note.text).map_err(|e| e.to_string())?;
    Ok((section, checkpoint))
}

fn check_checkpoint(
    parsed: Option<&ParsedCheckpoint>,
    keys: Option<&KeyHistory>,
    report: &mut Report,
    result: &mut OfflineResult,
) {
    let Some(parsed) = parsed else {
        report.set(
            Layer::Checkpoint,
            false,
            Outcome::Skipped("the bundle has no checkpoint".into()),
        );
        return;
    };
    let (section, _) = match parsed {
        Ok(p) => p,
        Err(reason) => {
            report.set(Layer::Checkpoint, true, Outcome::Failed(reason.clone()));
            return;
        }
    };
    let Some(keys) = keys else {
        report.set(
            Layer::Checkpoint,
            true,
            Outcome::Skipped("no pinned key (--key or --from-chain)".into()),
        );
        return;
    };
    let (signed, key) = match keys.verify_checkpoint(&section.note) {
        Ok((signed, epoch)) => (signed, &epoch.key),
        Err(e) => {
            report.set(Layer::Checkpoint, true, Outcome::Failed(e.to_string()));
            return;
        }
    };
    let cp = &signed.checkpoint;
    let disagreements = section.disagreements(cp);
    if !disagreements.is_empty() {
        report.set(
            Layer::Checkpoint,
            true,
            Outcome::Failed(format!(
                "the bundle's unsigned {} disagree(s) with the signed note",
                disagreements.join(", ")
            )),
        );
        return;
    }
    report.fact(
        "tree head",
        format!("size {} root {}", cp.size, cp.root.to_hex()),
    );
    report.set(
        Layer::Checkpoint,
        true,
        Outcome::Ok(format!(
            "note signed by {} key id {}, origin {:?}, size {}",
            key.name(),
            hex::encode(key.key_id()),
            cp.origin,
            cp.size
        )),
    );
    result.checkpoint = Some(signed);
}

fn check_inclusion(
    section: Option<&Value>,
    receipt_json: &Result<ReceiptJson, String>,
    checkpoint: Option<&ParsedCheckpoint>,
    report: &mut Report,
) {
    let Some(section) = section else {
        report.set(
            Layer::Inclusion,
            false,
            Outcome::Skipped("the bundle has no inclusion proof".into()),
        );
        return;
    };
    let outcome = inclusion_outcome(section, receipt_json, checkpoint);
    report.set(Layer::Inclusion, true, outcome);
}

fn inclusion_outcome(
    section: &Value,
    receipt_json: &Result<ReceiptJson, String>,
    checkpoint: Option<&ParsedCheckpoint>,
) -> Outcome {
    let proof = match parse_inclusion(section) {
        Ok(p) => p,
        Err(reason) => return Outcome::Failed(reason),
    };
    let path = proof.path;
    let Ok(json) = receipt_json else {
        return Outcome::Skipped("the receipt is unreadable, so there is no leaf to prove".into());
    };
    // The index that counts is the one the signed body states; the unsigned copies must
    // agree with it.
    let index = ReceiptBody::parse_canonical(json.body.as_bytes()).map_or(json.index, |b| b.index);
    if json.index != index {
        return Outcome::Failed(format!(
            "the receipt's unsigned index says {}, its signed body says {index}",
            json.index
        ));
    }
    if proof.index != index {
        return Outcome::Failed(format!(
            "proof is for index {}, the receipt's signed body is index {index}",
            proof.index
        ));
    }
    let Some(checkpoint) = checkpoint else {
        return Outcome::Skipped("no checkpoint gives the root to prove against".into());
    };
    let Ok((_, cp)) = checkpoint else {
        return Outcome::Skipped(
            "the checkpoint is unreadable, so there is no root to prove against".into(),
        );
    };
    if proof.tree_size != cp.size {
        return Outcome::Failed(format!(
            "proof is for tree size {}, the checkpoint's size is {}",
            proof.tree_size, cp.size
        ));
    }
    let leaf = hash_leaf(json.body.as_bytes());
    match verify_inclusion(&leaf, index, cp.size, &path, &cp.root) {
        Ok(()) => Outcome::Ok(format!(
            "RFC 9162 path of {} hashes: leaf {index} is in the tree of size {} with root {}",
            path.len(),
            cp.size,
            cp.root.to_hex()
        )),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
