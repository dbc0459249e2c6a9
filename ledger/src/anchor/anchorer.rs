//! The anchorer: a tokio task that anchors the newest sealed checkpoint and follows its
//! transaction to finality, one seq at a time.
//!
//! Each pass ([`Anchorer::step`]) first checks that the newest finalized anchor's block
//! is still canonical: a reorg deeper than finality demotes the lost finalized records so
//! they are anchored again ([`StepOutcome::Lost`]; see `anchorer/lost.rs`). Then it does
//! exactly one of:
//! - follow the lowest record that is not finalized (`anchorer/follow.rs`): adopt a new
//!   block if a reorg moved the transaction, finalize it once its block is at or below
//!   the `finalized` tag *and* still canonical, or resubmit the seq if the transaction
//!   is gone;
//! - otherwise, if a checkpoint newer than the last anchor exists, submit the newest one
//!   under the next seq (`anchorer/submit.rs`). Because the log is one append-only tree,
//!   that single anchor covers every checkpoint sealed since the previous one, so a
//!   backlog left by an RPC outage drains in one transaction.
//!
//! The next seq is only submitted once the previous one is final: seqs must be
//! contiguous on chain, and a reorg of seq `n` would otherwise strand seq `n + 1`. So
//! records are always finalized ones from seq 1 up, then unfinished ones (one, or after a
//! deep reorg the lost seqs being anchored again).
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

mod follow;
mod lost;
mod submit;
mod target;

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::backoff::{Backoff, BackoffPolicy};
use super::chain::AnchorChain;
use super::error::AnchorError;
use super::state::{AnchorRecord, AnchorState, AnchorStatus};
use super::store::AnchorStore;
use target::{Refusal, Target};

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
    /// A reorg deeper than finality removed the finalized anchors `from_seq..=to_seq`
    /// (their blocks are no longer canonical); their records are `Submitted` again and
    /// they are anchored again, each with the checkpoint it records.
    Lost {
        /// The lowest seq lost.
        from_seq: u64,
        /// The highest seq lost (the newest finalized one).
        to_seq: u64,
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
        let (finalized, unfinished) = self.with_store(finalized_and_unfinished).await?;
        if let Some(record) = &finalized {
            if let Some(lost) = self.check_finality_held(record).await? {
                return Ok(lost);
            }
        }
        if let Some(record) = unfinished {
            self.check_record_chain(&record, chain_id)?;
            return self.follow(record).await;
        }
        let local_seq = finalized.as_ref().map_or(0, |r| r.seq);
        let on_chain = self.chain.latest().await?;
        if on_chain.seq < local_seq {
            // The record's block is canonical, yet the contract does not hold it: not a
            // reorg but another contract (or chain) than the one anchored to.
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
        self.submit(local_seq + 1, Target::of(&checkpoint), chain_id, None)
            .await
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
                let current = s.last_record()?.map(|r| (r.seq, r.state));
                let (finalized, _) = finalized_and_unfinished(s)?;
                let newest = s.newest_checkpoint()?.map_or(0, |c| c.checkpoint.size);
                Ok((current, finalized, newest))
            })
            .await;
        let refusal = self.refused.as_ref().map(|r| r.reason.clone());
        self.status.send_modify(|status| {
            if let Ok((current, finalized, newest)) = &snapshot {
                status.current = *current;
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

/// The newest finalized record and the lowest unfinished one above it (each if any).
/// Records finalize in seq order, so this walks down from the newest record only past
/// unfinished ones: one at most, except while lost seqs are anchored again.
fn finalized_and_unfinished<S: AnchorStore>(
    store: &S,
) -> Result<(Option<AnchorRecord>, Option<AnchorRecord>), AnchorError> {
    let mut unfinished = None;
    let mut next = store.last_record()?;
    while let Some(record) = next {
        if record.state.is_finalized() {
            return Ok((Some(record), unfinished));
        }
        let below = record.seq.saturating_sub(1);
        unfinished = Some(record);
        next = match below {
            0 => None,
            seq => Some(
                store
                    .record(seq)?
                    .ok_or_else(|| AnchorError::CorruptRecord {
                        seq,
                        reason: "missing below a newer record".to_string(),
                    })?,
            ),
        };
    }
    Ok((None, unfinished))
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
