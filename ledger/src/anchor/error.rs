//! What can go wrong while anchoring, split by what the anchorer does about it:
//! transient failures (the RPC is down or slow) are retried with back-off; everything
//! else is reported in the status and retried more slowly, because no amount of retrying
//! fixes a wrong key or a conflicting anchor without an operator.

use std::fmt;
use std::path::PathBuf;

use alloy::primitives::{Address, B256};

use super::contract::SwornAnchor::SwornAnchorErrors;
use super::reader::ReadError;
use crate::store::StoreError;

/// A custom error the SwornAnchor contract reverted with, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractRevert {
    /// Only the registry owner may register logs.
    NotOwner {
        /// The account that tried.
        caller: Address,
    },
    /// Only the log's admin may rotate its key or change its submitter.
    NotLogAdmin {
        /// The account that tried.
        caller: Address,
    },
    /// The sending account is not the log's registered submitter.
    NotSubmitter {
        /// The account that tried.
        caller: Address,
    },
    /// No log is registered under this id.
    UnknownLog {
        /// SHA-256 of the origin.
        log_id: B256,
    },
    /// A log is already registered under this id.
    LogAlreadyRegistered {
        /// SHA-256 of the origin.
        log_id: B256,
    },
    /// The zero address cannot be a submitter.
    ZeroSubmitter,
    /// The all-zero public key is not a key.
    ZeroPublicKey,
    /// A key rotation must apply from a seq after every anchored seq.
    KeyRotationNotForward {
        /// The seq asked for.
        from_seq: u64,
        /// The smallest acceptable seq.
        minimum: u64,
    },
    /// This seq is already anchored (anchors are write-once).
    AlreadyAnchored {
        /// The seq.
        seq: u64,
    },
    /// Seqs are contiguous and the next one is `expected`.
    SeqNotContiguous {
        /// The seq the contract expects next.
        expected: u64,
        /// The seq that was sent.
        got: u64,
    },
    /// The tree size went below the previous anchor's.
    TreeSizeDecreased {
        /// The previous anchor's tree size.
        previous: u64,
        /// The size that was sent.
        got: u64,
    },
    /// An empty tree has nothing to anchor.
    EmptyTree,
    /// Seq 1 was sent with a previous root, checkpoint hash or consistency proof.
    FirstAnchorHasPrevious,
    /// The previous root and checkpoint hash sent are not what is anchored at
    /// `previous_seq`.
    PreviousAnchorMismatch {
        /// The seq before the one being anchored.
        previous_seq: u64,
    },
    /// The consistency proof does not show the anchored tree at `previous_seq` to be a
    /// prefix of the new one: the checkpoint is not on the log's anchored history.
    InconsistentHistory {
        /// The seq before the one being anchored.
        previous_seq: u64,
        /// Its tree size.
        previous_size: u64,
        /// The tree size that was sent.
        tree_size: u64,
    },
    /// The consistency proof is longer than any valid one.
    ProofTooLong {
        /// Elements sent.
        length: u64,
        /// The contract's cap.
        max: u64,
    },
    /// Nothing is anchored at this seq.
    NotAnchored {
        /// The seq.
        seq: u64,
    },
    /// Seq 0 does not exist.
    SeqZero,
    /// A key index past the log's keys.
    KeyIndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// How many keys the log has.
        count: u64,
    },
}

impl ContractRevert {
    /// Maps the `sol!`-generated error enum onto named fields.
    pub(crate) fn from_sol(err: SwornAnchorErrors) -> Self {
        use SwornAnchorErrors as E;
        let clamp = |v: alloy::primitives::U256| u64::try_from(v).unwrap_or(u64::MAX);
        match err {
            E::NotOwner(e) => Self::NotOwner { caller: e.caller },
            E::NotLogAdmin(e) => Self::NotLogAdmin { caller: e.caller },
            E::NotSubmitter(e) => Self::NotSubmitter { caller: e.caller },
            E::UnknownLog(e) => Self::UnknownLog { log_id: e.logId },
            E::LogAlreadyRegistered(e) => Self::LogAlreadyRegistered { log_id: e.logId },
            E::ZeroSubmitter(_) => Self::ZeroSubmitter,
            E::ZeroPublicKey(_) => Self::ZeroPublicKey,
            E::KeyRotationNotForward(e) => Self::KeyRotationNotForward {
                from_seq: e.fromSeq,
                minimum: e.minimum,
            },
            E::AlreadyAnchored(e) => Self::AlreadyAnchored { seq: e.seq },
            E::SeqNotContiguous(e) => Self::SeqNotContiguous {
                expected: e.expected,
                got: e.got,
            },
            E::TreeSizeDecreased(e) => Self::TreeSizeDecreased {
                previous: e.previous,
                got: e.got,
            },
            E::EmptyTree(_) => Self::EmptyTree,
            E::FirstAnchorHasPrevious(_) => Self::FirstAnchorHasPrevious,
            E::PreviousAnchorMismatch(e) => Self::PreviousAnchorMismatch {
                previous_seq: e.previousSeq,
            },
            E::InconsistentHistory(e) => Self::InconsistentHistory {
                previous_seq: e.previousSeq,
                previous_size: e.previousSize,
                tree_size: e.treeSize,
            },
            E::ProofTooLong(e) => Self::ProofTooLong {
                length: clamp(e.length),
                max: clamp(e.max),
            },
            E::NotAnchored(e) => Self::NotAnchored { seq: e.seq },
            E::SeqZero(_) => Self::SeqZero,
            E::KeyIndexOutOfRange(e) => Self::KeyIndexOutOfRange {
                index: clamp(e.index),
                count: clamp(e.count),
            },
        }
    }
}

