//! Why the model could not load or run a forward pass.

use crate::engine::cuda_graph::GraphError;
use crate::engine::kv_cache::KvError;
use crate::engine::weights::WeightError;

/// Why a forward pass or a load failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A weight was missing or misshapen.
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// A KV slot was misused or full.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// A token id is outside the vocabulary.
    #[error("token id {token} is outside the vocabulary of {vocab}")]
    TokenOutOfRange {
        /// The id given.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// A forward pass was asked to process no tokens.
    #[error("nothing to process: {what} is empty")]
    Empty {
        /// Which input was empty.
        what: &'static str,
    },
    /// The same slot appears twice in one decode batch.
    #[error("KV slot {slot} appears twice in one decode batch")]
    DuplicateSlot {
        /// The repeated slot.
        slot: usize,
    },
    /// The KV cache was made for a model with a different number of layers.
    #[error("KV cache has {cache} layers, the model {model}")]
    CacheMismatch {
        /// Layers in the cache.
        cache: usize,
        /// Layers in the model.
        model: usize,
    },
    /// A fixed-shape decode step got more rows than its shape holds.
    #[error("a decode batch of {rows} rows does not fit a fixed-shape step of {bucket} rows")]
    BucketTooSmall {
        /// Rows in the batch.
        rows: usize,
        /// Rows of the fixed shape.
        bucket: usize,
    },
    /// A fixed-shape decode step needs a cache with a scratch position for its padding
    /// rows (`KvSlots::with_scratch`), and this one has none.
    #[error("the KV cache has no scratch position for a fixed-shape decode step's padding rows")]
    NoScratchPosition,
    /// A CUDA graph could not be captured or replayed.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}
