//! Integration tests for the engine's file formats and text handling: the GGUF reader,
//! dequantisation, tokenizers and chat templates. One binary; each area in its own file
//! under `tests/formats/`. Goldens come from `scripts/fixtures/*.py` (gguf-py and Hugging
//! Face transformers on the same files).

// Test helpers fail loudly on a broken fixture; that is their job.
#![allow(clippy::unwrap_used)]

#[path = "formats/chat_template_goldens.rs"]
mod chat_template_goldens;
#[path = "formats/gguf_builder.rs"]
mod gguf_builder;
#[path = "formats/gguf_malformed.rs"]
mod gguf_malformed;
#[path = "formats/gguf_reader.rs"]
mod gguf_reader;
#[path = "formats/quant_goldens.rs"]
mod quant_goldens;
#[path = "formats/tokenizer_goldens.rs"]
mod tokenizer_goldens;
#[path = "formats/tokenizer_json.rs"]
mod tokenizer_json;
#[path = "formats/tokenizer_unit.rs"]
mod tokenizer_unit;

use std::path::PathBuf;

/// A file under `service/tests/fixtures/`.
pub(crate) fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// The default model, which is git-ignored and fetched by `make setup`: tests that need it
/// say so loudly and pass without it, so that a bare `cargo test` still runs everything
/// else.
pub(crate) fn default_model() -> Option<PathBuf> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("SKIPPED: {} is missing (run `make setup`)", path.display());
        None
    }
}
