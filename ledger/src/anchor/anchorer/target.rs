//! What an anchor commits to ([`Target`]), and an attempt at it that was refused
//! ([`Attempt`], [`Refusal`]): the values `submit` and `follow` pass around and the
//! anchorer remembers, kept apart from the code that acts on them.

use alloy::primitives::B256;

use crate::anchor::chain::PreviousAnchor;
use crate::anchor::contract::checkpoint_hash;
use crate::anchor::state::AnchorRecord;
use crate::checkpoint::SignedCheckpoint;

/// What an anchor commits to: a checkpoint's tree size, root and note hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Target {
    /// The checkpoint's tree size.
    pub(super) tree_size: u64,
    /// Its root.
    pub(super) root: B256,
    /// SHA-256 of its signed note.
    pub(super) checkpoint_hash: B256,
}

impl Target {
    /// The signed checkpoint's commitment.
    pub(super) fn of(checkpoint: &SignedCheckpoint) -> Self {
        Target {
            tree_size: checkpoint.checkpoint.size,
            root: B256::from(checkpoint.checkpoint.root.0),
            checkpoint_hash: checkpoint_hash(checkpoint),
        }
    }

    /// Exactly what `record` anchors (to re-anchor a seq as it was).
    pub(super) fn of_record(record: &AnchorRecord) -> Self {
        Target {
            tree_size: record.tree_size,
            root: record.root,
            checkpoint_hash: record.checkpoint_hash,
        }
    }
}

/// One attempt to anchor a checkpoint under a seq on top of a previous anchor: what a
/// refusal is remembered by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Attempt {
    /// The seq the anchor was submitted under.
    pub(super) seq: u64,
    /// The checkpoint's tree size.
    pub(super) tree_size: u64,
    /// Its root.
    pub(super) root: B256,
    /// The anchor at `seq - 1` it was to extend (`None` for seq 1).
    pub(super) previous: Option<PreviousAnchor>,
}

/// A refused attempt and why.
#[derive(Debug, Clone)]
pub(super) struct Refusal {
    /// What was refused.
    pub(super) attempt: Attempt,
    /// Why, as reported in the anchor status.
    pub(super) reason: String,
}
