//! Everything that can be wrong with a GGUF file, or with a question asked of one.

use super::value::GgufValueType;
use crate::engine::ggml_type::GgmlType;
use crate::engine::quant::QuantError;

/// A GGUF file that cannot be read, or a lookup that cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    // === Opening ===
    /// The file could not be opened or mapped.
    #[error("cannot read GGUF file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    // === Header ===
    /// The file does not start with the `GGUF` magic.
    #[error("not a GGUF file: magic is {found:#010x}, expected 0x46554747 (\"GGUF\")")]
    BadMagic { found: u32 },
    /// GGUF v1 used 32-bit counts and lengths; no current tool writes it.
    #[error("GGUF version 1 is not supported (re-convert the model with a current llama.cpp)")]
    UnsupportedV1,
    /// The version field reads as a byte-swapped v2/v3: a big-endian file.
    #[error("big-endian GGUF (version field {found:#010x}) is not supported")]
    BigEndian { found: u32 },
    /// A version this reader does not know.
    #[error("unsupported GGUF version {version} (supported: 2, 3)")]
    UnsupportedVersion { version: u32 },
    /// The file ends inside the structure named by `what`.
    #[error("truncated GGUF: file ends at byte {file_len} while reading {what} at byte {offset}")]
    Truncated {
        what: String,
        offset: u64,
        file_len: u64,
    },
    /// A count or length is above its named cap, or cannot fit in the bytes left.
    #[error("{what} is {value}, above the limit of {limit}")]
    LimitExceeded {
        what: String,
        value: u64,
        limit: u64,
    },

    // === Metadata ===
    /// A metadata value has a type tag the format does not define.
    #[error("metadata key `{key}` has unknown value type {tag}")]
    UnknownValueType { key: String, tag: u32 },
    /// Arrays nest deeper than the cap.
    #[error("metadata key `{key}` nests arrays deeper than {limit}")]
    NestingTooDeep { key: String, limit: u32 },
    /// A string is not UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 { what: String },
    /// The same metadata key appears twice.
    #[error("metadata key `{key}` appears twice")]
    DuplicateKey { key: String },
    /// `general.alignment` is zero, not a power of two, or above the cap.
    #[error("general.alignment is {value}; it must be a power of two between 1 and {limit}")]
    BadAlignment { value: u64, limit: u64 },

    // === Tensor directory ===
    /// A tensor names a ggml type id that is unknown.
    #[error("tensor `{tensor}` has unknown ggml type id {id}")]
    UnknownGgmlType { tensor: String, id: u32 },
    /// The same tensor name appears twice.
    #[error("tensor `{tensor}` appears twice")]
    DuplicateTensor { tensor: String },
    /// A tensor's shape is unusable (too many dimensions, a zero or huge dimension,
    /// an element count that overflows, or rows that are not whole blocks).
    #[error("tensor `{tensor}` has a bad shape {shape:?}: {reason}")]
    BadShape {
        tensor: String,
        shape: Vec<u64>,
        reason: String,
    },
    /// A tensor's data offset is not a multiple of the file's alignment.
    #[error(
        "tensor `{tensor}` data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    /// A tensor's bytes run past the end of the file.
    #[error(
        "tensor `{tensor}` data [{start}, {end}) runs past the end of the file ({file_len} bytes)"
    )]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    /// Two tensors claim the same bytes.
    #[error("tensors `{first}` and `{second}` overlap in the data section")]
    OverlappingTensors { first: String, second: String },

    // === Lookups ===
    /// A metadata key the caller needs is absent.
    #[error("GGUF metadata has no key `{key}`")]
    MissingKey { key: String },
    /// A metadata key holds a value of another type.
    #[error("GGUF metadata key `{key}` is {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: GgufValueType,
    },
    /// An integer metadata value does not fit the type asked for.
    #[error("GGUF metadata key `{key}` is {value}, which does not fit in {expected}")]
    OutOfRange {
        key: String,
        value: i128,
        expected: &'static str,
    },
    /// No tensor has this name.
    #[error("GGUF file has no tensor `{tensor}`")]
    MissingTensor { tensor: String },
    /// A tensor could not be dequantised.
    #[error("cannot dequantise tensor `{tensor}` ({dtype}): {source}")]
    Dequantize {
        tensor: String,
        dtype: GgmlType,
        #[source]
        source: QuantError,
    },
}
