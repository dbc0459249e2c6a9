//! The anchorer's view of the chain: one SwornAnchor contract, one log, one submitting
//! account, over JSON-RPC. Reads go through the shared [`ChainReader`] (which also decodes
//! `Anchored` events for the verifier); this file adds the log, the account and the
//! transactions. Every call has a deadline, so a hung RPC fails like a dead one.
//!
//! Transactions are built and signed here but broadcast separately
//! ([`AnchorChain::prepare_anchor`] then [`AnchorChain::broadcast`]), so the caller can
//! persist the transaction hash first. Nonces are never cached: each transaction takes
//! the account's `pending` nonce from the node, which stays right across restarts,
//! reorgs and dropped transactions (a single anchorer per submitting account is assumed).

use std::future::IntoFuture;
use std::time::Duration;

use alloy::consensus::TxEnvelope;
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;

use super::error::AnchorError;
use super::reader::{AnchoredEvent, ChainReader, Inclusion, OnChainLatest};

/// Head-room added to the node's gas estimate: the estimate is exact for the state it
/// ran against, and the anchor path's cost depends only on the call's own arguments (the
/// consistency proof's length and shape) and on slots that are warm or cold the same way
/// whatever the state, so 20% is ample.
const GAS_MARGIN_PERCENT: u64 = 20;

/// A signed, not yet broadcast, anchoring transaction.
#[derive(Debug, Clone)]
pub struct PreparedAnchor {
    /// Its hash (known before broadcast).
    pub tx_hash: B256,
    /// The sender nonce it uses.
    pub nonce: u64,
    envelope: TxEnvelope,
}

/// An anchored checkpoint that the next anchor must extend: what the contract holds at
/// `seq` (the seq before the one being anchored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviousAnchor {
    /// Its seq.
    pub seq: u64,
    /// Its tree size.
    pub tree_size: u64,
    /// Its root.
    pub root: B256,
    /// SHA-256 of its signed checkpoint note.
    pub checkpoint_hash: B256,
}

/// A connection to SwornAnchor for one log and one submitter.
#[derive(Debug, Clone)]
pub struct AnchorChain {
    reader: ChainReader,
    log_id: B256,
    signer: PrivateKeySigner,
    wallet: EthereumWallet,
    from_block: u64,
}

impl AnchorChain {
    /// A client for `contract` at `rpc_url`, anchoring `log_id` as `signer`. Nothing is
    /// sent until the first call; `from_block` bounds event searches (the deploy block).
    pub fn new(
        rpc_url: &str,
        contract: Address,
        log_id: B256,
        signer: PrivateKeySigner,
        rpc_timeout: Duration,
        from_block: u64,
    ) -> Result<Self, AnchorError> {
        Ok(AnchorChain {
            reader: ChainReader::new(rpc_url, contract, rpc_timeout)?,
            log_id,
            wallet: EthereumWallet::from(signer.clone()),
            signer,
            from_block,
        })
    }

    /// The submitting account.
    pub fn submitter(&self) -> Address {
        self.signer.address()
    }

    /// The contract address.
    pub fn contract(&self) -> Address {
        self.reader.contract()
    }

    /// The log id anchored for.
    pub fn log_id(&self) -> B256 {
        self.log_id
    }

    /// The underlying provider (for tests and tooling).
    pub fn provider(&self) -> &DynProvider {
        self.reader.provider()
    }

    /// The chain id the node reports.
    pub async fn chain_id(&self) -> Result<u64, AnchorError> {
        Ok(self.reader.chain_id().await?)
    }

    /// Checks there is contract code at the configured address.
    pub async fn check_contract(&self, chain_id: u64) -> Result<(), AnchorError> {
        if !self.reader.has_code().await? {
            return Err(AnchorError::NoContract {
                address: self.contract(),
                chain_id,
            });
        }
        Ok(())
    }

    /// The newest anchor the contract holds for the log.
    pub async fn latest(&self) -> Result<OnChainLatest, AnchorError> {
        Ok(self.reader.latest(self.log_id).await?)
    }

    /// Whether the contract holds exactly this anchor at `seq`.
    pub async fn is_anchored(
        &self,
        seq: u64,
        tree_size: u64,
        root: B256,
        checkpoint_hash: B256,
    ) -> Result<bool, AnchorError> {
        Ok(self
            .reader
            .is_anchored(self.log_id, seq, tree_size, root, checkpoint_hash)
            .await?)
    }

