//! Why the engine could not load a model or run a request.

use std::path::PathBuf;

use super::sequence::SeqId;
use crate::engine::chat_template::ChatTemplateError;
use crate::engine::config::ConfigError;
use crate::engine::gguf::GgufError;
use crate::engine::model::ModelError;
use crate::engine::sampling::SamplingError;
use crate::engine::tokenizer::TokenizerError;
use crate::engine::weights::WeightError;

/// Why the engine could not load a model or run a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model path could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path is neither a GGUF file nor a checkpoint directory.
    #[error("{path}: not a GGUF file (bad magic) nor a Hugging Face checkpoint directory")]
    UnknownFormat {
        /// The path.
        path: PathBuf,
    },
    /// The GGUF file is malformed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// `--weights int4` cannot be honoured.
    #[error("--weights int4: {reason}")]
    Int4Unavailable {
        /// Why: the device, or a model with no 4-bit weights.
        reason: String,
    },
    /// The hyper-parameters are unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The weights are unusable.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// The forward pass failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The tokenizer could not be built or failed on a token.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The chat template could not be built.
    #[error(transparent)]
    ChatTemplate(#[from] ChatTemplateError),
    /// Sampling failed (unusable logits).
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    /// A CUDA device was asked for that libtorch does not see.
    #[error(
        "CUDA device {requested} was asked for, but libtorch sees {visible} CUDA device(s) \
         (CUDA backend: {backend})"
    )]
    NoCudaDevice {
        /// The device index asked for.
        requested: usize,
        /// How many devices libtorch sees.
        visible: usize,
        /// How loading `libtorch_cuda.so` went.
        backend: String,
    },
    /// The prompt is empty.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The prompt leaves no room for a generated token.
    #[error(
        "the prompt has {tokens} tokens; this engine's context holds {max} (including at least one generated token)"
    )]
    ContextLengthExceeded {
        /// Prompt tokens.
        tokens: usize,
        /// Context positions per sequence.
        max: usize,
    },
    /// Every KV slot is taken.
    #[error("all {slots} sequence slots are busy")]
    NoFreeSlot {
        /// Slots in the engine.
        slots: usize,
    },
    /// No sequence has this id.
    #[error("no sequence {id:?}")]
    UnknownSequence {
        /// The id asked for.
        id: SeqId,
    },
}
