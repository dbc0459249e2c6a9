//! The inference engine: model files in, tokens out. Knows nothing of HTTP.
//!
//! * Formats: [`gguf`] (hostile-input reader), [`quant`] (dequantisation), HF safetensors
//!   checkpoints ([`weights`]).
//! * Text: [`tokenizer`] (byte-level BPE and SentencePiece-style), [`chat_template`].
//! * Compute: [`config`], [`model`], [`kv_cache`], [`sampling`], [`generate`].

pub mod chat_template;
pub mod config;
pub mod generate;
pub mod gguf;
pub mod kv_cache;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod tokenizer;
pub mod weights;