    /// Simulates `anchor(...)` (so a rejection comes back as a decoded custom error and
    /// costs no gas), then builds and signs the transaction with the pending nonce.
    ///
    /// `prev_root` and `prev_checkpoint_hash` are what the contract holds at `seq - 1`
    /// (zero for seq 1), and `consistency` the RFC 9162 consistency proof from that
    /// anchor's tree to this one (empty for seq 1 and for an equal size).
    pub async fn prepare_anchor(
        &self,
        seq: u64,
        tree_size: u64,
        root: B256,
        checkpoint_hash: B256,
        prev_root: B256,
        prev_checkpoint_hash: B256,
        consistency: &[B256],
    ) -> Result<PreparedAnchor, AnchorError> {
        let from = self.signer.address();
        let reader = &self.reader;
        let provider = reader.provider();
        let instance = reader.instance();
        let call = instance
            .anchor(
                self.log_id,
                seq,
                tree_size,
                root,
                checkpoint_hash,
                prev_root,
                prev_checkpoint_hash,
                consistency.to_vec(),
            )
            .from(from);
        reader.call("anchor", call.call().into_future()).await?;

        let chain_id = self.chain_id().await?;
        let nonce = reader
            .within(
                "eth_getTransactionCount",
                provider.get_transaction_count(from).pending().into_future(),
            )
            .await?;
        let fees = reader
            .within("eth_feeHistory", provider.estimate_eip1559_fees())
            .await?;
        let request = call.into_transaction_request();
        let gas = reader
            .within(
                "eth_estimateGas",
                provider.estimate_gas(request.clone()).into_future(),
            )
            .await?;
        let request = request
            .with_chain_id(chain_id)
            .with_nonce(nonce)
            .with_gas_limit(gas.saturating_add(gas * GAS_MARGIN_PERCENT / 100))
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas);
        let envelope = request
            .build(&self.wallet)
            .await
            .map_err(|e| AnchorError::rpc("sign transaction", e))?;
        Ok(PreparedAnchor {
            tx_hash: *envelope.tx_hash(),
            nonce,
            envelope,
        })
    }

    /// Broadcasts a prepared transaction. A node that already knows it is not an error.
    pub async fn broadcast(&self, prepared: &PreparedAnchor) -> Result<(), AnchorError> {
        let raw = prepared.envelope.encoded_2718();
        let sent = self
            .reader
            .within(
                "eth_sendRawTransaction",
                self.provider().send_raw_transaction(&raw),
            )
            .await;
        match sent.map_err(AnchorError::from) {
            Ok(_) => Ok(()),
            Err(AnchorError::Rpc { reason, .. }) if reason.contains("already known") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The receipt of `tx_hash` on the node's canonical chain, if mined there.
    pub async fn inclusion(&self, tx_hash: B256) -> Result<Option<Inclusion>, AnchorError> {
        Ok(self.reader.inclusion(tx_hash).await?)
    }

    /// Whether the node knows `tx_hash` at all (mined or waiting in its pool).
    pub async fn knows_transaction(&self, tx_hash: B256) -> Result<bool, AnchorError> {
        Ok(self.reader.knows_transaction(tx_hash).await?)
    }

    /// The number of the newest `finalized` block, if the node reports one.
    pub async fn finalized_block_number(&self) -> Result<Option<u64>, AnchorError> {
        Ok(self.reader.finalized_number().await?)
    }

    /// The hash of the canonical block at `number`, if there is one.
    pub async fn canonical_hash(&self, number: u64) -> Result<Option<B256>, AnchorError> {
        Ok(self.reader.canonical_hash(number).await?)
    }

    /// What the contract holds at `seq`, told by the `Anchored` event and confirmed
    /// against storage (`isAnchored`), so a stale or forged log cannot stand in for it.
    /// `None` if nothing is anchored there.
    pub async fn anchored_at(&self, seq: u64) -> Result<Option<PreviousAnchor>, AnchorError> {
        let Some(event) = self.find_anchor_event(seq).await? else {
            return Ok(None);
        };
        if !self
            .is_anchored(seq, event.tree_size, event.root, event.checkpoint_hash)
            .await?
        {
            return Err(AnchorError::PreviousAnchorUnknown {
                seq,
                reason: format!(
                    "the Anchored event (size {}, root {}) is not what the contract stores",
                    event.tree_size, event.root
                ),
            });
        }
        Ok(Some(PreviousAnchor {
            seq,
            tree_size: event.tree_size,
            root: event.root,
            checkpoint_hash: event.checkpoint_hash,
        }))
    }

    /// The `Anchored` event for `seq` of this log on the canonical chain, if any.
    pub async fn find_anchor_event(&self, seq: u64) -> Result<Option<AnchoredEvent>, AnchorError> {
        let mut events = self
            .reader
            .anchored_events(self.log_id, Some(seq), self.from_block)
            .await?;
        // The contract emits one event per (log, seq); after a reorg the node only
        // returns canonical logs, so the last one is the one that counts.
        Ok(events.pop())
    }
}
