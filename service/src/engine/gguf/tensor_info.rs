//! One entry of a GGUF file's tensor directory: where a tensor's bytes lie and how to read
//! them.

use crate::engine::ggml_type::GgmlType;

/// One entry of the tensor directory, validated against the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in GGUF order: `shape[0]` (ggml's `ne0`) varies fastest. A PyTorch
    /// `[out, in]` weight is stored as `[in, out]`.
    pub shape: Vec<u64>,
    /// Storage type.
    pub dtype: GgmlType,
    /// Byte offset of the data from the start of the file (not from the data section).
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
    /// Number of elements (the product of `shape`).
    pub n_elements: u64,
}
