//! The anchor state machine's persisted record and the status the anchorer publishes.
//!
//! One record per seq, stored as JSON in the ledger's `anchors` tree:
//!
//! ```text
//! Submitted ──receipt in a block──▶ Included ──block ≤ finalized, hash still canonical──▶ Finalized
//!     ▲ ▲                               │                                                    │
//!     │ └──── transaction dropped or ───┘   (a reorg that moves the transaction to another   │
//!     │       reorged out: resubmitted        block only updates Included's block)           │
//!     └────────── block no longer canonical (a reorg deeper than finality): deep_reorgs + 1 ─┘
//! ```
//!
//! A record that comes back from `Finalized` keeps its checkpoint: if its transaction is
//! gone it is re-anchored exactly as recorded (see `anchorer::lost`).
//!
//! The record is written *before* its transaction is broadcast (write-ahead), so after a
//! crash the anchorer finds the transaction hash and follows or replaces it instead of
//! anchoring the seq twice or skipping it.

use alloy::primitives::{Address, B256};
use serde::{Deserialize, Serialize};

use super::error::AnchorError;

/// Where an anchoring transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AnchorState {
    /// Signed and (about to be) broadcast; not seen in a block yet.
    Submitted,
    /// In a block of the canonical chain that is not finalized yet; a reorg can undo it.
    Included {
        /// The block's number.
        block_number: u64,
        /// The block's hash.
        block_hash: B256,
    },
    /// In a finalized block whose hash was checked against the canonical chain.
    Finalized {
        /// The block's number.
        block_number: u64,
        /// The block's hash.
        block_hash: B256,
    },
}

impl AnchorState {
    /// Whether nothing more will happen to this anchor.
    pub fn is_finalized(&self) -> bool {
        matches!(self, Self::Finalized { .. })
    }

    /// The block holding the transaction, once included.
    pub fn block(&self) -> Option<(u64, B256)> {
        match *self {
            Self::Submitted => None,
            Self::Included {
                block_number,
                block_hash,
            }
            | Self::Finalized {
                block_number,
                block_hash,
            } => Some((block_number, block_hash)),
        }
    }

    /// A short name for logs and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Included { .. } => "included",
            Self::Finalized { .. } => "finalized",
        }
    }
}

/// One anchored (or being anchored) checkpoint, as persisted in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchorRecord {
    /// The contract's sequence number for this anchor (1, 2, 3, ...).
    pub seq: u64,
    /// Chain the transaction is on.
    pub chain_id: u64,
    /// The SwornAnchor contract.
    pub contract: Address,
    /// SHA-256 of the log's origin.
    pub log_id: B256,
    /// The anchored checkpoint's tree size.
    pub tree_size: u64,
    /// The anchored checkpoint's RFC 9162 root.
    pub root: B256,
    /// SHA-256 of the anchored checkpoint's signed note.
    pub checkpoint_hash: B256,
    /// The transaction carrying it (the latest one, after resubmissions).
    pub tx_hash: B256,
    /// The sender's nonce used by that transaction.
    pub nonce: u64,
    /// Where the transaction stands.
    #[serde(flatten)]
    pub state: AnchorState,
    /// How many times this seq was resubmitted after its transaction was dropped or
    /// reorged out.
    pub resubmissions: u32,
    /// How many times this seq, once finalized, was removed by a reorg deeper than
    /// finality. Such a seq is re-anchored with exactly the checkpoint recorded here.
    /// Absent (0) in records that never lost finality.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deep_reorgs: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl AnchorRecord {
    /// The persisted form (JSON).
    pub fn to_bytes(&self) -> Result<Vec<u8>, AnchorError> {
        serde_json::to_vec(self).map_err(|e| AnchorError::CorruptRecord {
            seq: self.seq,
            reason: e.to_string(),
        })
    }

    /// Parses the persisted form, checking it is stored under the right seq.
    pub fn from_bytes(seq: u64, bytes: &[u8]) -> Result<Self, AnchorError> {
        let record: AnchorRecord =
            serde_json::from_slice(bytes).map_err(|e| AnchorError::CorruptRecord {
                seq,
                reason: e.to_string(),
            })?;
        if record.seq != seq {
            return Err(AnchorError::CorruptRecord {
                seq,
                reason: format!("record says seq {}", record.seq),
            });
        }
        Ok(record)
    }
}

