//! The anchorer: a tokio task that anchors the newest sealed checkpoint and follows its
//! transaction to finality, one seq at a time.
//!
//! Each pass ([`Anchorer::step`]) does exactly one of:
//! - follow the newest record if it is not finalized yet: adopt a new block if a reorg
//!   moved the transaction, finalize it once its block is at or below the `finalized` tag
//!   *and* still canonical, or resubmit the seq if the transaction is gone;
//! - otherwise, if a checkpoint newer than the last anchor exists, submit the newest one
//!   under the next seq. Because the log is one append-only tree, that single anchor
//!   covers every checkpoint sealed since the previous one, so a backlog left by an RPC
//!   outage drains in one transaction.
//!
//! The next seq is only submitted once the previous one is final: seqs must be
//! contiguous on chain, and a reorg of seq `n` would otherwise strand seq `n + 1`.
//!
//! Every anchor after the first extends the one before it, and the contract checks it:
//! the anchorer sends the root and checkpoint hash that the contract holds at `seq - 1`
//! (its own record, confirmed against contract storage, or else the chain's event for
//! that seq, also confirmed) and the ledger's RFC 9162 consistency proof from that tree
//! to the new one. It checks the proof itself before sending anything, so a checkpoint
//! that does not extend the anchored history (another ledger's, say, under the same
//! origin) is never anchored: it is refused with [`AnchorError::NotAnExtension`] (or the
//! contract's own `InconsistentHistory`/`PreviousAnchorMismatch`), logged once, shown in
//! the status, and not tried again against the same previous anchor
//! ([`StepOutcome::Refused`]); a newer checkpoint, or a different anchor at `seq - 1`
//! after a reorg, is considered afresh.
//!
//! The task never blocks serving: it runs on the async runtime, its store calls run on
//! the blocking pool, every RPC has a deadline, and failures only delay it (bounded,
//! jittered back-off) and show up in [`AnchorStatus`].

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::backoff::{Backoff, BackoffPolicy};
use super::chain::{AnchorChain, PreviousAnchor};
use super::contract::checkpoint_hash;
use super::error::AnchorError;
use super::state::{AnchorRecord, AnchorState, AnchorStatus};
use super::store::AnchorStore;
use crate::checkpoint::SignedCheckpoint;
use crate::merkle::{Hash, verify_consistency};

/// How the anchorer talks to the chain and how often it looks.
#[derive(Debug, Clone)]
pub struct AnchorConfig {
    /// JSON-RPC endpoint (http or https).
    pub rpc_url: String,
    /// The SwornAnchor contract.
    pub contract: Address,
    /// The chain id the contract lives on; `None` takes the node's at first contact.
    pub chain_id: Option<u64>,
    /// The log's origin (its id on chain is SHA-256 of it).
    pub origin: String,
    /// The block the contract was deployed in (lower bound for event searches).
    pub deploy_block: u64,
    /// Pause between passes while all is well.
    pub poll_interval: Duration,
    /// Deadline for each RPC call.
    pub rpc_timeout: Duration,
    /// Back-off between failing passes.
    pub backoff: BackoffPolicy,
}

