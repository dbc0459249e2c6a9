//! Whole-log audit of an NDJSON export (`sworn-log-export` v1, see `ledger/README.md`),
//! streamed in bounded memory.
//!
//! Every entry is recomputed in order: its leaf hash from its body, its signature under
//! the pinned key, its index against the ones before it (gap, duplicate, reorder). The
//! tree is the ledger's compact range — one hash per set bit of the size, O(log n) — so
//! each checkpoint is reproduced by comparing the running root when the stream reaches
//! its size. Request-id uniqueness is an external sort on disk ([`dedup`]), and erasure
//! references read leaf hashes back from a disk file ([`leaves`]); neither grows memory
//! with the log. Entries are verified in parallel in chunks ([`verify`]).
//!
//! With a chain view, every `Anchored` event of the log is matched against the stream:
//! its root must equal the recomputed root at its tree size and its checkpoint hash a
//! note in the export. Seqs must run 1, 2, 3, …; since every anchored root is a root of
//! a prefix of one recomputed sequence, successive anchors are consistent.
//!
//! The audit never stops at the first problem: each finding carries its line and index.

pub mod dedup;
pub mod finding;
pub mod leaves;
pub mod order;
pub mod verify;

use std::io::BufRead;

use alloy::primitives::B256;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sworn_ledger::checkpoint::SignedCheckpoint;
use sworn_ledger::entry::EntryBody;
use sworn_ledger::export::{EXPORT_FORMAT, EXPORT_VERSION, ExportError, ExportLine, ExportReader};
use sworn_ledger::keys::PinnedKey;
use sworn_ledger::merkle::CompactRange;

use crate::chain::AnchoredEvent;
use crate::report::{Layer, Outcome, Report};
use dedup::DuplicateFinder;
pub use finding::{Finding, Findings};
use leaves::LeafFile;
use order::{OrderEvent, OrderTracker};
use verify::{CheckedEntry, RawEntry, check_entries};

/// Entries verified per parallel chunk.
const CHUNK_ENTRIES: usize = 4096;
/// Body bytes per chunk: bounds memory when entries are large (a line can be 160 KiB).
const CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Why an audit could not run at all (as opposed to finding problems).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading the export or the auditor's temporary files failed.
    #[error("audit I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// What the chain says about the log, gathered before the stream is read.
#[derive(Debug, Clone, Default)]
pub struct ChainView {
    /// Every `Anchored` event of the log on the canonical chain.
    pub events: Vec<AnchoredEvent>,
    /// Seqs whose event block hash is no longer canonical.
    pub noncanonical: Vec<u64>,
    /// The chain's finalized block, if reported.
    pub finalized: Option<u64>,
    /// Chain id and contract, for the report.
    pub description: String,
}

/// Audit options.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Verification threads.
    pub threads: usize,
    /// Progress bar target (hidden unless stderr is a terminal and this is set).
    pub progress: bool,
    /// Records per request-id sort run (tests use small runs).
    pub dedup_run_records: usize,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            progress: false,
            dedup_run_records: dedup::RUN_RECORDS,
        }
    }
}

/// Counts for the summary table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditSummary {
    /// Entry lines read.
    pub entries: u64,
    /// Of which verified receipts.
    pub receipts: u64,
    /// Of which verified erasure events.
    pub erasures: u64,
    /// Checkpoint lines read.
    pub checkpoints: u64,
    /// Checkpoints reproduced (signature ok and root equal to the recomputed one).
    pub checkpoints_reproduced: u64,
    /// Anchors on chain.
    pub anchors: u64,
    /// Anchors whose root and note were reproduced from the export.
    pub anchors_reproduced: u64,
    /// Anchors in finalized blocks.
    pub anchors_final: u64,
    /// Root of all entries, as recomputed.
    pub root: String,
    /// Peak resident memory of the auditing process, when measured (KiB).
    pub peak_rss_kib: Option<u64>,
}

/// The result of an audit.
#[derive(Debug, Clone, Serialize)]
pub struct AuditOutcome {
    /// Layers: log, anchor, finality.
    pub report: Report,
    /// The summary table.
    pub summary: AuditSummary,
    /// Every finding (up to the cap) with its line and index.
    pub findings: Findings,
}

