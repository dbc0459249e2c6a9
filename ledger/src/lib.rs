//! # sworn-ledger
//!
//! Receipts, commitments, the RFC 9162 Merkle log, checkpoints, the sled store and
//! anchoring. No libtorch and no HTTP server here: the verifier depends on this crate.
#![deny(missing_docs)]
