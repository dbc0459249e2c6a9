//! Following a record's transaction to finality: included, moved to another block by a
//! reorg, finalized once its block is at or below the `finalized` tag *and* still
//! canonical, or replaced when the transaction is gone (dropped, reorged out, reverted);
//! plus taking over anchors the chain holds that the store has no (matching) record of.

use super::target::Target;
use super::{Anchorer, StepOutcome};
use crate::anchor::error::AnchorError;
use crate::anchor::state::{AnchorRecord, AnchorState};
use crate::anchor::store::AnchorStore;

impl<S: AnchorStore> Anchorer<S> {
    /// Moves an unfinished record along: included, moved, finalized, or resubmitted.
    pub(super) async fn follow(
        &mut self,
        mut record: AnchorRecord,
    ) -> Result<StepOutcome, AnchorError> {
        let seq = record.seq;
        match self.chain.inclusion(record.tx_hash).await? {
            Some(inc) if inc.success => {
                let included = AnchorState::Included {
                    block_number: inc.block_number,
                    block_hash: inc.block_hash,
                };
                let mut outcome = StepOutcome::Waiting {
                    seq,
                    state: included,
                };
                if let AnchorState::Included { block_hash, .. } = record.state {
                    if block_hash != inc.block_hash {
                        tracing::warn!(seq, block = inc.block_number, "anchor moved by a reorg");
                        self.status.send_modify(|s| s.reorgs_seen += 1);
                        outcome = StepOutcome::Moved {
                            seq,
                            block_number: inc.block_number,
                        };
                    }
                }
                if record.state != included {
                    record.state = included;
                    self.save(&record).await?;
                }
                let finalized = self.chain.finalized_block_number().await?;
                if finalized.is_some_and(|f| f >= inc.block_number)
                    && self.chain.canonical_hash(inc.block_number).await? == Some(inc.block_hash)
                {
                    record.state = AnchorState::Finalized {
                        block_number: inc.block_number,
                        block_hash: inc.block_hash,
                    };
                    self.save(&record).await?;
                    tracing::info!(
                        seq,
                        block = inc.block_number,
                        size = record.tree_size,
                        "anchor finalized"
                    );
                    return Ok(StepOutcome::Finalized {
                        seq,
                        block_number: inc.block_number,
                    });
                }
                Ok(outcome)
            }
            Some(_) => {
                // Mined but reverted. Benign if another of our transactions anchored this
                // seq first. Otherwise resubmit: the simulation before sending turns a
                // lasting cause (say, a changed submitter) into a decoded error.
                if let Some(done) = self.adopt_event(&mut record).await? {
                    return Ok(done);
                }
                tracing::error!(seq, tx = %record.tx_hash, "anchor transaction reverted; resubmitting");
                self.resubmit(&record).await
            }
            None => {
                if self.chain.knows_transaction(record.tx_hash).await? {
                    if record.state != AnchorState::Submitted {
                        // Reorged out and back into the pool: wait for it again.
                        record.state = AnchorState::Submitted;
                        self.save(&record).await?;
                        self.status.send_modify(|s| s.reorgs_seen += 1);
                    }
                    return Ok(StepOutcome::Waiting {
                        seq,
                        state: record.state,
                    });
                }
                if let Some(done) = self.adopt_event(&mut record).await? {
                    return Ok(done);
                }
                if record.state != AnchorState::Submitted {
                    tracing::warn!(seq, tx = %record.tx_hash, "anchor transaction reorged out; resubmitting");
                    // Back to Submitted first, so the reorg is counted once even if the
                    // resubmission has to be retried.
                    record.state = AnchorState::Submitted;
                    self.save(&record).await?;
                    self.status.send_modify(|s| s.reorgs_seen += 1);
                } else if self.refused.as_ref().is_none_or(|r| r.attempt.seq != seq) {
                    tracing::warn!(seq, tx = %record.tx_hash, "anchor transaction unknown to the node; resubmitting");
                }
                self.resubmit(&record).await
            }
        }
    }

    /// Replaces a lost transaction under the same seq, with a fresh nonce and fees. A seq
    /// that was never final takes the newest checkpoint (it covers at least as much as
    /// the lost one); a seq that was final once and then lost to a reorg deeper than
    /// finality is re-anchored exactly as recorded, because records and bundles handed
    /// out since name that checkpoint under that seq (and the seqs above it extend it).
    async fn resubmit(&mut self, record: &AnchorRecord) -> Result<StepOutcome, AnchorError> {
        let seq = record.seq;
        let target = if record.deep_reorgs > 0 {
            Target::of_record(record)
        } else {
            let Some(checkpoint) = self.with_store(|s| s.newest_checkpoint()).await? else {
                return Err(AnchorError::CorruptRecord {
                    seq,
                    reason: "a record exists but no checkpoint does".to_string(),
                });
            };
            Target::of(&checkpoint)
        };
        let outcome = self
            .submit(seq, target, record.chain_id, Some(record))
            .await?;
        if matches!(outcome, StepOutcome::Submitted { .. }) {
            self.status.send_modify(|s| s.resubmissions += 1);
        }
        Ok(outcome)
    }

    /// If the chain holds an `Anchored` event for the record's seq, takes it over (same
    /// checkpoint) or reports a conflict (another checkpoint). `None` if there is none.
    async fn adopt_event(
        &mut self,
        record: &mut AnchorRecord,
    ) -> Result<Option<StepOutcome>, AnchorError> {
        let Some(event) = self.chain.find_anchor_event(record.seq).await? else {
            return Ok(None);
        };
        if event.tree_size != record.tree_size
            || event.root != record.root
            || event.checkpoint_hash != record.checkpoint_hash
        {
            return Err(AnchorError::Conflict {
                seq: record.seq,
                chain_size: event.tree_size,
                chain_hash: event.checkpoint_hash,
                local_size: record.tree_size,
                local_hash: record.checkpoint_hash,
            });
        }
        record.tx_hash = event.tx_hash;
        record.state = AnchorState::Included {
            block_number: event.block_number,
            block_hash: event.block_hash,
        };
        self.save(record).await?;
        Ok(Some(StepOutcome::Waiting {
            seq: record.seq,
            state: record.state,
        }))
    }

    /// Records an anchor found on chain that has no local record (restored store).
    pub(super) async fn adopt(
        &mut self,
        seq: u64,
        chain_id: u64,
    ) -> Result<StepOutcome, AnchorError> {
        let Some(event) = self.chain.find_anchor_event(seq).await? else {
            return Err(AnchorError::rpc(
                "eth_getLogs",
                format!("the contract holds seq {seq} but no Anchored event for it was found"),
            ));
        };
        let record = AnchorRecord {
            seq,
            chain_id,
            contract: self.chain.contract(),
            log_id: self.chain.log_id(),
            tree_size: event.tree_size,
            root: event.root,
            checkpoint_hash: event.checkpoint_hash,
            tx_hash: event.tx_hash,
            nonce: 0,
            state: AnchorState::Included {
                block_number: event.block_number,
                block_hash: event.block_hash,
            },
            resubmissions: 0,
            deep_reorgs: 0,
        };
        self.save(&record).await?;
        tracing::warn!(
            seq,
            "adopted an anchor found on chain without a local record"
        );
        Ok(StepOutcome::Adopted { seq })
    }
}