/// An anchor being matched against the stream.
#[derive(Debug)]
struct PendingAnchor {
    event: AnchoredEvent,
    root_ok: Option<bool>,
    note_seen: bool,
}

struct Auditor<'k> {
    key: &'k PinnedKey,
    range: CompactRange,
    order: OrderTracker,
    request_ids: DuplicateFinder,
    leaves: LeafFile,
    findings: Findings,
    summary: AuditSummary,
    declared_size: Option<u64>,
    last_checkpoint: Option<u64>,
    ended: bool,
    /// Anchors sorted by tree size; `next_anchor` is the first not yet reached.
    anchors: Vec<PendingAnchor>,
    next_anchor: usize,
    progress: indicatif::ProgressBar,
}

impl<'k> Auditor<'k> {
    fn find(
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

    fn header(&mut self, line: u64, format: &str, version: u64, origin: &str, size: u64) {
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
        if origin != self.key.name() {
            self.find(
                Layer::Log,
                "wrong-origin",
                Some(line),
                None,
                format!(
                    "export is of log {origin:?}, the pinned origin is {:?}",
                    self.key.name()
                ),
            );
        }
        self.declared_size = Some(size);
        self.progress.set_length(size);
    }

    fn entry(&mut self, line: u64, raw: &RawEntry, checked: CheckedEntry) -> std::io::Result<()> {
        let index = raw.index;
        let position = self.range.size();
        match self.order.see(index) {
            OrderEvent::InOrder => {}
            OrderEvent::Gap { from, to } => self.find(
                Layer::Log,
                "gap",
                Some(line),
                Some(index),
                format!(
                    "entry {index} follows entry {}: {} entr(ies) from {from} skipped here",
                    from.wrapping_sub(1),
                    to - from
                ),
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
                if self.leaves.get(target)? != Some(erasure.erased.leaf_hash) {
                    self.find(
                        Layer::Log,
                        "bad-erasure",
                        Some(line),
                        Some(index),
                        format!(
                            "erasure names entry {target} with a leaf hash that is not that entry's"
                        ),
                    );
                }
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
        debug_assert_eq!(self.range.size(), position + 1);
        self.reach_size();
        self.progress.inc(1);
        Ok(())
    }

    /// Compares every anchor whose tree size the stream just reached with the root.
    fn reach_size(&mut self) {
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

    fn checkpoint(&mut self, line: u64, size: u64, note: &str) {
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
        match SignedCheckpoint::verify(note, self.key, self.key.name()) {
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

    fn end(&mut self, line: u64, size: u64, checkpoints: u64) {
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

/// Audits an export read from `input`, trusting only `key` (and the chain view).
pub fn audit_export<R: BufRead>(
    key: &PinnedKey,
    input: R,
    chain: Option<&ChainView>,
    options: &AuditOptions,
) -> Result<AuditOutcome, AuditError> {
    let mut anchors: Vec<PendingAnchor> = chain
        .map(|c| c.events.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|event| PendingAnchor {
            event,
            root_ok: None,
            note_seen: false,
        })
        .collect();
    anchors.sort_by_key(|a| (a.event.tree_size, a.event.seq));
    let progress = if options.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} entries ({per_sec}, eta {eta})",
        ) {
            bar.set_style(style);
        }
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut auditor = Auditor {
        key,
        range: CompactRange::new(),
        order: OrderTracker::new(),
        request_ids: DuplicateFinder::with_run_records(options.dedup_run_records),
        leaves: LeafFile::new()?,
        findings: Findings::default(),
        summary: AuditSummary::default(),
        declared_size: None,
        last_checkpoint: None,
        ended: false,
        anchors,
        next_anchor: 0,
        progress,
    };
    let mut reader = ExportReader::new(input);
    let mut chunk: Vec<(u64, ExportLine)> = Vec::new();
    let mut stop = false;
    while !stop {
        chunk.clear();
        let mut bytes = 0usize;
        while chunk.len() < CHUNK_ENTRIES && bytes < CHUNK_BYTES {
            match reader.next_line() {
                Ok(None) => {
                    stop = true;
                    break;
                }
                Ok(Some(item)) => {
                    if let ExportLine::Entry { body, .. } = &item {
                        bytes += body.len();
                    }
                    chunk.push((reader.line_number(), item));
                }
                Err(ExportError::Io(e)) => return Err(AuditError::Io(e)),
                Err(ExportError::BadLine { line, reason }) => {
                    // The bad line was consumed whole; carry on with the next one.
                    let line_finding = (line, reason);
                    process_chunk(&mut auditor, &mut chunk, options.threads)?;
                    auditor.find(
                        Layer::Log,
                        "bad-line",
                        Some(line_finding.0),
                        None,
                        line_finding.1,
                    );
                }
                Err(other) => {
                    // Over-long lines cannot be resynchronised: stop reading here.
                    auditor.find(
                        Layer::Log,
                        "unreadable",
                        Some(reader.line_number()),
                        None,
                        other.to_string(),
                    );
                    stop = true;
                    break;
                }
            }
        }
        process_chunk(&mut auditor, &mut chunk, options.threads)?;
    }
    auditor.progress.finish_and_clear();
    finish(auditor, chain)
}

fn process_chunk(
    auditor: &mut Auditor<'_>,
    chunk: &mut Vec<(u64, ExportLine)>,
    threads: usize,
) -> std::io::Result<()> {
    let raws: Vec<(u64, Option<RawEntry>, ExportLine)> = chunk
        .drain(..)
        .map(|(line, item)| match item {
            ExportLine::Entry {
                index,
                body,
                signature,
            } => (
                line,
                Some(RawEntry {
                    index,
                    body,
                    signature,
                }),
                ExportLine::End {
                    size: 0,
                    checkpoints: 0,
                },
            ),
            other => (line, None, other),
        })
        .collect();
    let entries: Vec<&RawEntry> = raws.iter().filter_map(|(_, raw, _)| raw.as_ref()).collect();
    let mut checked = check_entries(auditor.key, &entries, threads).into_iter();
    for (line, raw, item) in &raws {
        if auditor.ended {
            auditor.find(
                Layer::Log,
                "after-end",
                Some(*line),
                None,
                "data after the end line".into(),
            );
            continue;
        }
        if auditor.declared_size.is_none() && !matches!(item, ExportLine::Header { .. }) {
            auditor.find(
                Layer::Log,
                "no-header",
                Some(*line),
                None,
                "the first line must be the header".into(),
            );
            auditor.declared_size = Some(0);
        }
        if let Some(raw) = raw {
            if let Some(c) = checked.next() {
                auditor.entry(*line, raw, c)?;
            }
            continue;
        }
        match item {
            ExportLine::Header {
                format,
                version,
                origin,
                size,
                ..
            } => auditor.header(*line, format, *version, origin, *size),
            ExportLine::Checkpoint { size, note } => auditor.checkpoint(*line, *size, note),
            ExportLine::End { size, checkpoints } => auditor.end(*line, *size, *checkpoints),
            ExportLine::Entry { .. } => {}
        }
    }
    Ok(())
}

fn finish(mut auditor: Auditor<'_>, chain: Option<&ChainView>) -> Result<AuditOutcome, AuditError> {
    if !auditor.ended {
        auditor.find(
            Layer::Log,
            "truncated",
            None,
            None,
            "the export has no end line: truncated".into(),
        );
    }
    let missing: Vec<(u64, u64)> = auditor.order.missing().collect();
    for (from, to) in missing {
        auditor.find(
            Layer::Log,
            "missing",
            None,
            Some(from),
            format!("entries {from}..{} never appear: dropped", to - 1),
        );
    }
    let finder = std::mem::take(&mut auditor.request_ids);
    let (duplicates, _count) = finder.finish()?;
    for d in duplicates {
        auditor.find(
            Layer::Log,
            "duplicate-request-id",
            None,
            Some(d.again),
            format!(
                "entry {} repeats the request id of entry {} (replay)",
                d.again, d.first
            ),
        );
    }
    let size = auditor.range.size();
    auditor.summary.root = auditor.range.root().to_hex();
    let mut report = Report::new("log");
    report.fact("origin", auditor.key.name());
    report.fact("entries", size.to_string());
    report.fact("root", auditor.summary.root.clone());
    let log_findings = auditor.findings.count_in(Layer::Log);
    report.set(
        Layer::Log,
        true,
        if auditor.findings.any_in(Layer::Log) {
            Outcome::Failed(format!("{log_findings} finding(s) in the entries and checkpoints"))
        } else {
            Outcome::Ok(format!(
                "{size} entries recomputed in order (no gap, duplicate or reorder), every signature strict under the pinned key, request ids unique, {} checkpoint(s) reproduced",
                auditor.summary.checkpoints_reproduced
            ))
        },
    );
    match chain {
        None => {
            report.set(
                Layer::Anchor,
                false,
                Outcome::Skipped("no --rpc/--contract: anchors not checked".into()),
            );
            report.set(
                Layer::Finality,
                false,
                Outcome::Skipped("no --rpc/--contract".into()),
            );
        }
        Some(view) => chain_layers(&mut auditor, view, size, &mut report),
    }
    Ok(AuditOutcome {
        report,
        summary: auditor.summary,
        findings: auditor.findings,
    })
}

fn chain_layers(auditor: &mut Auditor<'_>, view: &ChainView, size: u64, report: &mut Report) {
    report.fact("chain", view.description.clone());
    auditor.summary.anchors = auditor.anchors.len() as u64;
    let mut by_seq: Vec<u64> = auditor.anchors.iter().map(|a| a.event.seq).collect();
    by_seq.sort_unstable();
    for (i, seq) in by_seq.iter().enumerate() {
        let expected = i as u64 + 1;
        if *seq != expected {
            auditor.find(
                Layer::Anchor,
                "seq-gap",
                None,
                None,
                format!("anchor seqs are not contiguous: found {seq} where {expected} belongs"),
            );
            break;
        }
    }
    for seq in &view.noncanonical {
        auditor.find(
            Layer::Anchor,
            "reorged",
            None,
            None,
            format!("anchor seq {seq}: its block is no longer canonical"),
        );
    }
    let pending: Vec<AnchoredEvent> = auditor.anchors.iter().map(|a| a.event.clone()).collect();
    let states: Vec<(Option<bool>, bool)> = auditor
        .anchors
        .iter()
        .map(|a| (a.root_ok, a.note_seen))
        .collect();
    let mut reproduced = 0;
    let mut not_final = 0;
    for (event, (root_ok, note_seen)) in pending.iter().zip(states) {
        match root_ok {
            None => auditor.find(
                Layer::Anchor,
                "beyond-export",
                None,
                Some(event.tree_size),
                format!("anchor seq {} covers {} entries; the export has only {size}: truncated or stale export", event.seq, event.tree_size),
            ),
            Some(true) if !note_seen => auditor.find(
                Layer::Anchor,
                "anchored-note-missing",
                None,
                Some(event.tree_size),
                format!("anchor seq {}: no checkpoint note in the export has its checkpoint hash {}", event.seq, event.checkpoint_hash),
            ),
            Some(true) => reproduced += 1,
            Some(false) => {}
        }
        if view.finalized.is_none_or(|f| event.block_number > f) {
            not_final += 1;
        }
    }
    auditor.summary.anchors_reproduced = reproduced;
    auditor.summary.anchors_final = auditor.summary.anchors - not_final;
    let anchor_findings = auditor.findings.count_in(Layer::Anchor);
    report.set(
        Layer::Anchor,
        true,
        if anchor_findings > 0 {
            Outcome::Failed(format!("{anchor_findings} finding(s) about anchors"))
        } else if auditor.anchors.is_empty() {
            Outcome::Pending("the log has no anchor on this contract yet".into())
        } else {
            Outcome::Ok(format!(
                "{reproduced} anchor(s), seqs 1..{} contiguous, each root reproduced at its size and its note present; successive anchors are consistent",
                auditor.anchors.len()
            ))
        },
    );
    report.set(
        Layer::Finality,
        true,
        match view.finalized {
            _ if auditor.anchors.is_empty() => Outcome::Skipped("no anchors".into()),
            None => Outcome::Pending("the endpoint reports no finalized block".into()),
            Some(f) if not_final == 0 => {
                Outcome::Ok(format!("every anchor is at or below finalized block {f}"))
            }
            Some(f) => Outcome::Pending(format!(
                "{not_final} newest anchor(s) above finalized block {f}"
            )),
        },
    );
}
