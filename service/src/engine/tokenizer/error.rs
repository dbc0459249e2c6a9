//! Why a tokenizer could not be built from its source, or a token id not decoded.

use crate::engine::gguf::GgufError;

/// Why a tokenizer could not be built, or an id not decoded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A GGUF metadata key the tokenizer needs is missing or mistyped.
    #[error("tokenizer metadata: {source}")]
    Metadata {
        #[source]
        source: GgufError,
    },
    /// The vocabulary's model type is not one this engine implements.
    #[error("unsupported tokenizer model `{model}` (supported: {supported})")]
    UnsupportedModel {
        model: String,
        supported: &'static str,
    },
    /// The vocabulary itself is unusable.
    #[error("bad vocabulary: {reason}")]
    BadVocab { reason: String },
    /// A merge rule names tokens that are not in the vocabulary.
    #[error("merge #{index} `{merge}` is invalid: {reason}")]
    BadMerge {
        index: usize,
        merge: String,
        reason: String,
    },
    /// A pre-tokenizer pattern does not compile.
    #[error("pre-tokenizer pattern {pattern:?} does not compile: {reason}")]
    BadPattern { pattern: String, reason: String },
    /// A backtracking pattern gave up on some input (its backtrack limit).
    #[error("pre-tokenizer pattern failed on the input: {reason}")]
    PatternFailed { reason: String },
    /// `tokenizer.json` could not be read or parsed.
    #[error("tokenizer.json: {reason}")]
    Json { reason: String },
    /// `tokenizer.json` uses a component this engine does not implement.
    #[error("tokenizer.json: unsupported {component} `{kind}`")]
    UnsupportedJson {
        component: &'static str,
        kind: String,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    UnknownTokenId { id: u32, vocab_size: usize },
}