impl fmt::Display for ContractRevert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOwner { caller } => write!(f, "NotOwner: {caller} does not own the registry"),
            Self::NotLogAdmin { caller } => {
                write!(f, "NotLogAdmin: {caller} is not the log's admin")
            }
            Self::NotSubmitter { caller } => {
                write!(
                    f,
                    "NotSubmitter: {caller} is not the log's registered submitter"
                )
            }
            Self::UnknownLog { log_id } => write!(f, "UnknownLog: no log {log_id} is registered"),
            Self::LogAlreadyRegistered { log_id } => {
                write!(f, "LogAlreadyRegistered: log {log_id} exists")
            }
            Self::ZeroSubmitter => write!(f, "ZeroSubmitter: the zero address cannot submit"),
            Self::ZeroPublicKey => write!(f, "ZeroPublicKey: the all-zero key is not a key"),
            Self::KeyRotationNotForward { from_seq, minimum } => write!(
                f,
                "KeyRotationNotForward: a new key must apply from seq {minimum} or later, not {from_seq}"
            ),
            Self::AlreadyAnchored { seq } => {
                write!(
                    f,
                    "AlreadyAnchored: seq {seq} is already anchored (write-once)"
                )
            }
            Self::SeqNotContiguous { expected, got } => {
                write!(f, "SeqNotContiguous: the next seq is {expected}, not {got}")
            }
            Self::TreeSizeDecreased { previous, got } => write!(
                f,
                "TreeSizeDecreased: tree size {got} is below the previous anchor's {previous}"
            ),
            Self::EmptyTree => write!(f, "EmptyTree: an empty tree cannot be anchored"),
            Self::FirstAnchorHasPrevious => write!(
                f,
                "FirstAnchorHasPrevious: seq 1 takes no previous root, checkpoint hash or proof"
            ),
            Self::PreviousAnchorMismatch { previous_seq } => write!(
                f,
                "PreviousAnchorMismatch: the previous root and checkpoint hash are not what is anchored at seq {previous_seq}"
            ),
            Self::InconsistentHistory {
                previous_seq,
                previous_size,
                tree_size,
            } => write!(
                f,
                "InconsistentHistory: the tree of size {tree_size} does not extend the one anchored at seq {previous_seq} (size {previous_size})"
            ),
            Self::ProofTooLong { length, max } => write!(
                f,
                "ProofTooLong: the consistency proof has {length} elements, over the cap of {max}"
            ),
            Self::NotAnchored { seq } => write!(f, "NotAnchored: nothing is anchored at seq {seq}"),
            Self::SeqZero => write!(f, "SeqZero: seqs start at 1"),
            Self::KeyIndexOutOfRange { index, count } => {
                write!(f, "KeyIndexOutOfRange: key {index} of {count}")
            }
        }
    }
}

