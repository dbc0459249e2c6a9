//! # sworn-verifier
//!
//! The auditor's side: checks receipts and whole exports layer by layer, trusting only a
//! pinned key, a contract address and an RPC endpoint. Never links libtorch.
#![deny(missing_docs)]
