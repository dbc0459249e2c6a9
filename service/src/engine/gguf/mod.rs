//! GGUF reader: the weights file as hostile input.
//!
//! A GGUF file is a header (magic, version, metadata key/value pairs, a tensor directory)
//! followed by aligned tensor data. [`GgufFile::open`] memory-maps the file, parses and
//! validates the whole header up front — every count, length, shape, offset and byte size
//! checked against named caps ([`MAX_TENSOR_COUNT`] and friends) and against the file's
//! length — so that afterwards every tensor lookup is a plain, in-bounds slice.
//!
//! Versions 2 and 3 (little-endian) are read; version 1 and big-endian files are refused
//! with a clear error. Dequantisation to f32 lives in [`crate::engine::quant`].

mod error;
mod parse;
mod tensor_info;
mod value;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

pub use error::GgufError;
pub use parse::{
    DEFAULT_ALIGNMENT, MAX_ALIGNMENT, MAX_ARRAY_LEN, MAX_ARRAY_NESTING, MAX_DIM, MAX_DIMS,
    MAX_METADATA_KV_COUNT, MAX_STRING_LEN, MAX_TENSOR_COUNT, MAX_TENSOR_ELEMENTS,
};
pub use tensor_info::TensorInfo;
pub use value::{GgufValue, GgufValueType};

pub use crate::engine::ggml_type::GgmlType;
use crate::engine::quant;

/// The bytes behind a [`GgufFile`].
#[derive(Debug)]
enum Backing {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(map) => map,
            Backing::Owned(bytes) => bytes,
        }
    }
}

/// An opened, validated GGUF file.
#[derive(Debug)]
pub struct GgufFile {
    backing: Backing,
    header: parse::Header,
}

impl GgufFile {
    /// Memory-maps and validates the file at `path`.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let io = |source| GgufError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this process. Another process
        // truncating or rewriting the file while it is mapped would change the bytes under
        // us (or fault on access); model files are not edited while a server runs them, and
        // all offsets were validated against the length seen at open.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::from_backing(Backing::Mapped(map))
    }

    /// Validates a GGUF file held in memory (tests, or files fetched by other means).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::from_backing(Backing::Owned(bytes))
    }

    fn from_backing(backing: Backing) -> Result<GgufFile, GgufError> {
        let header = parse::parse_header(backing.bytes())?;
        Ok(GgufFile { backing, header })
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// The data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// Byte offset of the tensor data section.
    pub fn data_start(&self) -> u64 {
        self.header.data_start
    }

    /// All metadata, by key.
    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.header.metadata
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.header.metadata.get(key)
    }

    /// The value under `key`, read by `get` (`expected` names the type in the error).
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        get: impl FnOnce(&'a GgufValue) -> Option<T>,
    ) -> Result<T, GgufError> {
        let v = self
            .get(key)
            .ok_or_else(|| GgufError::MissingKey { key: key.into() })?;
        get(v).ok_or_else(|| GgufError::WrongType {
            key: key.into(),
            expected,
            found: v.value_type(),
        })
    }

    /// An integer value (of any stored width) that fits in `T`, named `expected`.
    fn integer<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<T, GgufError> {
        let value = self.typed(key, expected, GgufValue::as_i128)?;
        T::try_from(value).map_err(|_| GgufError::OutOfRange {
            key: key.into(),
            value,
            expected,
        })
    }

    /// An integer value (of any stored width) that fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.integer(key, "u32")
    }

    /// An integer value (of any stored width) that fits in `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.integer(key, "u64")
    }

    /// A float value (stored as f32, or f64 narrowed).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.typed(key, "f32", GgufValue::as_f32)
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.typed(key, "string", GgufValue::as_str)
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        self.typed(key, "bool", GgufValue::as_bool)
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<&[GgufValue], GgufError> {
        self.typed(key, "array", GgufValue::as_array)
    }

    /// The tensor directory, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// The directory entry for `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensors()
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| GgufError::MissingTensor {
                tensor: name.into(),
            })
    }

    /// The raw bytes of tensor `name`, as stored.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        self.tensor(name).map(|info| self.bytes_of(info))
    }

    /// The bytes of a directory entry of this file (validated at open, so in bounds).
    pub fn bytes_of(&self, info: &TensorInfo) -> &[u8] {
        // Offsets were checked against this very buffer when the file was opened; the
        // `get` keeps a `TensorInfo` from another file from panicking.
        let start = usize::try_from(info.offset).unwrap_or(usize::MAX);
        let end = usize::try_from(info.offset.saturating_add(info.n_bytes)).unwrap_or(usize::MAX);
        self.backing.bytes().get(start..end).unwrap_or(&[])
    }

    /// Tensor `name` as f32 values, in GGUF element order (`shape[0]` fastest).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let info = self.tensor(name)?;
        quant::dequantize(info.dtype, self.bytes_of(info), info.n_elements).map_err(|source| {
            GgufError::Dequantize {
                tensor: name.into(),
                dtype: info.dtype,
                source,
            }
        })
    }
}
