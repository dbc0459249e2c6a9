//! Whole-log audit of an NDJSON export (`sworn-log-export` v1, see `ledger/README.md`),
//! streamed in bounded memory.
//!
//! Every entry is recomputed in order: its leaf hash from its body, its signature under
//! the pinned key (after a rotation, the key of the history that signs its index), its index against the ones before it (gap, duplicate, reorder). The
//! tree is the ledger's compact range — one hash per set bit of the size, O(log n) — so
//! each checkpoint is reproduced by comparing the running root when the stream reaches
//! its size. Request-id uniqueness is an external sort on disk ([`dedup`]), and erasure
//! references read leaf hashes back from a disk file ([`leaves`]); neither grows memory
//! with the log. Entries are verified in parallel in chunks ([`verify`]), pipelined with
//! reading the next chunk and folding the previous one.
//!
//! With a chain view, every `Anchored` event of the log is matched against the stream:
//! its root must equal the recomputed root at its tree size and its checkpoint hash a
//! note in the export. Seqs must run 1, 2, 3, …; since every anchored root is a root of
//! a prefix of one recomputed sequence, successive anchors are consistent.
//!
//! The audit never stops at the first problem: each finding carries its line and index.

mod auditor;
mod conclude;
pub mod dedup;
pub mod finding;
pub mod leaves;
mod options;
pub mod order;
mod outcome;
pub mod verify;

use std::io::BufRead;

use sworn_ledger::export::{ExportError, ExportLine, ExportReader};
use sworn_ledger::key_history::KeyHistory;
use sworn_ledger::merkle::CompactRange;

use crate::report::Layer;
use auditor::{Auditor, PendingAnchor};
use conclude::finish;
use dedup::DuplicateFinder;
pub use finding::{Finding, Findings};
use leaves::LeafFile;
pub use options::{AuditOptions, ChainView};
use order::OrderTracker;
pub use outcome::{AuditError, AuditOutcome, AuditSummary};
use verify::{CheckedEntry, RawEntry, SharedCheck};

/// Entries per pipelined chunk.
const CHUNK_ENTRIES: usize = 2048;
/// Body bytes per chunk: bounds memory when entries are large (a line can be 160 KiB).
const CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// Audits an export read from `input`, trusting only `key` — the log's key, or its key
/// history if it rotated (each entry and checkpoint under the key that signs it) — and the
/// chain view.
pub fn audit_export<R: BufRead>(
    key: &KeyHistory,
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
        erasure_events: Default::default(),
        erased: Default::default(),
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
    let key = auditor.key;
    let threads = options.threads;
    // A pipeline over chunks: while helper threads verify chunk N, this thread folds chunk
    // N − 1 into the audit and reads chunk N + 1, then joins in verifying chunk N; so the
    // sequential work (line parsing, order, tree, request ids) overlaps the signatures.
    let (mut incoming, mut stop) = read_chunk(&mut reader)?;
    let mut verified: Option<VerifiedChunk> = None;
    loop {
        let shared = SharedCheck::new(key, entries_of(&incoming));
        let (folded, next) = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads.max(1))
                .map(|_| scope.spawn(|| shared.help()))
                .collect();
            let folded = match verified.take() {
                Some((items, checked)) => fold_chunk(&mut auditor, items, checked),
                None => Ok(()),
            };
            let next = (!stop).then(|| read_chunk(&mut reader));
            shared.help();
            for helper in helpers {
                // A panicking helper is a bug; `into_results` redoes what it left.
                let _ = helper.join();
            }
            (folded, next)
        });
        folded?;
        let checked = shared.into_results();
        verified = Some((std::mem::take(&mut incoming), checked));
        match next {
            Some(read) => (incoming, stop) = read?,
            None => break,
        }
    }
    if let Some((items, checked)) = verified {
        fold_chunk(&mut auditor, items, checked)?;
    }
    auditor.progress.finish_and_clear();
    finish(auditor, chain)
}

