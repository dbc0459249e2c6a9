//! The anchor and finality layers of a receipt's checkpoint.
//!
//! Anchor: an `Anchored` event on the canonical chain, emitted by the pinned contract on
//! the pinned chain, whose `(logId, treeSize, root, checkpointHash)` equal the verified
//! checkpoint's — cross-checked against contract storage with `isAnchored`, and with the
//! event's block hash re-read from the canonical chain. A bundled anchor record is only a
//! hint (which seq, which transaction): every value in it is checked, none is trusted.
//!
//! Finality: the event's block is at or below the chain's `finalized` block. Until then
//! the layer is *pending*, never ok; an anchor that a reorg removed is *pending* (the
//! anchorer resubmits), and a seq holding another checkpoint is *failed*.

use alloy::primitives::{Address, B256};
use serde_json::Value;
use sworn_ledger::anchor::{AnchorRecord, AnchoredEvent, ChainReader, ReadError, log_id};
use sworn_ledger::checkpoint::SignedCheckpoint;

use crate::report::{Layer, Outcome, Report};

/// What the auditor pins about the chain.
#[derive(Debug, Clone)]
pub struct ChainPins {
    /// The chain id the endpoint must report, if pinned (`--chain-id`).
    pub chain_id: Option<u64>,
    /// First block searched for events (`--from-block`, the deploy block).
    pub from_block: u64,
}

/// The outcome of the anchor layer, and the event it rests on.
#[derive(Debug, Clone)]
pub struct AnchorFinding {
    /// The anchor layer's outcome.
    pub anchor: Outcome,
    /// The event, when one matched.
    pub event: Option<AnchoredEvent>,
}

/// Runs the anchor and finality layers for `checkpoint` (already verified offline).
pub async fn check_anchor(
    reader: &ChainReader,
    pins: &ChainPins,
    origin: &str,
    checkpoint: Option<&SignedCheckpoint>,
    record: Option<&Value>,
    report: &mut Report,
) {
    let Some(checkpoint) = checkpoint else {
        report.set(
            Layer::Anchor,
            true,
            Outcome::Skipped("no verified checkpoint to look up".into()),
        );
        report.set(
            Layer::Finality,
            true,
            Outcome::Skipped("nothing anchored to follow".into()),
        );
        return;
    };
    let finding = match find_anchor(reader, pins, origin, checkpoint, record, report).await {
        Ok(f) => f,
        Err(e) => AnchorFinding {
            anchor: Outcome::Failed(format!("could not query the chain: {e}")),
            event: None,
        },
    };
    let anchor_pending = matches!(finding.anchor, Outcome::Pending(_));
    report.set(Layer::Anchor, true, finding.anchor);
    let finality = match finding.event {
        None if anchor_pending => Outcome::Pending("waits for the anchor".into()),
        None => Outcome::Skipped("no anchor on the canonical chain to follow".into()),
        Some(event) => match finality_of(reader, &event).await {
            Ok(o) => o,
            Err(e) => Outcome::Failed(format!("could not query the chain: {e}")),
        },
    };
    report.set(Layer::Finality, true, finality);
}

/// Where the event's block stands against `finalized`.
pub async fn finality_of(
    reader: &ChainReader,
    event: &AnchoredEvent,
) -> Result<Outcome, ReadError> {
    Ok(match reader.finalized_number().await? {
        None => Outcome::Pending("the endpoint reports no finalized block yet".into()),
        Some(f) if event.block_number <= f => Outcome::Ok(format!(
            "block {} is at or below the finalized block {f}",
            event.block_number
        )),
        Some(f) => Outcome::Pending(format!(
            "block {} is above the finalized block {f}: a reorg can still undo it",
            event.block_number
        )),
    })
}

