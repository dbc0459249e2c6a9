//! Rust bindings for `SwornAnchor`, generated at compile time from the committed Foundry
//! artifact (ABI and creation bytecode), plus the two values Sworn derives for it.
//!
//! The artifact is `contracts/out/SwornAnchor.sol/SwornAnchor.json`;
//! `anvil/check-artifact.sh` (run by `make test`) fails when it no longer matches the
//! Solidity source, so these bindings cannot silently drift from the contract.

use alloy::primitives::B256;
use sha2::{Digest, Sha256};

use crate::checkpoint::SignedCheckpoint;

alloy::sol!(
    // `anchor` takes eight arguments (the log, seq, size, root, checkpoint hash, and the
    // previous anchor's root and hash with the consistency proof), over clippy's limit.
    #[allow(missing_docs, clippy::too_many_arguments)]
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    SwornAnchor,
    "../contracts/out/SwornAnchor.sol/SwornAnchor.json"
);

/// The contract's id for a log: SHA-256 of its origin string (UTF-8, no terminator).
pub fn log_id(origin: &str) -> B256 {
    B256::from(<[u8; 32]>::from(Sha256::digest(origin.as_bytes())))
}

/// The `checkpointHash` anchored for a checkpoint: SHA-256 of the complete signed note
/// text (checkpoint body, blank line, signature lines), exactly as stored and served.
pub fn checkpoint_hash(checkpoint: &SignedCheckpoint) -> B256 {
    B256::from(checkpoint.note_hash())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_id_is_sha256_of_the_origin() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            log_id("abc").to_string(),
            "0xba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bindings_carry_the_anchor_event_and_errors() {
        use alloy::sol_types::{SolError, SolEvent};
        assert_eq!(
            SwornAnchor::Anchored::SIGNATURE,
            "Anchored(bytes32,uint64,uint64,bytes32,bytes32)"
        );
        assert_eq!(
            SwornAnchor::SeqNotContiguous::SIGNATURE,
            "SeqNotContiguous(bytes32,uint64,uint64)"
        );
        assert_eq!(
            SwornAnchor::InconsistentHistory::SIGNATURE,
            "InconsistentHistory(bytes32,uint64,uint64,uint64)"
        );
        assert_eq!(
            SwornAnchor::PreviousAnchorMismatch::SIGNATURE,
            "PreviousAnchorMismatch(bytes32,uint64)"
        );
        assert!(!SwornAnchor::BYTECODE.is_empty());
    }

    #[test]
    fn anchor_takes_the_previous_anchor_and_a_consistency_proof() {
        use alloy::sol_types::SolCall;
        assert_eq!(
            SwornAnchor::anchorCall::SIGNATURE,
            "anchor(bytes32,uint64,uint64,bytes32,bytes32,bytes32,bytes32,bytes32[])"
        );
    }
}
