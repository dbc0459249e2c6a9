//! # sworn-verifier
//!
//! The auditor's side: checks receipts and whole exports layer by layer, trusting only a
//! pinned key, a contract address and an RPC endpoint. Never links libtorch.
//!
//! Layers are reported separately and never as a bare "valid" (DESIGN §6):
//! signature ([`offline`]), commitment ([`content`]), inclusion and checkpoint
//! ([`offline`]), consistency with what this auditor saw before ([`watch`], [`state`]),
//! anchor and finality ([`chain`]); a whole export is audited in bounded memory by
//! [`audit`]. Every cryptographic check is ledger's code (`sworn_ledger`): strict
//! Ed25519, RFC 9162 inclusion and consistency, C2SP notes, the compact Merkle range.
//! This crate decides *what* is checked against *which* pinned input, and reports it.
//! What it checks comes from files, or with `--server` from a Sworn server's audit API
//! through [`audit_api_client`], and is trusted no more for that.
#![deny(missing_docs)]

pub mod audit;
pub mod audit_api_client;
pub mod bundle;
pub mod chain;
pub mod cli;
pub mod command_error;
pub mod commands;
pub mod content;
pub mod erasure;
pub mod offline;
pub mod receipt_check;
pub mod render;
pub mod report;
pub mod response_format;
pub mod state;
pub mod tools;
pub mod trust;
pub mod watch;