/// A chunk's lines, each with its line number, and its entries' verification results.
type VerifiedChunk = (Vec<(u64, Item)>, Vec<CheckedEntry>);

/// A line of a chunk: an entry (verified in parallel), another line, or a line that could
/// not be read (a finding, kept in line order).
enum Item {
    Entry(RawEntry),
    Other(ExportLine),
    Unreadable { kind: &'static str, reason: String },
}

/// Reads up to a chunk of lines; `true` when the stream has ended (or cannot go on).
fn read_chunk<R: BufRead>(
    reader: &mut ExportReader<R>,
) -> Result<(Vec<(u64, Item)>, bool), AuditError> {
    let mut items = Vec::new();
    let (mut entries, mut bytes) = (0usize, 0usize);
    while entries < CHUNK_ENTRIES && bytes < CHUNK_BYTES {
        match reader.next_line() {
            Ok(None) => return Ok((items, true)),
            Ok(Some(ExportLine::Entry {
                index,
                body,
                signature,
            })) => {
                entries += 1;
                bytes += body.len();
                let raw = RawEntry {
                    index,
                    body,
                    signature,
                };
                items.push((reader.line_number(), Item::Entry(raw)));
            }
            Ok(Some(other)) => items.push((reader.line_number(), Item::Other(other))),
            Err(ExportError::Io(e)) => return Err(AuditError::Io(e)),
            // The bad line was consumed whole; carry on with the next one.
            Err(ExportError::BadLine { line, reason }) => items.push((
                line,
                Item::Unreadable {
                    kind: "bad-line",
                    reason,
                },
            )),
            // Over-long lines cannot be resynchronised: stop reading here.
            Err(other) => {
                let item = Item::Unreadable {
                    kind: "unreadable",
                    reason: other.to_string(),
                };
                items.push((reader.line_number(), item));
                return Ok((items, true));
            }
        }
    }
    Ok((items, false))
}

fn entries_of(items: &[(u64, Item)]) -> Vec<&RawEntry> {
    items
        .iter()
        .filter_map(|(_, item)| match item {
            Item::Entry(raw) => Some(raw),
            _ => None,
        })
        .collect()
}

/// Folds a verified chunk into the audit, line by line.
fn fold_chunk(
    auditor: &mut Auditor<'_>,
    items: Vec<(u64, Item)>,
    checked: Vec<CheckedEntry>,
) -> std::io::Result<()> {
    let mut checked = checked.into_iter();
    for (line, item) in items {
        if let Item::Unreadable { kind, reason } = item {
            auditor.find(Layer::Log, kind, Some(line), None, reason);
            continue;
        }
        if auditor.ended {
            auditor.find(
                Layer::Log,
                "after-end",
                Some(line),
                None,
                "data after the end line".into(),
            );
            continue;
        }
        let is_header = matches!(item, Item::Other(ExportLine::Header { .. }));
        if auditor.declared_size.is_none() && !is_header {
            auditor.find(
                Layer::Log,
                "no-header",
                Some(line),
                None,
                "the first line must be the header".into(),
            );
            auditor.declared_size = Some(0);
        }
        match item {
            Item::Entry(raw) => {
                if let Some(c) = checked.next() {
                    auditor.entry(line, &raw, c)?;
                }
            }
            Item::Other(ExportLine::Header {
                format,
                version,
                origin,
                size,
                ..
            }) => auditor.header(line, &format, version, &origin, size),
            Item::Other(ExportLine::Checkpoint { size, note }) => {
                auditor.checkpoint(line, size, &note)
            }
            Item::Other(ExportLine::End { size, checkpoints }) => {
                auditor.end(line, size, checkpoints)
            }
            // Entries are never `Other` (split out when read); unreadable lines are above.
            Item::Other(ExportLine::Entry { .. }) | Item::Unreadable { .. } => {}
        }
    }
    Ok(())
}
