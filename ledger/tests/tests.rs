//! sworn-ledger's integration tests, in one binary.

// Helpers shared by tests panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod byte_flip;
mod consistency_vectors;
mod content_folding;
mod crash;
mod high_water;
mod hostile_input;
mod key_rotation;
mod known_answers;
mod layout;
mod merkle_vectors;
mod proof_properties;
mod store;
mod vector_generator;
