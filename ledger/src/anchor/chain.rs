//! The anchorer's view of the chain: one SwornAnchor contract, one log, one submitting
//! account, over JSON-RPC. Every call has a deadline, so a hung RPC fails like a dead one.
//!
//! Transactions are built and signed here but broadcast separately
//! ([`AnchorChain::prepare_anchor`] then [`AnchorChain::broadcast`]), so the caller can
//! persist the transaction hash first. Nonces are never cached: each transaction takes
//! the account's `pending` nonce from the node, which stays right across restarts,
//! reorgs and dropped transactions (a single anchorer per submitting account is assumed).

use std::future::{Future, IntoFuture};
use std::time::Duration;

use alloy::consensus::TxEnvelope;
use alloy::eips::BlockNumberOrTag;
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionReceipt};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use alloy::transports::http::reqwest::Url;

use super::contract::SwornAnchor;
use super::error::AnchorError;

/// Head-room added to the node's gas estimate: the estimate is exact for the state it
/// ran against, and the anchor path's cost does not depend on state, so 20% is ample.
const GAS_MARGIN_PERCENT: u64 = 20;

/// An `Anchored` event as found on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorEvent {
    /// The seq.
    pub seq: u64,
    /// Anchored tree size.
    pub tree_size: u64,
    /// Anchored root.
    pub root: B256,
    /// Anchored checkpoint hash.
    pub checkpoint_hash: B256,
    /// The transaction that emitted it.
    pub tx_hash: B256,
    /// Its block.
    pub block_number: u64,
    /// Its block's hash.
    pub block_hash: B256,
}

/// What a transaction's receipt says, reduced to what the anchorer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inclusion {
    /// Whether the transaction succeeded.
    pub success: bool,
    /// The block's number.
    pub block_number: u64,
    /// The block's hash.
    pub block_hash: B256,
    /// Gas the transaction used.
    pub gas_used: u64,
}

/// A signed, not yet broadcast, anchoring transaction.
#[derive(Debug, Clone)]
pub struct PreparedAnchor {
    /// Its hash (known before broadcast).
    pub tx_hash: B256,
    /// The sender nonce it uses.
    pub nonce: u64,
    envelope: TxEnvelope,
}

/// The latest anchor the contract holds for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnChainLatest {
    /// Its seq (0 if none).
    pub seq: u64,
    /// Its tree size (0 if none).
    pub tree_size: u64,
}

