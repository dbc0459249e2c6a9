//! Whole-export audit: recompute every leaf in order, check every signature under the
//! pinned key, and check every checkpoint against the tree rebuilt from the entries.
//!
//! What a passing audit establishes: the entries are contiguous from 0 with no gap or
//! duplicate; each is a canonical v1 body for this origin, signed by the pinned key, at
//! the index it claims; request ids are unique; each erasure event names an earlier entry
//! by its true leaf hash; and every checkpoint is signed by the pinned key for this origin
//! and has exactly the root of the entries before it. Consistency between checkpoints
//! follows: they are all roots of prefixes of one recomputed sequence.

use std::collections::HashSet;
use std::io::BufRead;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::SignedCheckpoint;
use crate::entry::{EntryBody, SignedEntry};
use crate::keys::{PinnedKey, Signature};
use crate::merkle::{CompactRange, Hash};

use super::reader::ExportReader;
use super::{EXPORT_FORMAT, EXPORT_VERSION, ExportError, ExportLine};

/// What an audit verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// Entries verified.
    pub size: u64,
    /// Of which receipts.
    pub receipts: u64,
    /// Of which erasure events.
    pub erasures: u64,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// Root of all entries.
    pub root: Hash,
    /// The newest checkpoint's size, if any.
    pub last_checkpoint_size: Option<u64>,
}

/// Checks an export line by line. Memory: the tree's right edge, plus one leaf hash and
/// one request id per entry (for the duplicate and erasure checks).
#[derive(Debug)]
pub struct ExportAuditor {
    key: PinnedKey,
    range: CompactRange,
    leaves: Vec<Hash>,
    request_ids: HashSet<String>,
    declared_size: Option<u64>,
    receipts: u64,
    erasures: u64,
    checkpoints: u64,
    last_checkpoint_size: Option<u64>,
    ended: bool,
}

impl ExportAuditor {
    /// An auditor trusting only `key`; the expected origin is the key's name.
    pub fn new(key: PinnedKey) -> Self {
        ExportAuditor {
            key,
            range: CompactRange::new(),
            leaves: Vec::new(),
            request_ids: HashSet::new(),
            declared_size: None,
            receipts: 0,
            erasures: 0,
            checkpoints: 0,
            last_checkpoint_size: None,
            ended: false,
        }
    }

    /// Reads and checks a whole export.
    pub fn audit<R: BufRead>(key: PinnedKey, input: R) -> Result<ExportSummary, ExportError> {
        let mut auditor = ExportAuditor::new(key);
        let mut reader = ExportReader::new(input);
        while let Some(line) = reader.next_line()? {
            auditor.feed(reader.line_number(), line)?;
        }
        auditor.finish()
    }

    /// Checks one line (`line` is its 1-based number, for error messages).
    pub fn feed(&mut self, line: u64, item: ExportLine) -> Result<(), ExportError> {
        let structure = |reason: String| ExportError::Structure { line, reason };
        if self.ended {
            return Err(structure("data after the end line".into()));
        }
        match item {
            ExportLine::Header {
                format,
                version,
                origin,
                size,
                ..
            } => {
                if self.declared_size.is_some() || line != 1 {
                    return Err(structure("header is not the first line".into()));
                }
                if format != EXPORT_FORMAT || version != EXPORT_VERSION {
                    return Err(structure(format!("unsupported export {format} v{version}")));
                }
                if origin != self.key.name() {
                    return Err(structure(format!(
                        "export is of log {origin:?}, expected {:?}",
                        self.key.name()
                    )));
                }
                self.declared_size = Some(size);
            }
            ExportLine::Entry {
                index,
                body,
                signature,
            } => {
                self.require_header(line)?;
                self.entry(index, body, &signature)?;
            }
            ExportLine::Checkpoint { size, note } => {
                self.require_header(line)?;
                self.checkpoint(size, &note)?;
            }
            ExportLine::End { size, checkpoints } => {
                self.require_header(line)?;
                if size != self.range.size() || Some(size) != self.declared_size {
                    return Err(structure(format!(
                        "end line says {size} entries; header said {:?}, read {}",
                        self.declared_size,
                        self.range.size()
                    )));
                }
                if checkpoints != self.checkpoints {
                    return Err(structure(format!(
                        "end line says {checkpoints} checkpoints, read {}",
                        self.checkpoints
                    )));
                }
                self.ended = true;
            }
        }
        Ok(())
    }

    fn require_header(&self, line: u64) -> Result<(), ExportError> {
        if self.declared_size.is_none() {
            return Err(ExportError::Structure {
                line,
                reason: "the first line must be the header".into(),
            });
        }
        Ok(())
    }

    fn entry(&mut self, index: u64, body: String, signature: &str) -> Result<(), ExportError> {
        let fail = |reason: String| ExportError::Entry { index, reason };
        let expected = self.range.size();
        if index != expected {
            return Err(fail(format!(
                "expected index {expected} (gap, duplicate or reorder)"
            )));
        }
        let sig: [u8; 64] = BASE64
            .decode(signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| fail("signature is not base64 of 64 bytes".into()))?;
        let entry = SignedEntry {
            index,
            body: body.into_bytes(),
            signature: Signature::from_bytes(&sig),
        };
        let parsed = entry.verify(&self.key).map_err(|e| fail(e.to_string()))?;
        match parsed {
            EntryBody::Receipt(receipt) => {
                if !self.request_ids.insert(receipt.request_id.clone()) {
                    return Err(fail(format!(
                        "request id {:?} repeated",
                        receipt.request_id
                    )));
                }
                self.receipts += 1;
            }
            EntryBody::Erasure(erasure) => {
                let target = usize::try_from(erasure.erased.index).ok();
                let known = target.and_then(|i| self.leaves.get(i));
                if known != Some(&erasure.erased.leaf_hash) {
                    return Err(fail(
                        "erasure names an entry that is not earlier in the log with that leaf hash"
                            .into(),
                    ));
                }
                self.erasures += 1;
            }
        }
        let leaf = entry.leaf_hash();
        self.leaves.push(leaf);
        self.range
            .push(leaf)
            .ok_or_else(|| fail("log exceeds 2^64 entries".into()))?;
        Ok(())
    }

    fn checkpoint(&mut self, size: u64, note: &str) -> Result<(), ExportError> {
        let fail = |reason: String| ExportError::Checkpoint { size, reason };
        if size != self.range.size() {
            return Err(fail(format!(
                "placed after {} entries; checkpoints follow the entry that completes them",
                self.range.size()
            )));
        }
        if self.last_checkpoint_size.is_some_and(|last| last >= size) {
            return Err(fail("checkpoint sizes must strictly increase".into()));
        }
        let signed = SignedCheckpoint::verify(note, &self.key, self.key.name())
            .map_err(|e| fail(e.to_string()))?;
        if signed.checkpoint.size != size {
            return Err(fail(format!("note says size {}", signed.checkpoint.size)));
        }
        if signed.checkpoint.root != self.range.root() {
            return Err(fail(
                "root differs from the root of the entries before it".into(),
            ));
        }
        self.checkpoints += 1;
        self.last_checkpoint_size = Some(size);
        Ok(())
    }

    /// Ends the audit: fails if the end line was never seen.
    pub fn finish(self) -> Result<ExportSummary, ExportError> {
        if !self.ended {
            return Err(ExportError::Truncated);
        }
        Ok(ExportSummary {
            size: self.range.size(),
            receipts: self.receipts,
            erasures: self.erasures,
            checkpoints: self.checkpoints,
            root: self.range.root(),
            last_checkpoint_size: self.last_checkpoint_size,
        })
    }
}
