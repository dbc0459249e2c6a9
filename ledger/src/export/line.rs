//! The lines of an export (`sworn-log-export` v1) and the errors of writing, reading and
//! auditing one: the format both `writer` and `reader` speak, depending on neither.

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// Value of the header's `format` member.
pub const EXPORT_FORMAT: &str = "sworn-log-export";
/// The export version this crate writes and reads.
pub const EXPORT_VERSION: u64 = 1;
/// Longest line accepted: a canonical body is at most 64 KiB, at most doubled by JSON
/// string escaping, plus the line's own members.
pub const MAX_EXPORT_LINE_BYTES: usize = 160 * 1024;

/// One line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ExportLine {
    /// First line: what follows.
    Header {
        /// Always [`EXPORT_FORMAT`].
        format: String,
        /// Always [`EXPORT_VERSION`].
        version: u64,
        /// The log's origin.
        origin: String,
        /// The log's verifier key (informative; pin your own).
        public_key: String,
        /// Number of entries that follow.
        size: u64,
    },
    /// One log entry.
    Entry {
        /// Its index.
        index: u64,
        /// Canonical body text.
        body: String,
        /// Ed25519 signature over the body, base64.
        signature: String,
    },
    /// A signed checkpoint, placed right after the entry that completes it.
    Checkpoint {
        /// Its tree size.
        size: u64,
        /// The complete signed note.
        note: String,
    },
    /// Last line.
    End {
        /// Number of entries written.
        size: u64,
        /// Number of checkpoints written.
        checkpoints: u64,
    },
}

/// Why an export could not be written, read or verified.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading or writing failed.
    #[error("export I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Reading the ledger failed.
    #[error("ledger: {0}")]
    Store(#[from] StoreError),
    /// A line is longer than [`MAX_EXPORT_LINE_BYTES`].
    #[error("line {line} is longer than {max} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: u64,
        /// The cap.
        max: usize,
    },
    /// A line is not a valid export line.
    #[error("line {line} is not a valid export line: {reason}")]
    BadLine {
        /// 1-based line number.
        line: u64,
        /// What was wrong.
        reason: String,
    },
    /// Lines are out of order, missing, or follow the end line.
    #[error("line {line}: {reason}")]
    Structure {
        /// 1-based line number.
        line: u64,
        /// What was wrong.
        reason: String,
    },
    /// An entry did not verify.
    #[error("entry {index}: {reason}")]
    Entry {
        /// Its index.
        index: u64,
        /// What failed.
        reason: String,
    },
    /// A checkpoint did not verify or does not match the recomputed tree.
    #[error("checkpoint at size {size}: {reason}")]
    Checkpoint {
        /// Its size.
        size: u64,
        /// What failed.
        reason: String,
    },
    /// The export ended without its `end` line.
    #[error("export is truncated: no end line")]
    Truncated,
}