async fn find_anchor(
    reader: &ChainReader,
    pins: &ChainPins,
    origin: &str,
    checkpoint: &SignedCheckpoint,
    record: Option<&Value>,
    report: &mut Report,
) -> Result<AnchorFinding, ReadError> {
    let failed = |reason: String| {
        Ok(AnchorFinding {
            anchor: Outcome::Failed(reason),
            event: None,
        })
    };
    let chain_id = reader.chain_id().await?;
    report.fact(
        "chain",
        format!("chain id {chain_id}, contract {}", reader.contract()),
    );
    if let Some(pinned) = pins.chain_id {
        if pinned != chain_id {
            return failed(format!(
                "the endpoint is chain {chain_id}, the pinned chain is {pinned}"
            ));
        }
    }
    if !reader.has_code().await? {
        return failed(format!(
            "no contract code at {} on chain {chain_id}",
            reader.contract()
        ));
    }
    let record = match record.map(|r| sworn_ledger::ijson::object_as::<AnchorRecord>(r, &[])) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => return failed(format!("anchor record is malformed: {e}")),
    };
    let id = log_id(origin);
    let note_hash = B256::from(checkpoint.note_hash());
    let cp = &checkpoint.checkpoint;
    let root = B256::from(cp.root.0);
    if let Some(r) = &record {
        if let Some(reason) =
            record_mismatch(r, chain_id, reader.contract(), id, cp.size, root, note_hash)
        {
            return failed(format!("the anchor record does not match: {reason}"));
        }
    }
    // Every anchor of the log, not just the one that matches: a log that anchored two
    // roots for one size has two histories, and a receipt from either must not pass
    // because its own checkpoint happens to be on chain too.
    let events = reader.anchored_events(id, None, pins.from_block).await?;
    if let Some(other) = events
        .iter()
        .find(|e| e.tree_size == cp.size && e.root != root)
    {
        report.fact(
            "evidence: equivocating anchor",
            format!("seq {} root {}", other.seq, other.root),
        );
        return failed(format!(
            "seq {} anchors size {} with another root {}: the log equivocated, and this \
             checkpoint's history is not the only one anchored",
            other.seq, cp.size, other.root
        ));
    }
    let wanted_seq = record.as_ref().map(|r| r.seq);
    let Some(event) = events
        .iter()
        .find(|e| e.checkpoint_hash == note_hash && wanted_seq.is_none_or(|s| s == e.seq))
        .cloned()
    else {
        let at_seq: Vec<AnchoredEvent> = events
            .iter()
            .filter(|e| wanted_seq.is_none_or(|s| s == e.seq))
            .cloned()
            .collect();
        return not_found(
            reader,
            id,
            cp.size,
            root,
            note_hash,
            record.as_ref(),
            &at_seq,
        )
        .await;
    };
    if event.tree_size != cp.size || event.root != root {
        return failed(format!(
            "event seq {} carries this checkpoint's hash with size {} and root {}, not size {} root {}",
            event.seq, event.tree_size, event.root, cp.size, root
        ));
    }
    if !reader
        .is_anchored(id, event.seq, cp.size, root, note_hash)
        .await?
    {
        return failed(format!(
            "contract storage does not hold seq {} as the event says",
            event.seq
        ));
    }
    if reader.canonical_hash(event.block_number).await? != Some(event.block_hash) {
        return Ok(AnchorFinding {
            anchor: Outcome::Pending(format!(
                "block {} holding the event is no longer canonical (reorg)",
                event.block_number
            )),
            event: None,
        });
    }
    let mut detail = format!(
        "Anchored(seq {}, size {}, root, checkpoint hash) on chain {chain_id} contract {} in block {} ({}), tx {}; storage agrees",
        event.seq,
        event.tree_size,
        reader.contract(),
        event.block_number,
        event.block_hash,
        event.tx_hash
    );
    if let Some(block) = record.as_ref().and_then(|r| r.state.block()) {
        if block != (event.block_number, event.block_hash) {
            detail.push_str(&format!(
                "; the bundled record's block {} is stale (moved by a reorg)",
                block.0
            ));
        }
    }
    Ok(AnchorFinding {
        anchor: Outcome::Ok(detail),
        event: Some(event),
    })
}

/// No event carries this checkpoint's hash: pending if the seq is free (not anchored
/// yet, or reorged out and awaiting resubmission), failed if it holds another checkpoint.
async fn not_found(
    reader: &ChainReader,
    id: B256,
    size: u64,
    root: B256,
    note_hash: B256,
    record: Option<&AnchorRecord>,
    events: &[AnchoredEvent],
) -> Result<AnchorFinding, ReadError> {
    let anchor = if let Some(other) = events
        .iter()
        .find(|e| e.tree_size == size && e.root != root)
    {
        Outcome::Failed(format!(
            "seq {} anchors size {size} with another root {}: the log equivocated",
            other.seq, other.root
        ))
    } else if let Some(r) = record {
        if let Some(other) = events.first() {
            Outcome::Failed(format!(
                "seq {} is anchored with checkpoint hash {}, not this checkpoint's {note_hash}",
                r.seq, other.checkpoint_hash
            ))
        } else if reader.is_anchored(id, r.seq, size, root, note_hash).await? {
            Outcome::Failed(format!(
                "storage holds seq {} but no event was found for it",
                r.seq
            ))
        } else {
            Outcome::Pending(format!(
                "seq {} is not anchored on the canonical chain (not yet, or removed by a reorg)",
                r.seq
            ))
        }
    } else {
        let latest = reader.latest(id).await?.seq;
        Outcome::Pending(format!(
            "this checkpoint (size {size}) is not anchored (yet); the log's newest anchor is seq {latest}"
        ))
    };
    Ok(AnchorFinding {
        anchor,
        event: None,
    })
}

fn record_mismatch(
    r: &AnchorRecord,
    chain_id: u64,
    contract: Address,
    id: B256,
    size: u64,
    root: B256,
    note_hash: B256,
) -> Option<String> {
    if r.chain_id != chain_id {
        return Some(format!(
            "chain id {} (the endpoint is {chain_id})",
            r.chain_id
        ));
    }
    if r.contract != contract {
        return Some(format!("contract {} (pinned {contract})", r.contract));
    }
    if r.log_id != id {
        return Some(format!("log id {} (this origin's is {id})", r.log_id));
    }
    if r.tree_size != size || r.root != root || r.checkpoint_hash != note_hash {
        return Some("its size, root or checkpoint hash differ from the checkpoint's".into());
    }
    None
}
