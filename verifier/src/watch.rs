//! `sworn-verify checkpoint`: verify a checkpoint and that it extends the last one this
//! auditor accepted for the origin, so a rolled-back or forked log is caught.
//!
//! - first checkpoint for an origin: remembered (trust on first use, said so);
//! - same size: the roots must be equal, else the log signed two different trees of one
//!   size — equivocation, with both notes kept as evidence;
//! - smaller size: a rollback, failed;
//! - larger size: an RFC 9162 consistency proof from the remembered root to the new one
//!   is required (ledger's verifier).
//!
//! The state is advanced only by [`remember`], which the command calls once *every*
//! required layer passed — the anchor and finality layers included. Remembering a
//! log-signed checkpoint before the chain had its say would let a fork that the chain
//! contradicts become "last accepted", and the honest checkpoint would then fail as
//! equivocation.

use serde::Deserialize;
use sworn_ledger::checkpoint::SignedCheckpoint;
use sworn_ledger::ijson;
use sworn_ledger::key_history::KeyHistory;
use sworn_ledger::merkle::{Hash, MAX_CONSISTENCY_PROOF_LEN, verify_consistency};

use crate::offline::CheckpointSection;
use crate::report::{Layer, Outcome, Report};
use crate::state::{SeenCheckpoint, StateDir, StateError};

/// A consistency proof as `/v1/audit/proof/consistency` emits it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyJson {
    /// Older size.
    pub old_size: u64,
    /// Newer size.
    pub new_size: u64,
    /// Older root as the server states it (checked, not used).
    #[serde(default)]
    pub old_root_hash: Option<String>,
    /// Newer root as the server states it (checked, not used).
    #[serde(default)]
    pub new_root_hash: Option<String>,
    /// Proof hashes, hex.
    pub hashes: Vec<String>,
}

/// A checkpoint as the auditor gave it: the note text, or `/v1/audit/checkpoint` JSON
/// whose unsigned copies (`origin`, `size`, `root_hash`) must agree with its note.
#[derive(Debug, Clone)]
pub struct CheckpointInput {
    /// The signed note.
    pub note: String,
    /// The JSON it came in, when it came as JSON.
    pub section: Option<CheckpointSection>,
}

/// Reads a checkpoint given as note text or as `/v1/audit/checkpoint` JSON (an object:
/// strict I-JSON with only the known members). `Err` says why the JSON is refused.
pub fn checkpoint_input(bytes: &[u8]) -> Result<CheckpointInput, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the checkpoint is not UTF-8".to_string())?;
    if !text.trim_start().starts_with('{') {
        return Ok(CheckpointInput {
            note: text.to_string(),
            section: None,
        });
    }
    let section: CheckpointSection =
        ijson::parse_as(bytes).map_err(|e| format!("checkpoint JSON is refused: {e}"))?;
    Ok(CheckpointInput {
        note: section.note.clone(),
        section: Some(section),
    })
}

/// Makes `signed` the last accepted checkpoint of its origin. Call only once every
/// required layer of the run passed.
pub fn remember(state: &StateDir, signed: &SignedCheckpoint) -> Result<(), StateError> {
    let cp = &signed.checkpoint;
    if state
        .load(&cp.origin)?
        .is_some_and(|seen| seen.size >= cp.size)
    {
        return Ok(());
    }
    state.save(&SeenCheckpoint {
        origin: cp.origin.clone(),
        size: cp.size,
        root_hash: cp.root.to_hex(),
        note: signed.note.clone(),
    })
}

