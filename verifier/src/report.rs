//! The layered report: one line per layer, each with its own outcome, and the exit code
//! that follows from them.
//!
//! A layer is *required* when the auditor supplied what it needs (the bundle carries an
//! inclusion proof, `--rpc` was given, …) or asked for it with `--require`. A required
//! layer that could not run is a failure of the run, not a silent pass: missing inputs
//! make a layer [`Outcome::Skipped`], and skipped is never ok.

use serde::Serialize;

/// Exit code: every required layer is ok.
pub const EXIT_OK: i32 = 0;
/// Exit code: a layer failed (or a required layer could not run).
pub const EXIT_FAILED: i32 = 1;
/// Exit code: usage or I/O error; nothing was verified.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: nothing failed, but something is not settled yet (e.g. not final).
pub const EXIT_PENDING: i32 = 3;

/// One independently checked property of a receipt or log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// The bundle's outer shape: JSON, sizes, known sections.
    Bundle,
    /// The Ed25519 signature over the canonical body, under a pinned key.
    Signature,
    /// Disclosed content and salts against the body's commitments.
    Commitment,
    /// The RFC 9162 inclusion proof of the leaf in the checkpoint's tree.
    Inclusion,
    /// The checkpoint's signed note: signature under the pinned key, origin.
    Checkpoint,
    /// Consistency of a checkpoint with one seen before (RFC 9162 §2.1.4).
    Consistency,
    /// The `Anchored` event on the pinned contract and chain, matching the checkpoint.
    Anchor,
    /// The anchoring block is at or below the chain's `finalized` block.
    Finality,
    /// Whole-log audit: every entry, checkpoint and anchor of an export.
    Log,
}

impl Layer {
    /// The layer's name as printed and as accepted by `--require`.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Bundle => "bundle",
            Layer::Signature => "signature",
            Layer::Commitment => "commitment",
            Layer::Inclusion => "inclusion",
            Layer::Checkpoint => "checkpoint",
            Layer::Consistency => "consistency",
            Layer::Anchor => "anchor",
            Layer::Finality => "finality",
            Layer::Log => "log",
        }
    }

    /// Parses a layer name.
    pub fn from_name(name: &str) -> Option<Layer> {
        Self::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Every layer, in report order.
    pub const ALL: [Layer; 9] = [
        Layer::Bundle,
        Layer::Signature,
        Layer::Commitment,
        Layer::Inclusion,
        Layer::Checkpoint,
        Layer::Consistency,
        Layer::Anchor,
        Layer::Finality,
        Layer::Log,
    ];
}

/// What became of one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum Outcome {
    /// Checked and holds; the text says exactly what was checked.
    Ok(String),
    /// Checked and does not hold; the text says why.
    Failed(String),
    /// Not checked: an input is missing; the text says which.
    Skipped(String),
    /// Checked, nothing wrong, but not settled yet (e.g. the block is not final).
    Pending(String),
    /// Content and salt were erased: the commitment can no longer be opened. Not a
    /// failure: erasure is a logged event, and the leaf and proofs are unchanged.
    Erased(String),
}

impl Outcome {
    /// The status word (`ok`, `failed`, …).
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::Failed(_) => "failed",
            Outcome::Skipped(_) => "skipped",
            Outcome::Pending(_) => "pending",
            Outcome::Erased(_) => "erased",
        }
    }

    /// The explanation.
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Ok(s)
            | Outcome::Failed(s)
            | Outcome::Skipped(s)
            | Outcome::Pending(s)
            | Outcome::Erased(s) => s,
        }
    }

    /// Whether this outcome is a failure.
    pub fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }
}

/// One layer's line in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerReport {
    /// Which layer.
    pub layer: Layer,
    /// Whether its success is needed for exit code 0.
    pub required: bool,
    /// Its outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// A labelled fact about the verified object (log index, leaf hash, sizes, …) printed
/// with the report so an auditor can deduplicate and cross-reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fact {
    /// What it is.
    pub label: String,
    /// Its value.
    pub value: String,
}

/// The result of one command: facts, then one line per layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// What was verified, e.g. `receipt`.
    pub subject: String,
    /// Facts about the subject.
    pub facts: Vec<Fact>,
    /// One entry per layer, in the order they were checked.
    pub layers: Vec<LayerReport>,
}

