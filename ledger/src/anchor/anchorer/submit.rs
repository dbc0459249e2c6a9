//! Submitting an anchor: what the contract holds at `seq - 1`, the ledger's consistency
//! proof from it (checked here before anything is sent), the simulated call, and the
//! write-ahead record before the broadcast. A checkpoint that does not extend the anchored
//! history is refused once and remembered, so it is not tried again against the same
//! previous anchor.

use alloy::primitives::B256;

use super::target::{Attempt, Refusal, Target};
use super::{Anchorer, StepOutcome};
use crate::anchor::chain::PreviousAnchor;
use crate::anchor::error::AnchorError;
use crate::anchor::state::{AnchorRecord, AnchorState};
use crate::anchor::store::AnchorStore;
use crate::merkle::{Hash, verify_consistency};

impl<S: AnchorStore> Anchorer<S> {
    /// What the contract holds at `seq - 1` (`None` for seq 1): the local record if the
    /// contract's storage confirms it, otherwise the chain's own (confirmed) anchor there,
    /// e.g. when a reorg replaced it.
    async fn previous_anchor(&self, seq: u64) -> Result<Option<PreviousAnchor>, AnchorError> {
        let previous_seq = seq.saturating_sub(1);
        if previous_seq == 0 {
            return Ok(None);
        }
        if let Some(record) = self.with_store(move |s| s.record(previous_seq)).await? {
            if self
                .chain
                .is_anchored(
                    previous_seq,
                    record.tree_size,
                    record.root,
                    record.checkpoint_hash,
                )
                .await?
            {
                return Ok(Some(PreviousAnchor {
                    seq: previous_seq,
                    tree_size: record.tree_size,
                    root: record.root,
                    checkpoint_hash: record.checkpoint_hash,
                }));
            }
            tracing::warn!(
                seq = previous_seq,
                size = record.tree_size,
                "the local anchor record is not what the contract holds; extending the chain's"
            );
        }
        match self.chain.anchored_at(previous_seq).await? {
            Some(previous) => Ok(Some(previous)),
            None => Err(AnchorError::PreviousAnchorUnknown {
                seq: previous_seq,
                reason: "the contract holds no anchor there".to_string(),
            }),
        }
    }

    /// The ledger's consistency proof from `previous` to `target`, checked here: a proof
    /// that does not verify means the checkpoint is not on the anchored history
    /// ([`AnchorError::NotAnExtension`]).
    async fn extension_proof(
        &self,
        seq: u64,
        target: Target,
        previous: &PreviousAnchor,
    ) -> Result<Vec<B256>, AnchorError> {
        let Target {
            tree_size, root, ..
        } = target;
        let not_an_extension = |reason: String| AnchorError::NotAnExtension {
            seq,
            tree_size,
            root,
            previous_seq: previous.seq,
            previous_size: previous.tree_size,
            previous_root: previous.root,
            reason,
        };
        let old_size = previous.tree_size;
        if tree_size < old_size {
            return Err(not_an_extension("it is the smaller tree".to_string()));
        }
        let path = self
            .with_store(move |s| s.consistency_path(old_size, tree_size))
            .await?;
        verify_consistency(
            old_size,
            tree_size,
            &Hash(previous.root.0),
            &Hash(root.0),
            &path,
        )
        .map_err(|e| {
            not_an_extension(format!(
                "the ledger's consistency proof from size {old_size} does not verify against the anchored root ({e})"
            ))
        })?;
        Ok(path.iter().map(|h| B256::from(h.0)).collect())
    }

    /// Remembers `attempt` as refused (it is not tried again as long as it stays the
    /// same), logs why, and hands the error back.
    fn refuse(&mut self, attempt: Attempt, error: AnchorError) -> AnchorError {
        let previous = attempt.previous.as_ref();
        tracing::error!(
            seq = attempt.seq,
            size = attempt.tree_size,
            root = %attempt.root,
            previous_size = previous.map_or(0, |p| p.tree_size),
            previous_root = %previous.map_or(B256::ZERO, |p| p.root),
            error = %error,
            "checkpoint refused: it does not extend the anchored history; it will not be retried"
        );
        self.refused = Some(Refusal {
            attempt,
            reason: error.to_string(),
        });
        error
    }

    /// Signs, records (durably) and broadcasts an anchor of `target` under `seq`, as an
    /// extension of the anchor at `seq - 1`. `replaces` is the record of a lost
    /// transaction for the same seq, whose counters carry on.
    pub(super) async fn submit(
        &mut self,
        seq: u64,
        target: Target,
        chain_id: u64,
        replaces: Option<&AnchorRecord>,
    ) -> Result<StepOutcome, AnchorError> {
        let Target {
            tree_size,
            root,
            checkpoint_hash,
        } = target;
        let previous = self.previous_anchor(seq).await?;
        let attempt = Attempt {
            seq,
            tree_size,
            root,
            previous,
        };
        if self.refused.as_ref().is_some_and(|r| r.attempt == attempt) {
            return Ok(StepOutcome::Refused { seq, tree_size });
        }
        let (prev_root, prev_hash, consistency) = match &previous {
            None => (B256::ZERO, B256::ZERO, Vec::new()),
            Some(previous) => match self.extension_proof(seq, target, previous).await {
                Ok(path) => (previous.root, previous.checkpoint_hash, path),
                Err(e @ AnchorError::NotAnExtension { .. }) => return Err(self.refuse(attempt, e)),
                Err(e) => return Err(e),
            },
        };
        let prepared = match self
            .chain
            .prepare_anchor(
                seq,
                tree_size,
                root,
                checkpoint_hash,
                prev_root,
                prev_hash,
                &consistency,
            )
            .await
        {
            Ok(prepared) => prepared,
            Err(e) if e.is_history_refusal() => return Err(self.refuse(attempt, e)),
            Err(e) => return Err(e),
        };
        self.refused = None;
        let record = AnchorRecord {
            seq,
            chain_id,
            contract: self.chain.contract(),
            log_id: self.chain.log_id(),
            tree_size,
            root,
            checkpoint_hash,
            tx_hash: prepared.tx_hash,
            nonce: prepared.nonce,
            state: AnchorState::Submitted,
            resubmissions: replaces.map_or(0, |r| r.resubmissions.saturating_add(1)),
            deep_reorgs: replaces.map_or(0, |r| r.deep_reorgs),
        };
        // Write-ahead: once broadcast, the transaction must be findable after a crash.
        self.save(&record).await?;
        self.chain.broadcast(&prepared).await?;
        tracing::info!(seq, size = tree_size, tx = %prepared.tx_hash, "anchor submitted");
        Ok(StepOutcome::Submitted {
            seq,
            tx_hash: prepared.tx_hash,
            resubmission: replaces.is_some(),
        })
    }
}
