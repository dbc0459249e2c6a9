//! Read-only access to one SwornAnchor contract over JSON-RPC: no key, no transaction.
//!
//! Both the anchorer ([`super::AnchorChain`], which adds a submitting account on top) and
//! the auditor's `sworn-verify` read the chain through this one client, so an `Anchored`
//! log is decoded and checked in exactly one place. Every call has a deadline, so a hung
//! endpoint fails like a dead one.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, Log, TransactionReceipt};
use alloy::sol_types::SolEvent;
use alloy::transports::http::reqwest::Url;

use super::contract::SwornAnchor;

/// Most `Anchored` events read for one log. At one anchor a minute this is ~19 years;
/// a larger answer is refused rather than buffered.
pub const MAX_ANCHOR_EVENTS: usize = 10_000_000;

/// Why a chain read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
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
    /// A contract call failed; the error is kept whole so that a caller can decode a
    /// revert (the anchorer does), and reads like any other RPC failure otherwise.
    #[error("RPC {operation}: {error}")]
    Contract {
        /// The contract function.
        operation: &'static str,
        /// alloy's error, revert data included (shown, not chained as a source, so the
        /// message reads exactly like [`ReadError::Rpc`]'s).
        error: Box<alloy::contract::Error>,
    },
}

impl ReadError {
    fn rpc(operation: &'static str, reason: impl std::fmt::Display) -> Self {
        ReadError::Rpc {
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

/// The latest anchor the contract holds for a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnChainLatest {
    /// Its seq (0 if none).
    pub seq: u64,
    /// Its tree size (0 if none).
    pub tree_size: u64,
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

/// A read-only client of one SwornAnchor contract.
#[derive(Debug, Clone)]
pub struct ChainReader {
    provider: DynProvider,
    contract: Address,
    timeout: Duration,
}

impl ChainReader {
    /// A reader of `contract` through `rpc_url`, each call bounded by `timeout`; nothing
    /// is sent until the first call.
    pub fn new(rpc_url: &str, contract: Address, timeout: Duration) -> Result<Self, ReadError> {
        let url: Url = rpc_url.parse().map_err(|e| ReadError::Config {
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

    /// The underlying provider (for tests and tooling).
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    pub(crate) fn instance(&self) -> SwornAnchor::SwornAnchorInstance<&DynProvider> {
        SwornAnchor::new(self.contract, &self.provider)
    }

    /// Runs `fut` under the deadline.
    async fn deadline<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = T>,
    ) -> Result<T, ReadError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ReadError::rpc(operation, format!("no answer within {:?}", self.timeout)))
    }

    /// Runs one RPC future under the deadline; a failure becomes [`ReadError::Rpc`].
    pub(crate) async fn within<T, E: std::fmt::Display>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, ReadError> {
        self.deadline(operation, fut)
            .await?
            .map_err(|e| ReadError::rpc(operation, e))
    }

    /// Runs one contract call under the deadline; a failure keeps alloy's error
    /// ([`ReadError::Contract`]).
    pub(crate) async fn call<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, alloy::contract::Error>>,
    ) -> Result<T, ReadError> {
        self.deadline(operation, fut)
            .await?
            .map_err(|error| ReadError::Contract {
                operation,
                error: Box::new(error),
            })
    }

    /// The chain id the endpoint reports.
    pub async fn chain_id(&self) -> Result<u64, ReadError> {
        self.within("eth_chainId", self.provider.get_chain_id())
            .await
    }

    /// Whether the pinned address holds code.
    pub async fn has_code(&self) -> Result<bool, ReadError> {
        let code = self
            .within(
                "eth_getCode",
                self.provider.get_code_at(self.contract).into_future(),
            )
            .await?;
        Ok(!code.is_empty())
    }

    /// The Ed25519 key the contract records for checkpoint `seq` of `log_id`.
    pub async fn key_for_seq(&self, log_id: B256, seq: u64) -> Result<[u8; 32], ReadError> {
        let instance = self.instance();
        let out = self
            .call(
                "keyForSeq",
                instance.keyForSeq(log_id, seq).call().into_future(),
            )
            .await?;
        Ok(out.publicKey.0)
    }

    /// The newest anchor the contract holds for `log_id`.
    pub async fn latest(&self, log_id: B256) -> Result<OnChainLatest, ReadError> {
        let instance = self.instance();
        let out = self
            .call("latest", instance.latest(log_id).call().into_future())
            .await?;
        Ok(OnChainLatest {
            seq: out.seq,
            tree_size: out.a.treeSize,
        })
    }

    /// Whether contract storage holds exactly this anchor (independent of events).
    pub async fn is_anchored(
        &self,
        log_id: B256,
        seq: u64,
        tree_size: u64,
        root: B256,
        checkpoint_hash: B256,
    ) -> Result<bool, ReadError> {
        let instance = self.instance();
        let call = instance.isAnchored(log_id, seq, tree_size, root, checkpoint_hash);
        self.call("isAnchored", call.call().into_future()).await
    }

    /// Every `Anchored` event of `log_id` on the canonical chain from `from_block`, in
    /// chain order; `seq` narrows the search to one anchor.
    pub async fn anchored_events(
        &self,
        log_id: B256,
        seq: Option<u64>,
        from_block: u64,
    ) -> Result<Vec<AnchoredEvent>, ReadError> {
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
            return Err(ReadError::rpc(
                "eth_getLogs",
                format!("{} events, over the cap of {MAX_ANCHOR_EVENTS}", logs.len()),
            ));
        }
        logs.iter().map(|log| decode(self.contract, log)).collect()
    }

    /// The receipt of `tx_hash` on the endpoint's canonical chain, if mined there.
    pub async fn inclusion(&self, tx_hash: B256) -> Result<Option<Inclusion>, ReadError> {
        let receipt: Option<TransactionReceipt> = self
            .within(
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

    /// Whether the endpoint knows `tx_hash` at all (mined or waiting in its pool).
    pub async fn knows_transaction(&self, tx_hash: B256) -> Result<bool, ReadError> {
        let tx = self
            .within(
                "eth_getTransactionByHash",
                self.provider.get_transaction_by_hash(tx_hash).into_future(),
            )
            .await?;
        Ok(tx.is_some())
    }

    /// The hash of the canonical block at `number`, if any.
    pub async fn canonical_hash(&self, number: u64) -> Result<Option<B256>, ReadError> {
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
    pub async fn finalized_number(&self) -> Result<Option<u64>, ReadError> {
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

/// Decodes one `Anchored` log returned for a filter on `contract`. The endpoint is not
/// trusted: a log from another address, one that does not decode as `Anchored`, or one
/// without its transaction and block (a pending log) is refused.
fn decode(contract: Address, log: &Log) -> Result<AnchoredEvent, ReadError> {
    if log.address() != contract {
        return Err(ReadError::rpc("eth_getLogs", "log from another contract"));
    }
    let decoded = log
        .log_decode::<SwornAnchor::Anchored>()
        .map_err(|e| ReadError::rpc("decode Anchored", e))?;
    let (Some(tx_hash), Some(block_number), Some(block_hash)) =
        (log.transaction_hash, log.block_number, log.block_hash)
    else {
        return Err(ReadError::rpc(
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::LogData;

    const CONTRACT: Address = Address::repeat_byte(0xa1);

    fn anchored() -> SwornAnchor::Anchored {
        SwornAnchor::Anchored {
            logId: B256::repeat_byte(1),
            seq: 7,
            treeSize: 42,
            root: B256::repeat_byte(2),
            checkpointHash: B256::repeat_byte(3),
        }
    }

    /// A mined log at `address` carrying `data`.
    fn log(address: Address, data: LogData) -> Log {
        Log {
            inner: alloy::primitives::Log { address, data },
            block_hash: Some(B256::repeat_byte(4)),
            block_number: Some(99),
            transaction_hash: Some(B256::repeat_byte(5)),
            ..Log::default()
        }
    }

    fn rpc_reason(err: ReadError) -> (&'static str, String) {
        match err {
            ReadError::Rpc { operation, reason } => (operation, reason),
            other => panic!("expected an RPC error, got {other:?}"),
        }
    }

    #[test]
    fn a_mined_anchored_log_decodes_into_every_field() {
        let event = decode(CONTRACT, &log(CONTRACT, anchored().encode_log_data())).unwrap();
        assert_eq!(
            event,
            AnchoredEvent {
                seq: 7,
                tree_size: 42,
                root: B256::repeat_byte(2),
                checkpoint_hash: B256::repeat_byte(3),
                tx_hash: B256::repeat_byte(5),
                block_number: 99,
                block_hash: B256::repeat_byte(4),
            }
        );
    }

    #[test]
    fn a_log_from_another_contract_is_refused() {
        let other = Address::repeat_byte(0xb2);
        let err = decode(CONTRACT, &log(other, anchored().encode_log_data())).unwrap_err();
        assert_eq!(
            rpc_reason(err),
            ("eth_getLogs", "log from another contract".to_string())
        );
    }

    #[test]
    fn a_pending_log_without_block_or_transaction_is_refused() {
        for strip in 0..3 {
            let mut pending = log(CONTRACT, anchored().encode_log_data());
            match strip {
                0 => pending.transaction_hash = None,
                1 => pending.block_number = None,
                _ => pending.block_hash = None,
            }
            let err = decode(CONTRACT, &pending).unwrap_err();
            assert_eq!(
                rpc_reason(err),
                (
                    "eth_getLogs",
                    "log without transaction or block".to_string()
                ),
                "field {strip} missing"
            );
        }
    }

    #[test]
    fn a_log_that_is_not_anchored_is_refused() {
        // Right topics, truncated data: the ABI decoder must reject it.
        let mut data = anchored().encode_log_data();
        let topics = data.topics().to_vec();
        let short = data.data.slice(..data.data.len() - 1);
        data = LogData::new_unchecked(topics, short);
        let (operation, _) = rpc_reason(decode(CONTRACT, &log(CONTRACT, data)).unwrap_err());
        assert_eq!(operation, "decode Anchored");

        // Another event's signature under the right address.
        let other = LogData::new_unchecked(vec![B256::repeat_byte(9)], Default::default());
        let (operation, _) = rpc_reason(decode(CONTRACT, &log(CONTRACT, other)).unwrap_err());
        assert_eq!(operation, "decode Anchored");
    }

    #[test]
    fn a_contract_error_reads_like_an_rpc_failure() {
        let inner = alloy::contract::Error::UnknownFunction("keyForSeq".into());
        let shown = format!("RPC latest: {inner}");
        let err = ReadError::Contract {
            operation: "latest",
            error: Box::new(inner),
        };
        assert_eq!(err.to_string(), shown);
        // Not chained, so a reporter walking sources does not print it twice.
        assert!(std::error::Error::source(&err).is_none());
    }
}
