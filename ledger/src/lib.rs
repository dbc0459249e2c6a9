//! # sworn-ledger
//!
//! Receipts, commitments, the RFC 9162 Merkle log, checkpoints, the sled store and
//! anchoring. No libtorch and no HTTP server here: the verifier depends on this crate.
#![deny(missing_docs)]

pub mod anchor;
pub mod checkpoint;
pub mod commitment;
mod ed25519;
pub mod entry;
pub mod export;
pub mod ijson;
pub mod jcs;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod receipt;
mod sealer;
pub mod store;

pub use store::{AppendRequest, ErasureOutcome, Ledger, LedgerConfig, StoreError, StoredContent};
