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
        /// The path that was opened.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    // === Header ===
    /// The file does not start with the `GGUF` magic.
    #[error("not a GGUF file: magic is {found:#010x}, expected 0x46554747 (\"GGUF\")")]
    BadMagic {
        /// The first four bytes, read as a little-endian `u32`.
        found: u32,
    },
    /// GGUF v1 used 32-bit counts and lengths; no current tool writes it.
    #[error("GGUF version 1 is not supported (re-convert the model with a current llama.cpp)")]
    UnsupportedV1,
    /// The version field reads as a byte-swapped v2/v3: a big-endian file.
    #[error("big-endian GGUF (version field {found:#010x}) is not supported")]
    BigEndian {
        /// The version field as read (little-endian).
        found: u32,
    },
    /// A version this reader does not know.
    #[error("unsupported GGUF version {version} (supported: 2, 3)")]
    UnsupportedVersion {
        /// The version the header declares.
        version: u32,
    },
    /// The file ends inside the structure named by `what`.
    #[error("truncated GGUF: file ends at byte {file_len} while reading {what} at byte {offset}")]
    Truncated {
        /// What was being read (a key, a count, a tensor's field).
        what: String,
        /// Byte offset in the file where that read began.
        offset: u64,
        /// The file's length in bytes.
        file_len: u64,
    },
    /// A count or length is above its named cap, or cannot fit in the bytes left.
    #[error("{what} is {value}, above the limit of {limit}")]
    LimitExceeded {
        /// What was counted or measured.
        what: String,
        /// The count or size found.
        value: u64,
        /// The most that is allowed.
        limit: u64,
    },

    // === Metadata ===
    /// A metadata value has a type tag the format does not define.
    #[error("metadata key `{key}` has unknown value type {tag}")]
    UnknownValueType {
        /// The metadata key whose value it is.
        key: String,
        /// The type tag as read.
        tag: u32,
    },
    /// Arrays nest deeper than the cap.
    #[error("metadata key `{key}` nests arrays deeper than {limit}")]
    NestingTooDeep {
        /// The metadata key whose value it is.
        key: String,
        /// The deepest nesting allowed.
        limit: u32,
    },
    /// A string is not UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which string (a key, a value, a tensor's name).
        what: String,
    },
    /// The same metadata key appears twice.
    #[error("metadata key `{key}` appears twice")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// `general.alignment` is zero, not a power of two, or above the cap.
    #[error("general.alignment is {value}; it must be a power of two between 1 and {limit}")]
    BadAlignment {
        /// The alignment the file declares (0 when it does not fit in a `u64`).
        value: u64,
        /// The largest alignment allowed.
        limit: u64,
    },

    // === Tensor directory ===
    /// A tensor names a ggml type id that is unknown.
    #[error("tensor `{tensor}` has unknown ggml type id {id}")]
    UnknownGgmlType {
        /// The tensor's name.
        tensor: String,
        /// The type id as read.
        id: u32,
    },
    /// The same tensor name appears twice.
    #[error("tensor `{tensor}` appears twice")]
    DuplicateTensor {
        /// The repeated tensor name.
        tensor: String,
    },
    /// A tensor's shape is unusable (too many dimensions, a zero or huge dimension,
    /// an element count that overflows, or rows that are not whole blocks).
    #[error("tensor `{tensor}` has a bad shape {shape:?}: {reason}")]
    BadShape {
        /// The tensor's name.
        tensor: String,
        /// Its dimensions as read, innermost first (empty when there were too many to read).
        shape: Vec<u64>,
        /// What is wrong with the shape.
        reason: String,
    },
    /// A tensor's data offset is not a multiple of the file's alignment.
    #[error(
        "tensor `{tensor}` data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    MisalignedTensor {
        /// The tensor's name.
        tensor: String,
        /// Its data offset, relative to the start of the data section.
        offset: u64,
        /// The file's alignment in bytes.
        alignment: u64,
    },
    /// A tensor's bytes run past the end of the file.
    #[error(
        "tensor `{tensor}` data [{start}, {end}) runs past the end of the file ({file_len} bytes)"
    )]
    TensorOutOfBounds {
        /// The tensor's name.
        tensor: String,
        /// Byte offset in the file where its data starts (`u64::MAX` on overflow).
        start: u64,
        /// Byte offset in the file just past its data (`u64::MAX` on overflow).
        end: u64,
        /// The file's length in bytes.
        file_len: u64,
    },
    /// Two tensors claim the same bytes.
    #[error("tensors `{first}` and `{second}` overlap in the data section")]
    OverlappingTensors {
        /// The tensor whose data starts first.
        first: String,
        /// The tensor whose data starts inside the first's.
        second: String,
    },

    // === Lookups ===
    /// A metadata key the caller needs is absent.
    #[error("GGUF metadata has no key `{key}`")]
    MissingKey {
        /// The key asked for.
        key: String,
    },
    /// A metadata key holds a value of another type.
    #[error("GGUF metadata key `{key}` is {found}, expected {expected}")]
    WrongType {
        /// The metadata key.
        key: String,
        /// The type the caller wanted.
        expected: &'static str,
        /// The type the value has.
        found: GgufValueType,
    },
    /// An integer metadata value does not fit the type asked for.
    #[error("GGUF metadata key `{key}` is {value}, which does not fit in {expected}")]
    OutOfRange {
        /// The key asked for.
        key: String,
        /// The value stored there.
        value: i128,
        /// The integer type the caller wanted.
        expected: &'static str,
    },
    /// No tensor has this name.
    #[error("GGUF file has no tensor `{tensor}`")]
    MissingTensor {
        /// The tensor name asked for.
        tensor: String,
    },
    /// A tensor could not be dequantised.
    #[error("cannot dequantise tensor `{tensor}` ({dtype}): {source}")]
    Dequantize {
        /// The tensor's name.
        tensor: String,
        /// The tensor's ggml type.
        dtype: GgmlType,
        /// Why dequantisation failed.
        #[source]
        source: QuantError,
    },
}