/// What the anchorer publishes for metrics and `/v1/audit/anchors`; cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AnchorStatus {
    /// The newest record's seq and state, if any.
    pub current: Option<(u64, AnchorState)>,
    /// Newest finalized seq (0 if none).
    pub finalized_seq: u64,
    /// Tree size covered by the newest finalized anchor (0 if none).
    pub finalized_tree_size: u64,
    /// Size of the newest sealed checkpoint seen.
    pub newest_checkpoint_size: u64,
    /// Entries sealed but not yet covered by a finalized anchor.
    pub lag_entries: u64,
    /// Whether the last RPC exchange succeeded.
    pub rpc_healthy: bool,
    /// Failed passes in a row (resets on success).
    pub consecutive_failures: u32,
    /// The last error, if the last pass failed.
    pub last_error: Option<String>,
    /// Transactions replaced because they were dropped or reorged out, since start.
    pub resubmissions: u64,
    /// Anchors seen moving to another block or dropped by a reorg before finality,
    /// since start.
    pub reorgs_seen: u64,
    /// Reorgs deeper than finality that removed finalized anchors, since start (each
    /// counts once, however many seqs it removed).
    pub deep_reorgs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: AnchorState) -> AnchorRecord {
        AnchorRecord {
            seq: 7,
            chain_id: 31337,
            contract: Address::repeat_byte(0x11),
            log_id: B256::repeat_byte(0x22),
            tree_size: 1000,
            root: B256::repeat_byte(0x33),
            checkpoint_hash: B256::repeat_byte(0x44),
            tx_hash: B256::repeat_byte(0x55),
            nonce: 9,
            state,
            resubmissions: 1,
            deep_reorgs: 0,
        }
    }

    #[test]
    fn record_round_trips_in_every_state() {
        for state in [
            AnchorState::Submitted,
            AnchorState::Included {
                block_number: 5,
                block_hash: B256::repeat_byte(0x66),
            },
            AnchorState::Finalized {
                block_number: 5,
                block_hash: B256::repeat_byte(0x66),
            },
        ] {
            let r = record(state);
            assert_eq!(
                AnchorRecord::from_bytes(7, &r.to_bytes().unwrap()).unwrap(),
                r
            );
        }
    }

    #[test]
    fn persisted_form_names_state_and_block() {
        let json: serde_json::Value = serde_json::from_slice(
            &record(AnchorState::Finalized {
                block_number: 5,
                block_hash: B256::repeat_byte(0x66),
            })
            .to_bytes()
            .unwrap(),
        )
        .unwrap();
        assert_eq!(json["state"], "finalized");
        assert_eq!(json["block_number"], 5);
        assert_eq!(json["chain_id"], 31337);
        assert_eq!(
            json["contract"],
            "0x1111111111111111111111111111111111111111"
        );
    }

    #[test]
    fn deep_reorg_count_is_omitted_at_zero_and_kept_otherwise() {
        let plain = record(AnchorState::Submitted);
        let json: serde_json::Value = serde_json::from_slice(&plain.to_bytes().unwrap()).unwrap();
        assert!(json.get("deep_reorgs").is_none(), "{json}");
        let lost = AnchorRecord {
            deep_reorgs: 2,
            ..plain
        };
        let bytes = lost.to_bytes().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["deep_reorgs"], 2);
        assert_eq!(AnchorRecord::from_bytes(7, &bytes).unwrap(), lost);
    }

    #[test]
    fn record_under_the_wrong_seq_is_corrupt() {
        let r = record(AnchorState::Submitted);
        assert!(matches!(
            AnchorRecord::from_bytes(8, &r.to_bytes().unwrap()),
            Err(AnchorError::CorruptRecord { seq: 8, .. })
        ));
        assert!(matches!(
            AnchorRecord::from_bytes(7, b"{not json"),
            Err(AnchorError::CorruptRecord { seq: 7, .. })
        ));
    }
}
