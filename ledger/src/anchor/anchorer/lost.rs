//! Reorgs deeper than finality. `finalized` is a promise of the chain's consensus, not a
//! law: a chain that breaks it (a consensus failure, an operator's `evm_revert` or
//! `anvil_rollback` on a dev chain) can remove anchors the store calls finalized. Left
//! alone, the anchorer would then fail every pass (the contract's seq is behind the
//! store's) while the status still showed the lost anchors as finalized.
//!
//! So every pass first checks that the newest finalized record's block is still the
//! canonical block at its height (one `eth_getBlockByNumber`; if it is, every older
//! anchor's block, an ancestor, is too). If it is not, the anchorer walks down to the
//! newest finalized record whose block still is, and demotes every finalized record
//! above it to `Submitted` (newest first, so a crash half-way leaves the same picture:
//! finalized records below, unfinished ones above), adding one to each record's
//! `deep_reorgs`. The records are kept, not dropped: the seqs are followed again from the
//! lowest one up, one at a time, like any unfinished record: a transaction the chain
//! re-included is simply followed to its new block; one that is gone is re-anchored
//! under the same seq with exactly the checkpoint the record holds (see
//! `Anchorer::resubmit`), each extending the anchor below it as the contract checks.
//! Then anchoring goes on with the newest checkpoint under the next seq.

use super::{Anchorer, StepOutcome};
use crate::anchor::error::AnchorError;
use crate::anchor::state::{AnchorRecord, AnchorState};
use crate::anchor::store::AnchorStore;

impl<S: AnchorStore> Anchorer<S> {
    /// Checks that `newest`, the newest finalized record, is still in a canonical block.
    /// If it is not, demotes the lost finalized records (see the module documentation)
    /// and says which ([`StepOutcome::Lost`]); `None` if nothing was lost.
    pub(super) async fn check_finality_held(
        &mut self,
        newest: &AnchorRecord,
    ) -> Result<Option<StepOutcome>, AnchorError> {
        if self.still_canonical(newest).await? {
            return Ok(None);
        }
        let mut lost = vec![newest.clone()];
        let mut seq = newest.seq;
        while seq > 1 {
            seq -= 1;
            let record = self.finalized_record(seq).await?;
            if self.still_canonical(&record).await? {
                break;
            }
            lost.push(record);
        }
        let from_seq = lost.last().map_or(newest.seq, |r| r.seq);
        tracing::warn!(
            from_seq,
            to_seq = newest.seq,
            "a reorg deeper than finality removed finalized anchors; anchoring them again"
        );
        // `lost` runs newest first: see the module documentation for why.
        for mut record in lost {
            record.state = AnchorState::Submitted;
            record.deep_reorgs = record.deep_reorgs.saturating_add(1);
            self.save(&record).await?;
        }
        self.status.send_modify(|s| s.deep_reorgs += 1);
        Ok(Some(StepOutcome::Lost {
            from_seq,
            to_seq: newest.seq,
        }))
    }

    /// Whether the record's block is still the canonical block at its height.
    async fn still_canonical(&self, record: &AnchorRecord) -> Result<bool, AnchorError> {
        let Some((number, hash)) = record.state.block() else {
            return Ok(false);
        };
        Ok(self.chain.canonical_hash(number).await? == Some(hash))
    }

    /// The record under `seq`, which lies below the newest finalized one and so must be
    /// there and finalized.
    async fn finalized_record(&self, seq: u64) -> Result<AnchorRecord, AnchorError> {
        match self.with_store(move |s| s.record(seq)).await? {
            Some(record) if record.state.is_finalized() => Ok(record),
            Some(record) => Err(AnchorError::CorruptRecord {
                seq,
                reason: format!(
                    "{} below a finalized record (records finalize in seq order)",
                    record.state.name()
                ),
            }),
            None => Err(AnchorError::CorruptRecord {
                seq,
                reason: "missing below a finalized record".to_string(),
            }),
        }
    }
}
