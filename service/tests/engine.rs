//! Engine integration tests: numerics against Hugging Face goldens, batched decoding,
//! hostile inputs, and the `sworn generate` / `sworn tokenize` commands.
//!
//! Goldens come from `scripts/fixtures/model_goldens.py` (transformers, float32, CPU).
//! Tests that need the default GGUF skip, saying so, when `make setup` has not run.

// Fixture helpers outside `#[test]` functions unwrap too: a broken fixture should abort.
#![allow(clippy::unwrap_used)]

#[path = "engine/common.rs"]
mod common;

#[path = "engine/batching.rs"]
mod batching;
#[path = "engine/cli.rs"]
mod cli;
#[path = "engine/constrained.rs"]
mod constrained;
#[path = "engine/errors.rs"]
mod errors;
#[path = "engine/generation.rs"]
mod generation;
#[path = "engine/smollm2.rs"]
mod smollm2;
#[path = "engine/tiny.rs"]
mod tiny;
