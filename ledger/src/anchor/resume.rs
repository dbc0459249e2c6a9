//! Before a log serves again: does it extend what the chain has anchored?
//!
//! The chain is the one witness of the log's history that a restore cannot roll back. A
//! data directory put back from an older backup carries its own older high-water record,
//! so the store agrees with itself; but if the chain already anchors a checkpoint the
//! copy does not hold, appending to the copy would sign other entries at indices the
//! chain has vouched for: a fork of an anchored history. So a service compares the local
//! log with the newest anchor before it serves ([`check_extends`]):
//!
//! | local log against the newest anchor (size `n`, root `r`) | standing |
//! |---|---|
//! | nothing anchored yet (or the log is not registered)      | [`Standing::NothingAnchored`] |
//! | holds `n` entries, root `r`                                | [`Standing::Equal`] |
//! | holds more than `n`, its first `n` hash to `r`             | [`Standing::Ahead`] (un-anchored entries: normal) |
//! | holds fewer than `n`                                       | [`ResumeError::Behind`] (a stale restore) |
//! | holds `n` or more, its first `n` do not hash to `r`        | [`ResumeError::Forked`] (another history) |
//!
//! One anchor is enough: the contract accepts an anchor only with a consistency proof
//! from the one before, so every anchor of the log is a prefix of the newest.
//!
//! What the chain holds is read by [`newest_anchor`]: the contract's `latest` seq and
//! size, the root from that seq's `Anchored` event, confirmed against contract storage
//! (`isAnchored`), so a node's stale or forged log cannot stand in for it.

use alloy::primitives::B256;

use super::error::{AnchorError, ContractRevert};
use super::reader::ChainReader;
use crate::merkle::Hash;
use crate::store::StoreError;

/// The newest anchor the contract holds for a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewestAnchor {
    /// Its seq.
    pub seq: u64,
    /// The anchored tree size.
    pub tree_size: u64,
    /// The anchored root.
    pub root: B256,
    /// SHA-256 of the anchored signed checkpoint note.
    pub checkpoint_hash: B256,
    /// The block of its `Anchored` event.
    pub block_number: u64,
}

/// How a local log stands to the chain's newest anchor, when it may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The chain anchors nothing of this log yet: there is nothing to fork.
    NothingAnchored,
    /// The log is exactly the anchored tree.
    Equal {
        /// The anchored (and local) size.
        size: u64,
    },
    /// The log extends the anchored tree with entries not anchored yet.
    Ahead {
        /// The anchored size.
        anchored: u64,
        /// The local size.
        local: u64,
    },
}

/// Why a local log must not serve, or why that could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The chain anchors more entries than the log holds: the log is an older copy.
    #[error(
        "the chain already holds a later checkpoint of this log than the local one: on chain, \
         seq {seq} anchors size {chain_size} with root {chain_root} (block {block}); locally, \
         the log holds {local_size} entries with root {local_root}. Serving from it would sign \
         other entries at indices {local_size}..{chain_size}, which the chain has anchored: a \
         fork of the anchored history",
        seq = anchor.seq,
        chain_size = anchor.tree_size,
        chain_root = Hash(anchor.root.0),
        block = anchor.block_number
    )]
    Behind {
        /// The chain's newest anchor.
        anchor: Box<NewestAnchor>,
        /// Entries the local log holds.
        local_size: u64,
        /// Their root.
        local_root: Hash,
    },
    /// The log's first `anchor.tree_size` entries are not the anchored ones.
    #[error(
        "the local log is another history than the anchored one: on chain, seq {seq} anchors \
         size {chain_size} with root {chain_root} (block {block}); locally, the first \
         {chain_size} of {local_size} entries hash to root {local_root}. Serving from it would \
         extend a fork of the anchored history",
        seq = anchor.seq,
        chain_size = anchor.tree_size,
        chain_root = Hash(anchor.root.0),
        block = anchor.block_number
    )]
    Forked {
        /// The chain's newest anchor.
        anchor: Box<NewestAnchor>,
        /// Entries the local log holds.
        local_size: u64,
        /// The root of its first `anchor.tree_size` entries.
        local_root: Hash,
    },
    /// The local store could not compute a root.
    #[error("ledger store: {0}")]
    Store(#[from] StoreError),
}

/// What the contract holds as the newest anchor of `log_id`, or `None` if it holds none
/// (or the log is not registered there). Errors are [`AnchorError`]s classified as the
/// anchorer's: [`AnchorError::is_transient`] ones (the endpoint failed or timed out) may
/// pass on a retry; the others (no contract at the address, storage that disagrees with
/// the events) will not.
pub async fn newest_anchor(
    reader: &ChainReader,
    log_id: B256,
    from_block: u64,
) -> Result<Option<NewestAnchor>, AnchorError> {
    let chain_id = reader.chain_id().await?;
    if !reader.has_code().await? {
        return Err(AnchorError::NoContract {
            address: reader.contract(),
            chain_id,
        });
    }
    let latest = match reader.latest(log_id).await.map_err(AnchorError::from) {
        Ok(latest) => latest,
        Err(e) if matches!(e.revert(), Some(ContractRevert::UnknownLog { .. })) => return Ok(None),
        Err(e) => return Err(e),
    };
    if latest.seq == 0 {
        return Ok(None);
    }
    let seq = latest.seq;
    let unknown = |reason: String| AnchorError::PreviousAnchorUnknown { seq, reason };
    let event = reader
        .anchored_events(log_id, Some(seq), from_block)
        .await?
        .pop()
        .ok_or_else(|| {
            unknown("the contract holds it, but no Anchored event for it was found".into())
        })?;
    if event.tree_size != latest.tree_size
        || !reader
            .is_anchored(
                log_id,
                seq,
                event.tree_size,
                event.root,
                event.checkpoint_hash,
            )
            .await?
    {
        return Err(unknown(format!(
            "the Anchored event (size {}, root {}) is not what the contract stores (size {})",
            event.tree_size, event.root, latest.tree_size
        )));
    }
    Ok(Some(NewestAnchor {
        seq,
        tree_size: event.tree_size,
        root: event.root,
        checkpoint_hash: event.checkpoint_hash,
        block_number: event.block_number,
    }))
}

