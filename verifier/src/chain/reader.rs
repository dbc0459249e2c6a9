//! Read-only access to the SwornAnchor contract over JSON-RPC: no key, no transaction.
//!
//! Every call has a deadline, so a hung endpoint fails like a dead one. The bindings are
//! ledger's (`sworn_ledger::anchor::SwornAnchor`, generated from the committed artifact),
//! so the verifier decodes exactly the events and views the anchorer uses.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;
use alloy::transports::http::reqwest::Url;
use sworn_ledger::anchor::SwornAnchor;

/// Most `Anchored` events read for one log. At one anchor a minute this is ~19 years;
/// a larger answer is refused rather than buffered.
pub const MAX_ANCHOR_EVENTS: usize = 10_000_000;

/// Why a chain query failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC URL or contract address is unusable.
    #[error("chain configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The endpoint failed, timed out or answered something unusable.
    #[error("RPC {operation}: {reason}")]
    Rpc {
        /// The call.
        operation: &'static str,
        /// What happened.
        reason: String,
    },
}

impl ChainError {
    fn rpc(operation: &'static str, reason: impl std::fmt::Display) -> Self {
        ChainError::Rpc {
            operation,
            reason: reason.to_string(),
        }
    }
}

/// An `Anchored` event found on the canonical chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchoredEvent {
    /// Anchor sequence number.
    pub seq: u64,
    /// Anchored tree size.
    pub tree_size: u64,
    /// Anchored root.
    pub root: B256,
    /// Anchored SHA-256 of the signed checkpoint note.
    pub checkpoint_hash: B256,
    /// Transaction that emitted it.
    pub tx_hash: B256,
    /// Its block number.
    pub block_number: u64,
    /// Its block hash.
    pub block_hash: B256,
}

/// A read-only client of one SwornAnchor contract.
#[derive(Debug, Clone)]
pub struct ChainReader {
    provider: DynProvider,
    contract: Address,
    timeout: Duration,
}

impl ChainReader {
    /// A reader of `contract` through `rpc_url`; nothing is sent until the first call.
    pub fn new(rpc_url: &str, contract: Address, timeout: Duration) -> Result<Self, ChainError> {
        let url: Url = rpc_url.parse().map_err(|e| ChainError::Config {
            reason: format!("RPC URL {rpc_url:?}: {e}"),
        })?;
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(url)
            .erased();
        Ok(ChainReader {
            provider,
            contract,
            timeout,
        })
    }

    /// The pinned contract.
    pub fn contract(&self) -> Address {
        self.contract
    }