impl Report {
    /// An empty report about `subject`.
    pub fn new(subject: &str) -> Self {
        Report {
            subject: subject.to_string(),
            ..Report::default()
        }
    }

    /// Adds a fact.
    pub fn fact(&mut self, label: &str, value: impl Into<String>) {
        self.facts.push(Fact {
            label: label.to_string(),
            value: value.into(),
        });
    }

    /// Records a layer's outcome (replacing an earlier record of the same layer).
    pub fn set(&mut self, layer: Layer, required: bool, outcome: Outcome) {
        self.layers.retain(|l| l.layer != layer);
        self.layers.push(LayerReport {
            layer,
            required,
            outcome,
        });
    }

    /// The outcome of `layer`, if recorded.
    pub fn outcome(&self, layer: Layer) -> Option<&Outcome> {
        self.layers
            .iter()
            .find(|l| l.layer == layer)
            .map(|l| &l.outcome)
    }

    /// Marks `layer` required (e.g. from `--require`). A layer that was never evaluated
    /// is recorded as skipped, so requiring it fails the run instead of vanishing.
    pub fn require(&mut self, layer: Layer) {
        match self.layers.iter_mut().find(|l| l.layer == layer) {
            Some(l) => l.required = true,
            None => self.set(
                layer,
                true,
                Outcome::Skipped("required, but nothing given here lets it be checked".into()),
            ),
        }
    }

    /// Layers that failed, plus required layers that were skipped.
    pub fn failures(&self) -> Vec<Layer> {
        self.layers
            .iter()
            .filter(|l| {
                l.outcome.is_failed() || (l.required && matches!(l.outcome, Outcome::Skipped(_)))
            })
            .map(|l| l.layer)
            .collect()
    }

    /// The exit code: 1 if any layer failed or a required layer was skipped, else 3 if
    /// any layer is pending, else 0.
    pub fn exit_code(&self) -> i32 {
        if !self.failures().is_empty() {
            EXIT_FAILED
        } else if self
            .layers
            .iter()
            .any(|l| matches!(l.outcome, Outcome::Pending(_)))
        {
            EXIT_PENDING
        } else {
            EXIT_OK
        }
    }

    /// The overall verdict word for the exit code.
    pub fn verdict(&self) -> &'static str {
        match self.exit_code() {
            EXIT_OK => "ok",
            EXIT_PENDING => "pending",
            _ => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_is_not_ok_when_required() {
        let mut r = Report::new("receipt");
        r.set(Layer::Signature, true, Outcome::Ok("x".into()));
        r.set(Layer::Anchor, false, Outcome::Skipped("no --rpc".into()));
        assert_eq!(r.exit_code(), EXIT_OK);
        r.require(Layer::Anchor);
        assert_eq!(r.exit_code(), EXIT_FAILED);
        assert_eq!(r.failures(), vec![Layer::Anchor]);
        // Requiring a layer that never ran must not pass silently either.
        let mut r = Report::new("receipt");
        r.set(Layer::Signature, true, Outcome::Ok("x".into()));
        r.require(Layer::Commitment);
        assert_eq!(r.failures(), vec![Layer::Commitment]);
    }

    #[test]
    fn pending_and_failed_exit_codes() {
        let mut r = Report::new("receipt");
        r.set(
            Layer::Finality,
            true,
            Outcome::Pending("block 9 > finalized 7".into()),
        );
        assert_eq!(r.exit_code(), EXIT_PENDING);
        r.set(Layer::Signature, true, Outcome::Failed("bad".into()));
        assert_eq!(r.exit_code(), EXIT_FAILED);
        r.set(Layer::Signature, true, Outcome::Ok("fine".into()));
        assert_eq!(r.layers.len(), 2);
        assert_eq!(r.exit_code(), EXIT_PENDING);
    }

    #[test]
    fn erased_is_neither_failed_nor_pending() {
        let mut r = Report::new("content");
        r.set(
            Layer::Commitment,
            true,
            Outcome::Erased("salts erased".into()),
        );
        assert_eq!(r.exit_code(), EXIT_OK);
        assert_eq!(Layer::from_name("commitment"), Some(Layer::Commitment));
        assert_eq!(Layer::from_name("nope"), None);
    }
}