/// Errors of the anchorer, the chain client, deployment and the chain key.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The RPC endpoint failed, timed out or is unreachable (transient: retried).
    #[error("chain RPC failed during {operation}: {reason}")]
    Rpc {
        /// What the anchorer was doing.
        operation: &'static str,
        /// The transport's or node's message.
        reason: String,
    },
    /// The contract rejected a call with one of its custom errors.
    #[error("SwornAnchor rejected {operation}: {revert}")]
    Rejected {
        /// The contract function.
        operation: &'static str,
        /// The decoded revert.
        revert: ContractRevert,
    },
    /// The contract reverted with data that is none of its custom errors.
    #[error("SwornAnchor reverted {operation} with undecodable data 0x{data}")]
    UnknownRevert {
        /// The contract function.
        operation: &'static str,
        /// The raw revert data, hex.
        data: String,
    },
    /// The RPC serves another chain than the one the records or configuration name.
    #[error("RPC serves chain id {found}, expected {expected}")]
    ChainIdMismatch {
        /// The chain id the node reports.
        found: u64,
        /// The chain id expected.
        expected: u64,
    },
    /// No contract code at the configured address.
    #[error("no contract at {address} on chain {chain_id}")]
    NoContract {
        /// The configured address.
        address: Address,
        /// The chain asked.
        chain_id: u64,
    },
    /// The chain holds a different checkpoint under one of our seqs: two writers share
    /// this log's submitter key, or the store was restored from elsewhere.
    #[error(
        "seq {seq} is anchored on chain with tree size {chain_size} and checkpoint hash {chain_hash}, \
         not the local checkpoint (size {local_size}, hash {local_hash})"
    )]
    Conflict {
        /// The seq.
        seq: u64,
        /// Tree size on chain.
        chain_size: u64,
        /// Checkpoint hash on chain.
        chain_hash: B256,
        /// Tree size of the local record.
        local_size: u64,
        /// Checkpoint hash of the local record.
        local_hash: B256,
    },
    /// The checkpoint does not extend the checkpoint the chain holds at the previous seq,
    /// so the contract would refuse it (and rightly: anchoring it would fork the log's
    /// anchored history). Terminal for this checkpoint: the anchorer does not retry it
    /// against the same previous anchor.
    #[error(
        "checkpoint of size {tree_size} (root {root}) does not extend the checkpoint anchored at seq \
         {previous_seq} (size {previous_size}, root {previous_root}): {reason}; it will not be anchored"
    )]
    NotAnExtension {
        /// The seq it would have been anchored under.
        seq: u64,
        /// Its tree size.
        tree_size: u64,
        /// Its root.
        root: B256,
        /// The anchored seq it must extend.
        previous_seq: u64,
        /// That anchor's tree size.
        previous_size: u64,
        /// That anchor's root.
        previous_root: B256,
        /// Why it does not extend it.
        reason: String,
    },
    /// The chain holds an anchor at `seq` that neither the local record nor the chain's
    /// own `Anchored` event describes (the contract's storage disagrees with both).
    #[error("cannot tell what is anchored at seq {seq}: {reason}")]
    PreviousAnchorUnknown {
        /// The seq.
        seq: u64,
        /// What was found.
        reason: String,
    },
    /// A seq recorded locally as finalized, in a block that is still canonical, is not
    /// anchored in the contract: the anchorer points at another contract or chain than
    /// the one it anchored to. (A finalized anchor removed by a reorg deeper than finality
    /// is not an error: its block is no longer canonical, and it is anchored again.)
    #[error(
        "seq {seq} was recorded as finalized but the chain's latest anchored seq is {chain_seq}"
    )]
    FinalizedAnchorMissing {
        /// The locally finalized seq.
        seq: u64,
        /// The newest seq the contract holds.
        chain_seq: u64,
    },
    /// The ledger store failed.
    #[error("ledger store: {source}")]
    Store {
        /// The store's error.
        #[from]
        source: StoreError,
    },
    /// A stored anchor record does not decode.
    #[error("anchor record for seq {seq} is corrupt: {reason}")]
    CorruptRecord {
        /// The seq it is stored under.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// A blocking store task panicked or was cancelled.
    #[error("anchor store task failed: {reason}")]
    StoreTask {
        /// The join error.
        reason: String,
    },
    /// The chain key file is unusable.
    #[error("chain key {path}: {reason}")]
    ChainKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong (never the key itself).
        reason: String,
    },
    /// A configuration value is invalid.
    #[error("anchor configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl AnchorError {
    /// Whether retrying the same thing later may succeed without anyone intervening.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Rpc { .. } | Self::StoreTask { .. })
    }

    pub(crate) fn rpc(operation: &'static str, err: impl fmt::Display) -> Self {
        Self::Rpc {
            operation,
            reason: err.to_string(),
        }
    }

    /// Classifies a contract call failure: decoded custom error, unknown revert, or RPC.
    pub(crate) fn from_contract(operation: &'static str, err: &alloy::contract::Error) -> Self {
        if let Some(decoded) = err.as_decoded_interface_error::<SwornAnchorErrors>() {
            return Self::Rejected {
                operation,
                revert: ContractRevert::from_sol(decoded),
            };
        }
        if let Some(data) = err.as_revert_data() {
            return Self::UnknownRevert {
                operation,
                data: alloy::hex::encode(&data),
            };
        }
        Self::rpc(operation, err)
    }

    /// Whether this says the checkpoint is not on the anchored history: the local check
    /// ([`AnchorError::NotAnExtension`]) or the contract's own refusal of the previous
    /// anchor or of the consistency proof. Retrying the same checkpoint cannot help.
    pub fn is_history_refusal(&self) -> bool {
        matches!(
            self,
            Self::NotAnExtension { .. }
                | Self::Rejected {
                    revert: ContractRevert::PreviousAnchorMismatch { .. }
                        | ContractRevert::InconsistentHistory { .. }
                        | ContractRevert::ProofTooLong { .. },
                    ..
                }
        )
    }

    /// The decoded contract revert, if this is one.
    pub fn revert(&self) -> Option<&ContractRevert> {
        match self {
            Self::Rejected { revert, .. } => Some(revert),
            _ => None,
        }
    }
}

/// A failed chain read, classified as the anchorer classifies its own calls: a contract
/// call's revert is decoded, everything else is a (transient) RPC failure.
impl From<ReadError> for AnchorError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::Config { reason } => Self::Config { reason },
            ReadError::Rpc { operation, reason } => Self::Rpc { operation, reason },
            ReadError::Contract { operation, error } => Self::from_contract(operation, &error),
        }
    }
}
