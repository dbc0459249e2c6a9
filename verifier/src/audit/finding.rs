//! Findings: what an audit found wrong, each with the line and the index it concerns.

use serde::Serialize;

use crate::report::Layer;

/// Most findings kept in memory; past it they are counted, not stored, so a hostile
/// export cannot grow the auditor's memory through its errors.
pub const MAX_KEPT_FINDINGS: usize = 10_000;

/// One thing wrong with an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The layer it belongs to (`log`, `anchor`, …).
    pub layer: Layer,
    /// A stable short name (`gap`, `duplicate-index`, `bad-signature`, …).
    pub kind: &'static str,
    /// 1-based line of the export, when the finding is about one line.
    pub line: Option<u64>,
    /// The log index it concerns (an entry's index, or a checkpoint's size).
    pub index: Option<u64>,
    /// What is wrong.
    pub detail: String,
}

/// Findings kept up to [`MAX_KEPT_FINDINGS`], all counted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    /// The kept findings, in the order found.
    pub kept: Vec<Finding>,
    /// How many were found in all.
    pub total: u64,
}

impl Findings {
    /// Records a finding.
    pub fn push(&mut self, finding: Finding) {
        self.total += 1;
        if self.kept.len() < MAX_KEPT_FINDINGS {
            self.kept.push(finding);
        }
    }

    /// Whether any finding of `layer` was recorded (among those kept).
    pub fn any_in(&self, layer: Layer) -> bool {
        self.kept.iter().any(|f| f.layer == layer)
    }

    /// Number of kept findings of `layer`.
    pub fn count_in(&self, layer: Layer) -> usize {
        self.kept.iter().filter(|f| f.layer == layer).count()
    }
}
