//! Errors of the sled-backed ledger.

use crate::checkpoint::CheckpointError;
use crate::receipt::BodyError;

/// Why a ledger operation failed. `Sled` and `Corrupt` are storage faults (the operation
/// may be retried after the operator intervenes); the rest describe the request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an I/O or internal error.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// Stored data is not what this crate wrote (missing node, undecodable record, …).
    #[error("store is corrupt: {what}")]
    Corrupt {
        /// What was found wrong.
        what: String,
    },
    /// The append request does not make a valid body.
    #[error("invalid append request: {0}")]
    Body(#[from] BodyError),
    /// Content larger than the configured cap.
    #[error("{field} content is {len} bytes, over the cap of {max}")]
    ContentTooLarge {
        /// `prompt` or `response`.
        field: &'static str,
        /// Bytes given.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A receipt with this request id already exists (ids are unique per log).
    #[error("request id {request_id:?} is already in the log")]
    DuplicateRequestId {
        /// The id.
        request_id: String,
    },
    /// No such request id, index or checkpoint.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked up.
        what: String,
    },
    /// The content of this receipt was already erased.
    #[error("the content of request {request_id:?} was already erased")]
    AlreadyErased {
        /// The id.
        request_id: String,
    },
    /// A proof was asked for sizes or indices the log does not have durably.
    #[error("invalid proof request: {reason}")]
    InvalidProofRequest {
        /// Which precondition failed.
        reason: String,
    },
    /// The store belongs to another origin or key than the configuration names.
    #[error("store identity mismatch: {what}")]
    IdentityMismatch {
        /// Which identity field differs.
        what: &'static str,
    },
    /// The configured key is one the log retired by a rotation: the log now signs with a
    /// newer key, and a retired key must not sign again.
    #[error(
        "the configured log key (key id {key_id}) was retired when the log rotated to key id \
         {current_key_id} at tree size {from_size}; start with the current key's file \
         (docs/OPERATIONS.md, \"Log-key rotation\")"
    )]
    RetiredKey {
        /// The configured key's note key id, hex.
        key_id: String,
        /// The current key's note key id, hex.
        current_key_id: String,
        /// The tree size from which the current key signs.
        from_size: u64,
    },
    /// A key rotation was begun (recorded in the store before the chain transaction) and
    /// not completed: whether the chain holds it is unknown here, so the log does not serve.
    #[error(
        "a rotation to log key id {key_id} (from tree size {from_size}, anchor seq \
         {from_seq}) was begun and not completed; run `sworn log-key rotate` again with the \
         same --new-key to finish it, or with --abort to cancel it if the chain does not \
         hold it (docs/OPERATIONS.md, \"Log-key rotation\")"
    )]
    KeyRotationPending {
        /// The new key's note key id, hex.
        key_id: String,
        /// The tree size it was to sign from.
        from_size: u64,
        /// The anchor seq it was to sign from.
        from_seq: u64,
    },
    /// A key rotation was asked for in a state that does not allow it.
    #[error("key rotation: {reason}")]
    KeyRotation {
        /// Why not.
        reason: String,
    },
    /// Signing a checkpoint failed.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The ledger stopped writing after a storage fault (see [`crate::store::Ledger::fault`]);
    /// restarting the process reopens the store, which then proves itself again.
    #[error("the ledger stopped writing after a storage fault ({cause}); restart to recover")]
    Halted {
        /// The first fault.
        cause: String,
    },
    /// The writer thread has stopped (the ledger is shutting down or hit a fatal error).
    #[error("the ledger writer has stopped")]
    Closed,
    /// The store no longer holds what the log acknowledged or signed, as its high-water
    /// record remembers it (entries lost, or a signed checkpoint missing or changed). The
    /// log refuses to start rather than sign an index a second time.
    #[error("the log refuses to start: {what}")]
    HistoryLost {
        /// What is missing or different, and where the record is.
        what: String,
    },
    /// The high-water record beside the store is missing, damaged, unreadable or belongs
    /// to another log.
    #[error("high-water record {}: {reason}", path.display())]
    HighWaterRecord {
        /// Where the record is (or should be).
        path: std::path::PathBuf,
        /// What is wrong with it, and what to do.
        reason: String,
    },
    /// The configuration is unusable.
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corrupt { what: what.into() }
    }
}