    async fn within<T, E: std::fmt::Display>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, ChainError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ChainError::rpc(operation, e)),
            Err(_) => Err(ChainError::rpc(
                operation,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }

    fn instance(&self) -> SwornAnchor::SwornAnchorInstance<&DynProvider> {
        SwornAnchor::new(self.contract, &self.provider)
    }

    /// The chain id the endpoint reports.
    pub async fn chain_id(&self) -> Result<u64, ChainError> {
        self.within("eth_chainId", self.provider.get_chain_id())
            .await
    }

    /// Whether the pinned address holds code.
    pub async fn has_code(&self) -> Result<bool, ChainError> {
        let code = self
            .within(
                "eth_getCode",
                self.provider.get_code_at(self.contract).into_future(),
            )
            .await?;
        Ok(!code.is_empty())
    }

    /// The Ed25519 key the contract records for checkpoint `seq` of `log_id`.
    pub async fn key_for_seq(&self, log_id: B256, seq: u64) -> Result<[u8; 32], ChainError> {
        let instance = self.instance();
        let out = self
            .within(
                "keyForSeq",
                instance.keyForSeq(log_id, seq).call().into_future(),
            )
            .await?;
        Ok(out.publicKey.0)
    }

    /// The newest anchored seq of `log_id` (0 if none).
    pub async fn latest_seq(&self, log_id: B256) -> Result<u64, ChainError> {
        let instance = self.instance();
        let out = self
            .within("latest", instance.latest(log_id).call().into_future())
            .await?;
        Ok(out.seq)
    }

    /// Whether contract storage holds exactly this anchor (independent of events).
    pub async fn is_anchored(
        &self,
        log_id: B256,
        seq: u64,
        tree_size: u64,
        root: B256,
        checkpoint_hash: B256,
    ) -> Result<bool, ChainError> {
        let instance = self.instance();
        let call = instance.isAnchored(log_id, seq, tree_size, root, checkpoint_hash);
        self.within("isAnchored", call.call().into_future()).await
    }

    /// Every `Anchored` event of `log_id` on the canonical chain from `from_block`, in
    /// chain order; `seq` narrows the search to one anchor.
    pub async fn anchored_events(
        &self,
        log_id: B256,
        seq: Option<u64>,
        from_block: u64,
    ) -> Result<Vec<AnchoredEvent>, ChainError> {
        let mut filter = Filter::new()
            .address(self.contract)
            .event_signature(SwornAnchor::Anchored::SIGNATURE_HASH)
            .topic1(log_id)
            .from_block(from_block);
        if let Some(seq) = seq {
            filter = filter.topic2(B256::from(U256::from(seq)));
        }
        let logs = self
            .within("eth_getLogs", self.provider.get_logs(&filter))
            .await?;
        if logs.len() > MAX_ANCHOR_EVENTS {
            return Err(ChainError::rpc(
                "eth_getLogs",
                format!("{} events, over the cap of {MAX_ANCHOR_EVENTS}", logs.len()),
            ));
        }
        logs.iter().map(|log| self.decode(log)).collect()
    }

    fn decode(&self, log: &Log) -> Result<AnchoredEvent, ChainError> {
        if log.address() != self.contract {
            return Err(ChainError::rpc("eth_getLogs", "log from another contract"));
        }
        let decoded = log
            .log_decode::<SwornAnchor::Anchored>()
            .map_err(|e| ChainError::rpc("decode Anchored", e))?;
        let (Some(tx_hash), Some(block_number), Some(block_hash)) =
            (log.transaction_hash, log.block_number, log.block_hash)
        else {
            return Err(ChainError::rpc(
                "eth_getLogs",
                "log without transaction or block",
            ));
        };
        let event = decoded.inner.data;
        Ok(AnchoredEvent {
            seq: event.seq,
            tree_size: event.treeSize,
            root: event.root,
            checkpoint_hash: event.checkpointHash,
            tx_hash,
            block_number,
            block_hash,
        })
    }

    /// The block (number, hash) holding `tx_hash` on the canonical chain, if mined there.
    pub async fn transaction_block(
        &self,
        tx_hash: B256,
    ) -> Result<Option<(u64, B256)>, ChainError> {
        let receipt = self
            .within(
                "eth_getTransactionReceipt",
                self.provider.get_transaction_receipt(tx_hash).into_future(),
            )
            .await?;
        Ok(receipt.and_then(|r| Some((r.block_number?, r.block_hash?))))
    }

    /// The hash of the canonical block at `number`, if any.
    pub async fn canonical_hash(&self, number: u64) -> Result<Option<B256>, ChainError> {
        let block = self
            .within(
                "eth_getBlockByNumber",
                self.provider
                    .get_block_by_number(BlockNumberOrTag::Number(number))
                    .into_future(),
            )
            .await?;
        Ok(block.map(|b| b.header.hash))
    }

    /// The newest `finalized` block number, if the endpoint reports one.
    pub async fn finalized_number(&self) -> Result<Option<u64>, ChainError> {
        let block = self
            .within(
                "eth_getBlockByNumber(finalized)",
                self.provider
                    .get_block_by_number(BlockNumberOrTag::Finalized)
                    .into_future(),
            )
            .await?;
        Ok(block.map(|b| b.header.number))
    }
}
