//! The sequential half of an audit: order, tree, checkpoints and anchors, folded over
//! entries that were already verified in parallel.

use std::collections::HashSet;

use alloy::primitives::B256;
use sha2::{Digest, Sha256};
use sworn_ledger::entry::EntryBody;
use sworn_ledger::export::{EXPORT_FORMAT, EXPORT_VERSION};
use sworn_ledger::key_history::KeyHistory;
use sworn_ledger::merkle::CompactRange;

use super::dedup::DuplicateFinder;
use super::finding::{Finding, Findings};
use super::leaves::LeafFile;
use super::order::{OrderEvent, OrderTracker};
use super::outcome::AuditSummary;
use super::verify::{CheckedEntry, RawEntry};
use crate::chain::AnchoredEvent;
use crate::report::Layer;

/// An anchor being matched against the stream.
#[derive(Debug)]
pub(super) struct PendingAnchor {
    pub(super) event: AnchoredEvent,
    pub(super) root_ok: Option<bool>,
    pub(super) note_seen: bool,
}

pub(super) struct Auditor<'k> {
    pub(super) key: &'k KeyHistory,
    pub(super) range: CompactRange,
    pub(super) order: OrderTracker,
    pub(super) request_ids: DuplicateFinder,
    pub(super) leaves: LeafFile,
    /// Indices of the erasure events seen, and of the entries they erased. Erasures are
    /// rare administrative acts, so these stay small however long the log.
    pub(super) erasure_events: HashSet<u64>,
    pub(super) erased: HashSet<u64>,
    pub(super) findings: Findings,
    pub(super) summary: AuditSummary,
    pub(super) declared_size: Option<u64>,
    pub(super) last_checkpoint: Option<u64>,
    pub(super) ended: bool,
    /// Anchors sorted by tree size; `next_anchor` is the first not yet reached.
    pub(super) anchors: Vec<PendingAnchor>,
    pub(super) next_anchor: usize,
    pub(super) progress: indicatif::ProgressBar,
}

impl<'k> Auditor<'k> {
    pub(super) fn find(
        &mut self,
        layer: Layer,
        kind: &'static str,
        line: Option<u64>,
        index: Option<u64>,
        detail: String,
    ) {
        self.findings.push(Finding {
            layer,
            kind,
            line,
            index,
            detail,
        });
    }

    pub(super) fn header(
        &mut self,
        line: u64,
        format: &str,
        version: u64,
        origin: &str,
        size: u64,
    ) {
        if line != 1 || self.declared_size.is_some() {
            self.find(
                Layer::Log,
                "misplaced-header",
                Some(line),
                None,
                "header is not the first line".into(),
            );
            return;
        }
        if format != EXPORT_FORMAT || version != EXPORT_VERSION {
            self.find(
                Layer::Log,
                "unsupported-format",
                Some(line),
                None,
                format!("{format} v{version}"),
            );
        }
        if origin != self.key.origin() {
            self.find(
                Layer::Log,
                "wrong-origin",
                Some(line),
                None,
                format!(
                    "export is of log {origin:?}, the pinned origin is {:?}",
                    self.key.origin()
                ),
            );
        }
        self.declared_size = Some(size);
        self.progress.set_length(size);
    }

    pub(super) fn entry(
        &mut self,
        line: u64,
        raw: &RawEntry,
        checked: CheckedEntry,
    ) -> std::io::Result<()> {
        let index = raw.index;
        match self.order.see(index) {
            OrderEvent::InOrder => {}
            OrderEvent::Gap { from, to } => self.find(
                Layer::Log,
                "gap",
                Some(line),
                Some(index),
                format!("entry {index} came where entry {from} was due: entries {from}..{} skipped here", to - 1),
            ),
            OrderEvent::Reordered { after } => self.find(
                Layer::Log,
                "reordered",
                Some(line),
                Some(index),
                format!("entry {index} comes after entry {after}: out of order"),
            ),
            OrderEvent::Duplicate => self.find(
                Layer::Log,
                "duplicate-index",
                Some(line),
                Some(index),
                format!("entry {index} appears a second time"),
            ),
        }
        match checked.verdict {
            Ok(EntryBody::Receipt(body)) => {
                self.summary.receipts += 1;
                self.request_ids.push(&body.request_id, index)?;
            }
            Ok(EntryBody::Erasure(erasure)) => {
                self.summary.erasures += 1;
                let target = erasure.erased.index;
                let problem = if self.leaves.get(target)? != Some(erasure.erased.leaf_hash) {
                    Some(format!(
                        "erasure names entry {target} with a leaf hash that is not that entry's"
                    ))
                } else if self.erasure_events.contains(&target) {
                    Some(format!(
                        "erasure names entry {target}, itself an erasure event: only receipts \
                         have content to erase"
                    ))
                } else if !self.erased.insert(target) {
                    Some(format!("entry {target} is erased a second time"))
                } else {
                    None
                };
                if let Some(detail) = problem {
                    self.find(Layer::Log, "bad-erasure", Some(line), Some(index), detail);
                }
                self.erasure_events.insert(index);
            }
            Err(reason) => self.find(Layer::Log, "bad-entry", Some(line), Some(index), reason),
        }
        self.leaves.push(&checked.leaf)?;
        if self.range.push(checked.leaf).is_none() {
            self.find(
                Layer::Log,
                "too-large",
                Some(line),
                Some(index),
                "more than 2^64 entries".into(),
            );
        }
        self.summary.entries += 1;
        self.reach_size();
        self.progress.inc(1);
        Ok(())
    }