/// Whether a local log of `local_size` entries, whose roots `root_at(n)` gives, extends
/// `anchor` (see the module documentation for every case). `root_at` is called at most
/// once, with a size no larger than `local_size`.
pub fn check_extends(
    anchor: Option<&NewestAnchor>,
    local_size: u64,
    root_at: impl FnOnce(u64) -> Result<Hash, StoreError>,
) -> Result<Standing, ResumeError> {
    let Some(anchor) = anchor else {
        return Ok(Standing::NothingAnchored);
    };
    if local_size < anchor.tree_size {
        return Err(ResumeError::Behind {
            anchor: Box::new(*anchor),
            local_size,
            local_root: root_at(local_size)?,
        });
    }
    let local_root = root_at(anchor.tree_size)?;
    if local_root.0 != anchor.root.0 {
        return Err(ResumeError::Forked {
            anchor: Box::new(*anchor),
            local_size,
            local_root,
        });
    }
    Ok(if local_size == anchor.tree_size {
        Standing::Equal { size: local_size }
    } else {
        Standing::Ahead {
            anchored: anchor.tree_size,
            local: local_size,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{MemoryTree, hash_leaf, root};

    /// A tree of `n` leaves, the `i`-th leaf from `i` and `salt`.
    fn tree(n: u8, salt: u8) -> MemoryTree {
        let mut tree = MemoryTree::default();
        for i in 0..n {
            tree.push(hash_leaf(&[salt, i]));
        }
        tree
    }

    fn anchor_of(tree: &MemoryTree, size: u64) -> NewestAnchor {
        NewestAnchor {
            seq: 3,
            tree_size: size,
            root: B256::from(root(tree, size).unwrap().0),
            checkpoint_hash: B256::repeat_byte(7),
            block_number: 42,
        }
    }

    fn check(
        anchor: Option<&NewestAnchor>,
        local: &MemoryTree,
        size: u64,
    ) -> Result<Standing, ResumeError> {
        check_extends(anchor, size, |n| {
            assert!(n <= size, "a root past the local size was asked for");
            Ok(root(local, n).unwrap())
        })
    }

    #[test]
    fn nothing_anchored_leaves_nothing_to_fork() {
        assert_eq!(
            check(None, &tree(3, 0), 3).unwrap(),
            Standing::NothingAnchored
        );
        assert_eq!(
            check(None, &tree(0, 0), 0).unwrap(),
            Standing::NothingAnchored
        );
    }

    #[test]
    fn the_anchored_tree_itself_or_an_extension_of_it_may_serve() {
        let log = tree(9, 0);
        let anchor = anchor_of(&log, 6);
        assert_eq!(
            check(Some(&anchor), &log, 6).unwrap(),
            Standing::Equal { size: 6 }
        );
        assert_eq!(
            check(Some(&anchor), &log, 9).unwrap(),
            Standing::Ahead {
                anchored: 6,
                local: 9
            }
        );
    }

    #[test]
    fn a_stale_restore_shorter_than_the_anchor_is_refused_naming_both_sides() {
        let log = tree(9, 0);
        let anchor = anchor_of(&log, 8);
        let err = check(Some(&anchor), &log, 5).unwrap_err();
        let ResumeError::Behind {
            local_size,
            local_root,
            ..
        } = &err
        else {
            panic!("expected Behind, got {err:?}");
        };
        assert_eq!((*local_size, *local_root), (5, root(&log, 5).unwrap()));
        let shown = err.to_string();
        for part in [
            format!(
                "on chain, seq 3 anchors size 8 with root {} (block 42)",
                root(&log, 8).unwrap()
            ),
            format!(
                "locally, the log holds 5 entries with root {}",
                root(&log, 5).unwrap()
            ),
        ] {
            assert!(shown.contains(&part), "{part:?} missing from: {shown}");
        }
    }

    #[test]
    fn another_history_at_the_anchored_size_or_beyond_it_is_refused() {
        let anchored = tree(9, 0);
        let other = tree(9, 1);
        let anchor = anchor_of(&anchored, 6);
        for size in [6, 9] {
            let err = check(Some(&anchor), &other, size).unwrap_err();
            let ResumeError::Forked { local_root, .. } = &err else {
                panic!("size {size}: expected Forked, got {err:?}");
            };
            assert_eq!(*local_root, root(&other, 6).unwrap());
            assert!(
                err.to_string().contains(&format!(
                    "locally, the first 6 of {size} entries hash to root {}",
                    root(&other, 6).unwrap()
                )),
                "{err}"
            );
        }
        // A history that only differs after the anchored size extends it.
        let mut diverging_later = tree(6, 0);
        diverging_later.push(hash_leaf(b"later"));
        assert_eq!(
            check(Some(&anchor), &diverging_later, 7).unwrap(),
            Standing::Ahead {
                anchored: 6,
                local: 7
            }
        );
    }

    #[test]
    fn a_store_failure_is_reported_not_taken_for_a_verdict() {
        let anchor = anchor_of(&tree(4, 0), 4);
        let err = check_extends(Some(&anchor), 4, |_| Err(StoreError::corrupt("x"))).unwrap_err();
        assert!(matches!(err, ResumeError::Store(_)), "{err:?}");
    }
}
