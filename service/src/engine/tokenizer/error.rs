//! Why a tokenizer could not be built from its source, or a token id not decoded.

use crate::engine::gguf::GgufError;

/// Why a tokenizer could not be built, or an id not decoded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A GGUF metadata key the tokenizer needs is missing or mistyped.
    #[error("tokenizer metadata: {source}")]
    Metadata {
        /// The lookup that failed.
        #[from]
        source: GgufError,
    },
    /// The vocabulary's model type is not one this engine implements.
    #[error("unsupported tokenizer model `{model}` (supported: {supported})")]
    UnsupportedModel {
        /// The model type the source names.
        model: String,
        /// The model types this engine implements, comma-separated.
        supported: &'static str,
    },
    /// The vocabulary itself is unusable.
    #[error("bad vocabulary: {reason}")]
    BadVocab {
        /// What is wrong with it.
        reason: String,
    },
    /// A merge rule names tokens that are not in the vocabulary.
    #[error("merge #{index} `{merge}` is invalid: {reason}")]
    BadMerge {
        /// The rule's zero-based position in the merge list.
        index: usize,
        /// The rule as written.
        merge: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A pre-tokenizer pattern does not compile.
    #[error("pre-tokenizer pattern {pattern:?} does not compile: {reason}")]
    BadPattern {
        /// The pattern's source text.
        pattern: String,
        /// The regex compiler's message.
        reason: String,
    },
    /// A backtracking pattern gave up on some input (its backtrack limit).
    #[error("pre-tokenizer pattern failed on the input: {reason}")]
    PatternFailed {
        /// The regex engine's message.
        reason: String,
    },
    /// `tokenizer.json` could not be read or parsed.
    #[error("tokenizer.json: {reason}")]
    Json {
        /// The read or parse error, or what in the file is missing or malformed.
        reason: String,
    },
    /// `tokenizer.json` uses a component this engine does not implement.
    #[error("tokenizer.json: unsupported {component} `{kind}`")]
    UnsupportedJson {
        /// The kind of component (`model`, `normalizer`, `pre-tokenizer`, an option…).
        component: &'static str,
        /// The component's type or option as the file names it.
        kind: String,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    UnknownTokenId {
        /// The id asked for.
        id: u32,
        /// How many tokens the vocabulary holds.
        vocab_size: usize,
    },
}
