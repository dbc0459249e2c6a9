//! The evidence behind an `erased` verdict.
//!
//! A receipt whose salts are missing could have been erased (a GDPR erasure, logged) or
//! simply stripped by whoever handed the bundle over — and a stripped bundle must not
//! pass as "erased, not tampering" for any prompt and response. So `erased` needs the
//! log's own signed statement: the erasure event, an entry of the same log, verified under
//! the pinned key, naming this receipt's index and leaf hash, and proven by RFC 9162
//! inclusion to the same signed checkpoint as the receipt. The bundle of
//! `GET /v1/audit/receipts/{id}` carries it as its `erasure` section:
//! `{"entry": {"index", "leaf_hash", "body", "signature"}, "inclusion": {"index",
//! "tree_size", "hashes"}}`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::Value;
use sworn_ledger::checkpoint::SignedCheckpoint;
use sworn_ledger::entry::{EntryBody, Receipt, SignedEntry};
use sworn_ledger::ijson;
use sworn_ledger::key_history::KeyHistory;
use sworn_ledger::keys::Signature;
use sworn_ledger::merkle::{Hash, verify_inclusion};

use crate::offline::parse_inclusion;

/// The `erasure` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureSection {
    entry: EntrySection,
    inclusion: Value,
}

/// A signed log entry in the JSON form the server emits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySection {
    index: u64,
    leaf_hash: Hash,
    body: String,
    signature: String,
}

/// Verifies the `erasure` section against the verified `receipt`, the pinned `key` and the
/// verified `checkpoint` the receipt was proven against. `Ok` says what was established;
/// `Err` says why the section does not show an erasure.
pub fn check_erasure(
    section: &Value,
    receipt: Option<&Receipt>,
    keys: Option<&KeyHistory>,
    checkpoint: Option<&SignedCheckpoint>,
) -> Result<String, String> {
    let (Some(receipt), Some(keys)) = (receipt, keys) else {
        return Err(
            "the erasure event can only be believed with a pinned key (--key) and a receipt \
             whose signature verified"
                .into(),
        );
    };
    let Some(checkpoint) = checkpoint else {
        return Err("no verified checkpoint to prove the erasure event against".into());
    };
    let section: ErasureSection = ijson::object_as(section, &["entry"])
        .map_err(|e| format!("erasure section is malformed: {e}"))?;
    let signature: [u8; 64] = BASE64
        .decode(&section.entry.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the erasure event's signature is not base64 of 64 bytes")?;
    let entry = SignedEntry {
        index: section.entry.index,
        body: section.entry.body.into_bytes(),
        signature: Signature::from_bytes(&signature),
    };
    let leaf = entry.leaf_hash();
    if leaf != section.entry.leaf_hash {
        return Err("the erasure event's leaf hash is not SHA-256(0x00 ‖ body)".into());
    }
    let key = keys.key_for_entry(entry.index);
    let EntryBody::Erasure(body) = entry
        .verify(key)
        .map_err(|e| format!("the erasure event does not verify: {e}"))?
    else {
        return Err("the erasure section's entry is not an erasure event".into());
    };
    if body.erased.index != receipt.entry.index || body.erased.leaf_hash != receipt.leaf_hash {
        return Err(format!(
            "the erasure event erases entry {} (leaf {}), not this receipt (entry {}, leaf {})",
            body.erased.index,
            body.erased.leaf_hash.to_hex(),
            receipt.entry.index,
            receipt.leaf_hash.to_hex()
        ));
    }
    let proof = parse_inclusion(&section.inclusion)?;
    let cp = &checkpoint.checkpoint;
    if proof.index != entry.index || proof.tree_size != cp.size {
        return Err(format!(
            "the erasure event's proof is for index {} in size {}, not index {} in the \
             checkpoint's size {}",
            proof.index, proof.tree_size, entry.index, cp.size
        ));
    }
    verify_inclusion(&leaf, entry.index, cp.size, &proof.path, &cp.root)
        .map_err(|e| format!("the erasure event is not in the signed checkpoint: {e}"))?;
    Ok(format!(
        "the log erased this record's content and salts: erasure event {} ({}), signed by {} \
         and included in the checkpoint of size {}; the commitments can no longer be opened \
         (a logged erasure, not tampering)",
        entry.index,
        body.time,
        key.name(),
        cp.size
    ))
}
