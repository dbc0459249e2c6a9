//! The inference engine: model files in, tokens out. Knows nothing of HTTP.
//!
//! * Formats: [`gguf`] (hostile-input reader), [`quant`] (dequantisation), both over the
//!   tensor types of [`ggml_type`]; HF safetensors checkpoints ([`weights`]).
//! * Text: [`tokenizer`] (byte-level BPE and SentencePiece-style), [`chat_template`].
//! * Compute: [`config`], [`model`], [`kv_cache`], [`sampling`]; on CUDA the decode step
//!   as graphs ([`cuda_graph`]).
//! * [`runner`]: the [`Engine`](runner::Engine) that loads a model and runs its sequences
//!   in batched steps; the scheduler drives it.

pub mod chat_template;
pub mod config;
pub mod constraint;
pub mod cuda_graph;
pub mod ggml_type;
pub mod gguf;
pub mod kv_cache;
pub mod model;
pub mod quant;
pub mod runner;
pub mod sampling;
pub mod tokenizer;
pub mod weights;

/// Largest JSON file beside a model that is read whole (`config.json`, `tokenizer.json`,
/// `tokenizer_config.json`, a safetensors index): the largest tokenizers are ~10 MB.
pub const MAX_SIDECAR_BYTES: u64 = 64 << 20;

/// Reads a JSON file beside a model with the one open-then-check capped reader.
pub fn read_sidecar(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    sworn_ledger::small_file::read_capped(path, MAX_SIDECAR_BYTES)
        .map_err(sworn_ledger::small_file::CappedReadError::into_io_error)
}