/// A connection to SwornAnchor for one log and one submitter.
#[derive(Debug, Clone)]
pub struct AnchorChain {
    provider: DynProvider,
    contract: Address,
    log_id: B256,
    signer: PrivateKeySigner,
    wallet: EthereumWallet,
    rpc_timeout: Duration,
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
        let url: Url = rpc_url.parse().map_err(|e| AnchorError::Config {
            reason: format!("RPC URL {rpc_url:?}: {e}"),
        })?;
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(url)
            .erased();
        Ok(AnchorChain {
            provider,
            contract,
            log_id,
            wallet: EthereumWallet::from(signer.clone()),
            signer,
            rpc_timeout,
            from_block,
        })
    }

    /// The submitting account.
    pub fn submitter(&self) -> Address {
        self.signer.address()
    }

    /// The contract address.
    pub fn contract(&self) -> Address {
        self.contract
    }

    /// The log id anchored for.
    pub fn log_id(&self) -> B256 {
        self.log_id
    }

    /// The underlying provider (for tests and tooling).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    fn instance(&self) -> SwornAnchor::SwornAnchorInstance<&DynProvider> {
        SwornAnchor::new(self.contract, &self.provider)
    }

    /// Runs one RPC future under the deadline, mapping failures to [`AnchorError::Rpc`].
    async fn rpc<T, E: std::fmt::Display>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, AnchorError> {
        match tokio::time::timeout(self.rpc_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(AnchorError::rpc(operation, e)),
            Err(_) => Err(AnchorError::rpc(
                operation,
                format!("no answer within {:?}", self.rpc_timeout),
            )),
        }
    }

    /// Runs one contract call under the deadline, decoding reverts.
    async fn contract_call<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, alloy::contract::Error>>,
    ) -> Result<T, AnchorError> {
        match tokio::time::timeout(self.rpc_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(AnchorError::from_contract(operation, &e)),
            Err(_) => Err(AnchorError::rpc(
                operation,
                format!("no answer within {:?}", self.rpc_timeout),
            )),
        }
    }

    /// The chain id the node reports.
    pub async fn chain_id(&self) -> Result<u64, AnchorError> {
        self.rpc("eth_chainId", self.provider.get_chain_id()).await
    }

    /// Checks there is contract code at the configured address.
    pub async fn check_contract(&self, chain_id: u64) -> Result<(), AnchorError> {
        let code = self
            .rpc(
                "eth_getCode",
                self.provider.get_code_at(self.contract).into_future(),
            )
            .await?;
        if code.is_empty() {
            return Err(AnchorError::NoContract {
                address: self.contract,
                chain_id,
            });
        }
        Ok(())
    }

    /// The newest anchor the contract holds for the log.
    pub async fn latest(&self) -> Result<OnChainLatest, AnchorError> {
        let instance = self.instance();
        let call = instance.latest(self.log_id);
        let out = self
            .contract_call("latest", call.call().into_future())
            .await?;
        Ok(OnChainLatest {
            seq: out.seq,
            tree_size: out.a.treeSize,
        })
    }

    /// Whether the contract holds exactly this anchor at `seq`.
    pub async fn is_anchored(
        &self,
        seq: u64,
        tree_size: u64,
        root: B256,
        checkpoint_hash: B256,
    ) -> Result<bool, AnchorError> {
        let instance = self.instance();
        let call = instance.isAnchored(self.log_id, seq, tree_size, root, checkpoint_hash);
        self.contract_call("isAnchored", call.call().into_future())
            .await
    }

    /// Simulates `anchor(...)` (so a rejection comes back as a decoded custom error and
    /// costs no gas), then builds and signs the transaction with the pending nonce.
    pub async fn prepare_anchor(
        &self,
        seq: u64,
        tree_size: u64,
        root: B256,
        checkpoint_hash: B256,
    ) -> Result<PreparedAnchor, AnchorError> {
        let from = self.signer.address();
        let instance = self.instance();
        let call = instance
            .anchor(self.log_id, seq, tree_size, root, checkpoint_hash)
            .from(from);
        self.contract_call("anchor", call.call().into_future())
            .await?;

        let chain_id = self.chain_id().await?;
        let nonce = self
            .rpc(
                "eth_getTransactionCount",
                self.provider
                    .get_transaction_count(from)
                    .pending()
                    .into_future(),
            )
            .await?;
        let fees = self
            .rpc("eth_feeHistory", self.provider.estimate_eip1559_fees())
            .await?;
        let request = call.into_transaction_request();
        let gas = self
            .rpc(
                "eth_estimateGas",
                self.provider.estimate_gas(request.clone()).into_future(),
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
        match self
            .rpc(
                "eth_sendRawTransaction",
                self.provider.send_raw_transaction(&raw),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(AnchorError::Rpc { reason, .. }) if reason.contains("already known") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The receipt of `tx_hash` on the node's canonical chain, if mined there.
    pub async fn inclusion(&self, tx_hash: B256) -> Result<Option<Inclusion>, AnchorError> {
        let receipt: Option<TransactionReceipt> = self
            .rpc(
                "eth_getTransactionReceipt",
                self.provider.get_transaction_receipt(tx_hash).into_future(),
            )
            .await?;
        Ok(receipt.and_then(|r| {
            Some(Inclusion {
                success: r.status(),
                block_number: r.block_number?,
                block_hash: r.block_hash?,
                gas_used: r.gas_used,
            })
        }))
    }

    /// Whether the node knows `tx_hash` at all (mined or waiting in its pool).
    pub async fn knows_transaction(&self, tx_hash: B256) -> Result<bool, AnchorError> {
        let tx = self
            .rpc(
                "eth_getTransactionByHash",
                self.provider.get_transaction_by_hash(tx_hash).into_future(),
            )
            .await?;
        Ok(tx.is_some())
    }

    /// The number of the newest `finalized` block, if the node reports one.
    pub async fn finalized_block_number(&self) -> Result<Option<u64>, AnchorError> {
        let block = self
            .rpc(
                "eth_getBlockByNumber(finalized)",
                self.provider
                    .get_block_by_number(BlockNumberOrTag::Finalized)
                    .into_future(),
            )
            .await?;
        Ok(block.map(|b| b.header.number))
    }

    /// The hash of the canonical block at `number`, if there is one.
    pub async fn canonical_hash(&self, number: u64) -> Result<Option<B256>, AnchorError> {
        let block = self
            .rpc(
                "eth_getBlockByNumber",
                self.provider
                    .get_block_by_number(BlockNumberOrTag::Number(number))
                    .into_future(),
            )
            .await?;
        Ok(block.map(|b| b.header.hash))
    }

    /// The `Anchored` event for `seq` of this log on the canonical chain, if any.
    pub async fn find_anchor_event(&self, seq: u64) -> Result<Option<AnchorEvent>, AnchorError> {
        let filter = Filter::new()
            .address(self.contract)
            .event_signature(SwornAnchor::Anchored::SIGNATURE_HASH)
            .topic1(self.log_id)
            .topic2(B256::from(U256::from(seq)))
            .from_block(self.from_block);
        let logs = self
            .rpc("eth_getLogs", self.provider.get_logs(&filter))
            .await?;
        // The contract emits one event per (log, seq); after a reorg the node only
        // returns canonical logs, so the last one is the one that counts.
        let Some(log) = logs.last() else {
            return Ok(None);
        };
        let decoded = log
            .log_decode::<SwornAnchor::Anchored>()
            .map_err(|e| AnchorError::rpc("decode Anchored", e))?;
        let (Some(tx_hash), Some(block_number), Some(block_hash)) =
            (log.transaction_hash, log.block_number, log.block_hash)
        else {
            return Err(AnchorError::rpc(
                "eth_getLogs",
                "log without transaction or block",
            ));
        };
        let event = decoded.inner.data;
        Ok(Some(AnchorEvent {
            seq: event.seq,
            tree_size: event.treeSize,
            root: event.root,
            checkpoint_hash: event.checkpointHash,
            tx_hash,
            block_number,
            block_hash,
        }))
    }
}
