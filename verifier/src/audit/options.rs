//! What an audit is given besides the export: the chain's view of the log
//! ([`ChainView`]) and how to run ([`AuditOptions`]).

use crate::chain::AnchoredEvent;

use super::dedup;

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
    /// Threads that verify signatures, the auditing thread among them (1: no helpers).
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