impl AnchorConfig {
    /// Defaults for everything but the endpoint, contract and origin: poll every second
    /// (a local Anvil block time), 10 s per RPC call, back-off from 250 ms to 30 s.
    pub fn new(rpc_url: &str, contract: Address, origin: &str) -> Self {
        AnchorConfig {
            rpc_url: rpc_url.to_string(),
            contract,
            chain_id: None,
            origin: origin.to_string(),
            deploy_block: 0,
            poll_interval: Duration::from_secs(1),
            rpc_timeout: Duration::from_secs(10),
            backoff: BackoffPolicy::default(),
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// Nothing to do: no checkpoint newer than the last finalized anchor.
    Idle,
    /// A transaction for `seq` was signed, recorded and broadcast.
    Submitted {
        /// The seq.
        seq: u64,
        /// Its transaction.
        tx_hash: B256,
        /// Whether it replaces a dropped or reorged-out transaction for the same seq.
        resubmission: bool,
    },
    /// The record for `seq` is waiting (in the pool, or in a block not final yet).
    Waiting {
        /// The seq.
        seq: u64,
        /// Its state.
        state: AnchorState,
    },
    /// The record for `seq` moved to another block (a reorg re-included it).
    Moved {
        /// The seq.
        seq: u64,
        /// The new block.
        block_number: u64,
    },
    /// `seq` reached finality.
    Finalized {
        /// The seq.
        seq: u64,
        /// Its block.
        block_number: u64,
    },
    /// Anchors found on chain with no local record were recorded (e.g. after restoring
    /// the store from a backup).
    Adopted {
        /// The seq adopted.
        seq: u64,
    },
    /// The newest checkpoint was already refused against the anchor now at `seq - 1`
    /// (it does not extend it); nothing was sent. The reason stays in the status.
    Refused {
        /// The seq it would be anchored under.
        seq: u64,
        /// Its tree size.
        tree_size: u64,
    },
}

/// One attempt to anchor a checkpoint under a seq on top of a previous anchor: what a
/// refusal is remembered by.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Attempt {
    seq: u64,
    tree_size: u64,
    root: B256,
    previous: Option<PreviousAnchor>,
}

/// A refused attempt and why.
#[derive(Debug, Clone)]
struct Refusal {
    attempt: Attempt,
    reason: String,
}

/// The anchoring state machine over a store and a chain connection.
#[derive(Debug)]
pub struct Anchorer<S: AnchorStore> {
    store: Arc<S>,
    chain: AnchorChain,
    config: AnchorConfig,
    chain_id: Option<u64>,
    status: watch::Sender<AnchorStatus>,
    refused: Option<Refusal>,
}

impl<S: AnchorStore> Anchorer<S> {
    /// An anchorer for `config`, signing with `signer`. Makes no RPC call: the chain may
    /// well be down when the service starts.
    pub fn new(
        config: AnchorConfig,
        signer: alloy::signers::local::PrivateKeySigner,
        store: Arc<S>,
    ) -> Result<Self, AnchorError> {
        let chain = AnchorChain::new(
            &config.rpc_url,
            config.contract,
            super::contract::log_id(&config.origin),
            signer,
            config.rpc_timeout,
            config.deploy_block,
        )?;
        let (status, _) = watch::channel(AnchorStatus::default());
        Ok(Anchorer {
            store,
            chain,
            chain_id: config.chain_id,
            config,
            status,
            refused: None,
        })
    }

    /// The chain connection (for tests and tooling).
    pub fn chain(&self) -> &AnchorChain {
        &self.chain
    }

    /// A receiver of status updates (one per pass).
    pub fn subscribe(&self) -> watch::Receiver<AnchorStatus> {
        self.status.subscribe()
    }

    /// Runs one pass; see the module documentation.
    pub async fn step(&mut self) -> Result<StepOutcome, AnchorError> {
        let chain_id = self.ensure_chain().await?;
        let last = self.with_store(|s| s.last_record()).await?;
        if let Some(record) = last.as_ref().filter(|r| !r.state.is_finalized()) {
            self.check_record_chain(record, chain_id)?;
            return self.follow(record.clone()).await;
        }
        let local_seq = last.as_ref().map_or(0, |r| r.seq);
        let on_chain = self.chain.latest().await?;
        if on_chain.seq < local_seq {
            return Err(AnchorError::FinalizedAnchorMissing {
                seq: local_seq,
                chain_seq: on_chain.seq,
            });
        }
        if on_chain.seq > local_seq {
            return self.adopt(local_seq + 1, chain_id).await;
        }
        let Some(checkpoint) = self.with_store(|s| s.newest_checkpoint()).await? else {
            return Ok(StepOutcome::Idle);
        };
        if checkpoint.checkpoint.size <= on_chain.tree_size {
            return Ok(StepOutcome::Idle);
        }
        self.submit(local_seq + 1, &checkpoint, chain_id, 0).await
    }