    /// Compares every anchor whose tree size the stream just reached with the root.
    pub(super) fn reach_size(&mut self) {
        let size = self.range.size();
        while let Some(pending) = self.anchors.get(self.next_anchor) {
            if pending.event.tree_size > size {
                break;
            }
            let root = self.range.root();
            let ok = pending.event.tree_size == size && pending.event.root == B256::from(root.0);
            self.anchors[self.next_anchor].root_ok = Some(ok);
            if !ok {
                let event = self.anchors[self.next_anchor].event.clone();
                self.find(
                    Layer::Anchor,
                    "anchor-root-mismatch",
                    None,
                    Some(event.tree_size),
                    format!(
                        "anchor seq {} (block {}) says the root of the first {} entries is {}; the export gives {}",
                        event.seq,
                        event.block_number,
                        event.tree_size,
                        event.root,
                        root.to_hex()
                    ),
                );
            }
            self.next_anchor += 1;
        }
    }

    pub(super) fn checkpoint(&mut self, line: u64, size: u64, note: &str) {
        self.summary.checkpoints += 1;
        let here = self.range.size();
        let mut ok = true;
        if size != here {
            ok = false;
            self.find(
                Layer::Log,
                "misplaced-checkpoint",
                Some(line),
                Some(size),
                format!("checkpoint of size {size} placed after {here} entries"),
            );
        }
        if self.last_checkpoint.is_some_and(|last| last >= size) {
            ok = false;
            self.find(
                Layer::Log,
                "checkpoint-order",
                Some(line),
                Some(size),
                format!(
                    "checkpoint sizes must increase; {size} follows {:?}",
                    self.last_checkpoint
                ),
            );
        }
        self.last_checkpoint = Some(self.last_checkpoint.map_or(size, |l| l.max(size)));
        match self.key.verify_checkpoint(note).map(|(signed, _)| signed) {
            Err(e) => {
                ok = false;
                self.find(
                    Layer::Log,
                    "bad-checkpoint",
                    Some(line),
                    Some(size),
                    e.to_string(),
                );
            }
            Ok(signed) => {
                if signed.checkpoint.size != size {
                    ok = false;
                    self.find(
                        Layer::Log,
                        "checkpoint-size",
                        Some(line),
                        Some(size),
                        format!(
                            "line says size {size}, the signed note says {}",
                            signed.checkpoint.size
                        ),
                    );
                } else if size == here && signed.checkpoint.root != self.range.root() {
                    ok = false;
                    self.find(
                        Layer::Log,
                        "checkpoint-root",
                        Some(line),
                        Some(size),
                        format!(
                            "signed root {} is not the recomputed root {} of the first {size} entries",
                            signed.checkpoint.root.to_hex(),
                            self.range.root().to_hex()
                        ),
                    );
                }
                let hash = B256::from(<[u8; 32]>::from(Sha256::digest(note.as_bytes())));
                for pending in &mut self.anchors {
                    if pending.event.checkpoint_hash == hash {
                        pending.note_seen = true;
                    }
                }
            }
        }
        if ok {
            self.summary.checkpoints_reproduced += 1;
        }
    }

    pub(super) fn end(&mut self, line: u64, size: u64, checkpoints: u64) {
        if self.declared_size != Some(size) || size != self.range.size() {
            self.find(
                Layer::Log,
                "end-size",
                Some(line),
                None,
                format!(
                    "end line says {size} entries; header said {:?}, read {}",
                    self.declared_size,
                    self.range.size()
                ),
            );
        }
        if checkpoints != self.summary.checkpoints {
            self.find(
                Layer::Log,
                "end-checkpoints",
                Some(line),
                None,
                format!(
                    "end line says {checkpoints} checkpoints, read {}",
                    self.summary.checkpoints
                ),
            );
        }
        self.ended = true;
    }
}
