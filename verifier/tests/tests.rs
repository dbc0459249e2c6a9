//! sworn-verifier's integration tests: one binary, one module per concern.

// Helpers shared by tests panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit_stream;
mod chain;
mod cli;
mod export_roundtrip;
mod fixture;
mod mutate;
mod mutate_body;
mod mutate_bundle;
mod mutate_checkpoint;
mod mutate_content;
mod mutate_export;
mod mutate_note;
mod mutate_proof;
mod server;
mod synthetic;
mod vectors;