    /// Checks the node's chain id against the configured or recorded one, once.
    async fn ensure_chain(&mut self) -> Result<u64, AnchorError> {
        let found = self.chain.chain_id().await?;
        match self.chain_id {
            Some(expected) if expected != found => {
                Err(AnchorError::ChainIdMismatch { found, expected })
            }
            Some(_) => Ok(found),
            None => {
                self.chain.check_contract(found).await?;
                self.chain_id = Some(found);
                Ok(found)
            }
        }
    }

    fn check_record_chain(&self, record: &AnchorRecord, chain_id: u64) -> Result<(), AnchorError> {
        if record.chain_id != chain_id {
            return Err(AnchorError::ChainIdMismatch {
                found: chain_id,
                expected: record.chain_id,
            });
        }
        if record.contract != self.chain.contract() {
            return Err(AnchorError::Config {
                reason: format!(
                    "seq {} is in flight on contract {}, but the anchorer is configured for {}",
                    record.seq,
                    record.contract,
                    self.chain.contract()
                ),
            });
        }
        Ok(())
    }

    /// Moves an unfinished record along: included, moved, finalized, or resubmitted.
    async fn follow(&mut self, mut record: AnchorRecord) -> Result<StepOutcome, AnchorError> {
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

    /// Replaces a lost transaction: same seq, newest checkpoint (it covers at least as
    /// much as the lost one), fresh nonce and fees.
    async fn resubmit(&mut self, record: &AnchorRecord) -> Result<StepOutcome, AnchorError> {
        let seq = record.seq;
        let Some(checkpoint) = self.with_store(|s| s.newest_checkpoint()).await? else {
            return Err(AnchorError::CorruptRecord {
                seq,
                reason: "a record exists but no checkpoint does".to_string(),
            });
        };
        let outcome = self
            .submit(
                seq,
                &checkpoint,
                record.chain_id,
                record.resubmissions.saturating_add(1),
            )
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
    async fn adopt(&mut self, seq: u64, chain_id: u64) -> Result<StepOutcome, AnchorError> {
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
        };
        self.save(&record).await?;
        tracing::warn!(
            seq,
            "adopted an anchor found on chain without a local record"
        );
        Ok(StepOutcome::Adopted { seq })
    }

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

    /// The ledger's consistency proof from `previous` to the tree of `tree_size` with
    /// `root`, checked here: a proof that does not verify means the checkpoint is not on
    /// the anchored history ([`AnchorError::NotAnExtension`]).
    async fn extension_proof(
        &self,
        seq: u64,
        tree_size: u64,
        root: B256,
        previous: &PreviousAnchor,
    ) -> Result<Vec<B256>, AnchorError> {
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

    /// Signs, records (durably) and broadcasts an anchor of `checkpoint` under `seq`, as
    /// an extension of the anchor at `seq - 1`.
    async fn submit(
        &mut self,
        seq: u64,
        checkpoint: &SignedCheckpoint,
        chain_id: u64,
        resubmissions: u32,
    ) -> Result<StepOutcome, AnchorError> {
        let root = B256::from(checkpoint.checkpoint.root.0);
        let hash = checkpoint_hash(checkpoint);
        let tree_size = checkpoint.checkpoint.size;
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
            Some(previous) => match self.extension_proof(seq, tree_size, root, previous).await {
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
                hash,
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
            checkpoint_hash: hash,
            tx_hash: prepared.tx_hash,
            nonce: prepared.nonce,
            state: AnchorState::Submitted,
            resubmissions,
        };
        // Write-ahead: once broadcast, the transaction must be findable after a crash.
        self.save(&record).await?;
        self.chain.broadcast(&prepared).await?;
        tracing::info!(seq, size = tree_size, tx = %prepared.tx_hash, "anchor submitted");
        Ok(StepOutcome::Submitted {
            seq,
            tx_hash: prepared.tx_hash,
            resubmission: resubmissions > 0,
        })
    }

    async fn save(&self, record: &AnchorRecord) -> Result<(), AnchorError> {
        let record = record.clone();
        self.with_store(move |s| s.save_record(&record)).await
    }

    /// Runs a store call on the blocking pool (sled flushes must not stall the runtime).
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&S) -> Result<T, AnchorError> + Send + 'static,
    ) -> Result<T, AnchorError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| AnchorError::StoreTask {
                reason: e.to_string(),
            })?
    }

    /// Refreshes the published status from the store and the last pass's result.
    async fn publish(&self, result: &Result<StepOutcome, AnchorError>, failures: u32) {
        let snapshot = self
            .with_store(|s| {
                let last = s.last_record()?;
                let finalized = match &last {
                    Some(r) if r.state.is_finalized() => Some(r.clone()),
                    Some(r) if r.seq > 1 => s.record(r.seq - 1)?,
                    _ => None,
                };
                let newest = s.newest_checkpoint()?.map_or(0, |c| c.checkpoint.size);
                Ok((last, finalized, newest))
            })
            .await;
        let refusal = self.refused.as_ref().map(|r| r.reason.clone());
        self.status.send_modify(|status| {
            if let Ok((last, finalized, newest)) = &snapshot {
                status.current = last.as_ref().map(|r| (r.seq, r.state));
                status.finalized_seq = finalized.as_ref().map_or(0, |r| r.seq);
                status.finalized_tree_size = finalized.as_ref().map_or(0, |r| r.tree_size);
                status.newest_checkpoint_size = *newest;
                status.lag_entries = newest.saturating_sub(status.finalized_tree_size);
            }
            status.consecutive_failures = failures;
            match result {
                // A refused checkpoint keeps its reason in view until something changes.
                Ok(StepOutcome::Refused { .. }) => {
                    status.rpc_healthy = true;
                    status.last_error = refusal;
                }
                Ok(_) => {
                    status.rpc_healthy = true;
                    status.last_error = None;
                }
                Err(e) => {
                    status.rpc_healthy = !matches!(e, AnchorError::Rpc { .. });
                    status.last_error = Some(e.to_string());
                }
            }
        });
    }

    /// Starts the anchoring loop as a tokio task.
    pub fn spawn(mut self) -> AnchorerHandle {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let status = self.status.subscribe();
        let join = tokio::spawn(async move {
            let mut backoff = Backoff::new(self.config.backoff);
            loop {
                let result = self.step().await;
                let pause = match &result {
                    Ok(
                        StepOutcome::Idle
                        | StepOutcome::Waiting { .. }
                        | StepOutcome::Refused { .. },
                    ) => {
                        backoff.reset();
                        self.config.poll_interval
                    }
                    // Progress: look again at once, the next state may already be there.
                    Ok(_) => {
                        backoff.reset();
                        Duration::ZERO
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        if e.is_transient() {
                            tracing::debug!(error = %e, ?delay, "anchorer: chain unavailable");
                        } else if e.is_history_refusal() {
                            // Logged where it was refused, with the details.
                            tracing::debug!(error = %e, ?delay, "anchorer: checkpoint refused");
                        } else {
                            tracing::error!(error = %e, ?delay, "anchorer: pass failed");
                        }
                        delay
                    }
                };
                self.publish(&result, backoff.failures()).await;
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop_rx.changed() => break,
                }
                if *stop_rx.borrow() {
                    break;
                }
            }
        });
        AnchorerHandle {
            status,
            stop: stop_tx,
            join,
        }
    }
}

/// A running anchorer: its status, and a way to stop it.
#[derive(Debug)]
pub struct AnchorerHandle {
    status: watch::Receiver<AnchorStatus>,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl AnchorerHandle {
    /// The status after the latest pass.
    pub fn status(&self) -> AnchorStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status update (for metrics or waiting in tests).
    pub fn subscribe(&self) -> watch::Receiver<AnchorStatus> {
        self.status.clone()
    }

    /// Stops the loop after its current pass (a pass in flight completes, so a
    /// transaction is never broadcast without its record) and waits for it.
    pub async fn shutdown(self) {
        // The task may already have ended; then there is nobody to tell.
        let _ = self.stop.send(true);
        if let Err(e) = self.join.await {
            tracing::error!(error = %e, "anchorer task ended abnormally");
        }
    }
}
