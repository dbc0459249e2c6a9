//! Model weights from disk into host tensors named as Hugging Face names them.
//!
//! Two sources feed one [`WeightSet`]: HF safetensors checkpoints ([`safetensors`]) and
//! GGUF files ([`gguf`], which dequantises and renames llama.cpp's tensors). The model
//! then [`WeightSet::take`]s each tensor with the shape its config demands, so a file
//! whose tensors disagree with its own config is an error naming the tensor, never a
//! panic inside libtorch.

pub mod gguf;
pub mod int4;
pub mod safetensors;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tch::Tensor;

use self::int4::{Int4Groups, LinearWeight};
use super::gguf::GgufError;

/// Why weights could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A safetensors file or index is malformed.
    #[error("{path}: malformed safetensors: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the tensor or field.
        reason: String,
    },
    /// The GGUF reader refused the file or a tensor.
    #[error("GGUF: {source}")]
    Gguf {
        /// The reader's error.
        #[from]
        source: GgufError,
    },
    /// A tensor the config requires is absent.
    #[error("tensor `{name}` is missing")]
    Missing {
        /// The HF tensor name.
        name: String,
    },
    /// A tensor's shape disagrees with the config.
    #[error("tensor `{name}` has shape {found:?}, the config implies {expected:?}")]
    Shape {
        /// The HF tensor name.
        name: String,
        /// The shape the config implies.
        expected: Vec<i64>,
        /// The shape in the file.
        found: Vec<i64>,
    },
    /// libtorch refused an operation (allocation, conversion).
    #[error("libtorch: {source}")]
    Torch {
        /// The error libtorch reported.
        #[from]
        source: tch::TchError,
    },
}

/// Host (CPU) tensors by HF name, as read from the file (f32, f16 or bf16), and the
/// linear weights kept 4-bit when the loader was asked to.
#[derive(Debug, Default)]
pub struct WeightSet {
    tensors: HashMap<String, Tensor>,
    int4: HashMap<String, Int4Groups>,
}

impl WeightSet {
    /// Adds a tensor under its HF name (a later insert replaces an earlier one).
    pub fn insert(&mut self, name: String, tensor: Tensor) {
        self.tensors.insert(name, tensor);
    }

    /// Adds a 4-bit weight under its HF name.
    pub fn insert_int4(&mut self, name: String, groups: Int4Groups) {
        self.int4.insert(name, groups);
    }

    /// Number of tensors held.
    pub fn len(&self) -> usize {
        self.tensors.len() + self.int4.len()
    }

    /// Whether no tensor is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a tensor of this name is held.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name) || self.int4.contains_key(name)
    }

    /// Whether any weight is held 4-bit.
    pub fn has_int4(&self) -> bool {
        !self.int4.is_empty()
    }

    /// Removes and returns `name` as a dense tensor, checking it has exactly `shape`.
    pub fn take(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, WeightError> {
        self.take_linear(name, shape)?.into_dense()
    }

    /// Removes and returns `name` as the loader kept it (dense or 4-bit), checking it has
    /// exactly `shape`.
    pub fn take_linear(&mut self, name: &str, shape: &[i64]) -> Result<LinearWeight, WeightError> {
        let (weight, found) = match (self.tensors.remove(name), self.int4.remove(name)) {
            (Some(tensor), _) => {
                let found = tensor.size();
                (LinearWeight::Dense(tensor), found)
            }
            (None, Some(groups)) => {
                let found = groups.size();
                (LinearWeight::Int4(groups), found)
            }
            (None, None) => {
                return Err(WeightError::Missing {
                    name: name.to_owned(),
                });
            }
        };
        if found != shape {
            return Err(WeightError::Shape {
                name: name.to_owned(),
                expected: shape.to_vec(),
                found,
            });
        }
        Ok(weight)
    }

    /// Like [`take`](Self::take), but `None` when the tensor is absent.
    pub fn take_optional(
        &mut self,
        name: &str,
        shape: &[i64],
    ) -> Result<Option<Tensor>, WeightError> {
        self.contains(name)
            .then(|| self.take(name, shape))
            .transpose()
    }

    /// Names not yet taken, sorted (the model reports them as unused).
    pub fn remaining(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tensors
            .keys()
            .chain(self.int4.keys())
            .cloned()
            .collect();
        names.sort();
        names
    }
}

/// SHA-256 over the bytes of `paths`, in the order given: the model identity recorded in
/// receipts. For one file this is that file's ordinary SHA-256 (what `sha256sum` prints).
pub fn sha256_files(paths: &[PathBuf]) -> Result<String, WeightError> {
    let mut hasher = Sha256::new();
    for path in paths {
        let io = |source| WeightError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        std::io::copy(&mut file, &mut hasher).map_err(io)?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Whether `path` names a GGUF file (by its magic, not its extension).
pub fn is_gguf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"GGUF"
}