/// Verifies `note` under `key` and against the state (which it does not change: see
/// [`remember`]). Returns the verified checkpoint (for the anchor layers).
pub fn check_checkpoint(
    note: &str,
    keys: &KeyHistory,
    state: &StateDir,
    proof: Option<&ConsistencyJson>,
    report: &mut Report,
) -> Result<Option<SignedCheckpoint>, StateError> {
    let (signed, key) = match keys.verify_checkpoint(note) {
        Ok((s, epoch)) => (s, &epoch.key),
        Err(e) => {
            report.set(Layer::Checkpoint, true, Outcome::Failed(e.to_string()));
            report.set(
                Layer::Consistency,
                true,
                Outcome::Skipped("the checkpoint did not verify".into()),
            );
            return Ok(None);
        }
    };
    let cp = &signed.checkpoint;
    report.fact("origin", cp.origin.clone());
    report.fact("size", cp.size.to_string());
    report.fact("root", cp.root.to_hex());
    report.set(
        Layer::Checkpoint,
        true,
        Outcome::Ok(format!(
            "note signed by {} key id {}",
            key.name(),
            hex::encode(key.key_id())
        )),
    );
    let seen = state.load(&cp.origin)?;
    report.fact(
        "state file",
        state.path_for(&cp.origin).display().to_string(),
    );
    let outcome = consistency_outcome(&signed, seen.as_ref(), proof, report);
    report.set(Layer::Consistency, seen.is_some(), outcome);
    Ok(Some(signed))
}

fn consistency_outcome(
    signed: &SignedCheckpoint,
    seen: Option<&SeenCheckpoint>,
    proof: Option<&ConsistencyJson>,
    report: &mut Report,
) -> Outcome {
    let cp = &signed.checkpoint;
    let Some(seen) = seen else {
        return Outcome::Skipped(
            "first checkpoint seen for this origin: remembered, nothing to compare".into(),
        );
    };
    let Ok(old_root) = Hash::from_hex(&seen.root_hash) else {
        return Outcome::Failed("the state file's root is not a hash".into());
    };
    report.fact(
        "last seen",
        format!("size {} root {}", seen.size, seen.root_hash),
    );
    if cp.size == seen.size {
        return if cp.root == old_root {
            Outcome::Ok(format!("same size {} and root as last seen", cp.size))
        } else {
            report.fact("evidence: earlier note", seen.note.clone());
            report.fact("evidence: this note", signed.note.clone());
            Outcome::Failed(format!(
                "equivocation: the log signed two different roots for size {}",
                cp.size
            ))
        };
    }
    if cp.size < seen.size {
        return Outcome::Failed(format!(
            "rollback: size {} is smaller than the size {} already seen",
            cp.size, seen.size
        ));
    }
    let Some(proof) = proof else {
        return Outcome::Skipped(format!(
            "a consistency proof from size {} to {} is needed (--consistency or --server)",
            seen.size, cp.size
        ));
    };
    if proof.old_size != seen.size || proof.new_size != cp.size {
        return Outcome::Failed(format!(
            "the proof is for sizes {} → {}, not {} → {}",
            proof.old_size, proof.new_size, seen.size, cp.size
        ));
    }
    let stated_old = proof
        .old_root_hash
        .as_deref()
        .is_some_and(|r| r != seen.root_hash);
    let stated_new = proof
        .new_root_hash
        .as_deref()
        .is_some_and(|r| r != cp.root.to_hex());
    if stated_old || stated_new {
        return Outcome::Failed(
            "the proof's stated roots are not the remembered and the signed roots".into(),
        );
    }
    if proof.hashes.len() > MAX_CONSISTENCY_PROOF_LEN {
        return Outcome::Failed(format!(
            "proof has {} elements, over the cap",
            proof.hashes.len()
        ));
    }
    let mut path = Vec::with_capacity(proof.hashes.len());
    for (i, h) in proof.hashes.iter().enumerate() {
        match Hash::from_hex(h) {
            Ok(h) => path.push(h),
            Err(e) => return Outcome::Failed(format!("proof element {i}: {e}")),
        }
    }
    match verify_consistency(seen.size, cp.size, &old_root, &cp.root, &path) {
        Ok(()) => Outcome::Ok(format!(
            "RFC 9162 consistency from size {} (last seen) to {}",
            seen.size, cp.size
        )),
        Err(e) => Outcome::Failed(format!(
            "fork: not consistent with size {} seen before: {e}",
            seen.size
        )),
    }
}
