//! The log export: a streaming NDJSON file an auditor can verify with nothing but the
//! log's pinned public key. Format `sworn-log-export`, version 1 (documented in
//! `ledger/README.md`):
//!
//! ```text
//! {"format":"sworn-log-export","origin":"…","public_key":"…","size":N,"type":"header","version":1}
//! {"body":"<canonical body>","index":0,"signature":"<base64>","type":"entry"}
//! …
//! {"note":"<signed checkpoint note>","size":K,"type":"checkpoint"}   ← right after entry K−1
//! …
//! {"checkpoints":C,"size":N,"type":"end"}
//! ```
//!
//! Entries come in index order, each checkpoint right after the entry that completes it,
//! and the `end` line makes truncation detectable. Content and salts are never exported.
//! The header's `public_key` is informative only: auditors pin their own.

mod reader;

use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::store::{Ledger, StoreError};

pub use reader::{ExportReader, MAX_EXPORT_LINE_BYTES};

/// Value of the header's `format` member.
pub const EXPORT_FORMAT: &str = "sworn-log-export";
/// The export version this crate writes and reads.
pub const EXPORT_VERSION: u64 = 1;

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

/// Writes the durable log as of now to `out`, returning the count of entries and
/// checkpoints written. Reads one entry at a time: memory does not grow with the log.
pub fn write_export<W: Write>(ledger: &Ledger, mut out: W) -> Result<(u64, u64), ExportError> {
    let size = ledger.size();
    write_line(
        &mut out,
        &ExportLine::Header {
            format: EXPORT_FORMAT.to_string(),
            version: EXPORT_VERSION,
            origin: ledger.origin().to_string(),
            public_key: ledger.public_key().to_vkey(),
            size,
        },
    )?;
    let mut checkpoints = ledger.checkpoints_between(1, size).peekable();
    let mut written_checkpoints = 0u64;
    for entry in ledger.entries(0, size) {
        let entry = entry?;
        let body = String::from_utf8(entry.body)
            .map_err(|_| StoreError::corrupt(format!("entry {} body is not UTF-8", entry.index)))?;
        write_line(
            &mut out,
            &ExportLine::Entry {
                index: entry.index,
                body,
                signature: BASE64.encode(entry.signature.to_bytes()),
            },
        )?;
        while let Some(Ok(cp)) = checkpoints.peek() {
            if cp.checkpoint.size != entry.index + 1 {
                break;
            }
            write_line(
                &mut out,
                &ExportLine::Checkpoint {
                    size: cp.checkpoint.size,
                    note: cp.note.clone(),
                },
            )?;
            written_checkpoints += 1;
            checkpoints.next();
        }
        if let Some(Err(_)) = checkpoints.peek() {
            if let Some(Err(e)) = checkpoints.next() {
                return Err(e.into());
            }
        }
    }
    write_line(
        &mut out,
        &ExportLine::End {
            size,
            checkpoints: written_checkpoints,
        },
    )?;
    out.flush()?;
    Ok((size, written_checkpoints))
}

fn write_line<W: Write>(out: &mut W, line: &ExportLine) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}
