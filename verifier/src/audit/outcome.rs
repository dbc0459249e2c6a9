//! What an audit gives back: the report, the summary and the findings
//! ([`AuditOutcome`]), or why it could not run at all ([`AuditError`]).

use serde::Serialize;

use super::finding::Findings;
use crate::report::Report;

/// Why an audit could not run at all (as opposed to finding problems).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading the export or the auditor's temporary files failed.
    #[error("audit I/O: {0}")]
    Io(#[from] std::io::Error),
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
