//! Opening a model: a GGUF file or a Hugging Face checkpoint directory, into config,
//! weights, tokenizer, chat template and the identity recorded in receipts.

use std::path::{Path, PathBuf};

use tch::{Device, Kind};

use super::error::EngineError;
use crate::engine::chat_template::{ChatTemplate, ChatTemplateError};
use crate::engine::config::{HfConfig, ModelConfig};
use crate::engine::gguf::GgufFile;
use crate::engine::tokenizer::Tokenizer;
use crate::engine::weights::{self, WeightSet};

/// What a model directory or file yielded, before the weights go to the device.
#[derive(Debug)]
pub(crate) struct LoadedFiles {
    pub(crate) config: ModelConfig,
    pub(crate) weights: WeightSet,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) chat_template: Option<ChatTemplate>,
    pub(crate) sha256: String,
    pub(crate) format: &'static str,
}

/// The device to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first CUDA device when libtorch sees one (bf16), else the CPU (f32).
    #[default]
    Auto,
    /// The CPU, in float32.
    Cpu,
    /// CUDA device `n`, in bfloat16.
    Cuda(usize),
}

/// The compute dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DtypeChoice {
    /// float32 on the CPU (the numerically checked path), bfloat16 on CUDA.
    #[default]
    Auto,
    /// float32 everywhere.
    Float32,
    /// bfloat16 everywhere (on CPUs with AMX/AVX512-BF16 it halves weight traffic).
    BFloat16,
}

/// How a GGUF's 4-bit (Q4_0/Q4_1) linear weights are held on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightsChoice {
    /// 4-bit on the CPU when the file has such weights (decode is ~1.8× faster at batch 1
    /// and its greedy answers on the golden fixtures hold; BENCHMARKS.md), dense elsewhere.
    #[default]
    Auto,
    /// Dequantised to the compute dtype at load: the exact float32 path.
    Dense,
    /// Kept 4-bit and multiplied by libtorch's int4 CPU kernel with bfloat16 activations.
    /// Refused where there is no 4-bit weight to keep, or the device is not the CPU.
    Int4,
}

impl std::str::FromStr for WeightsChoice {
    type Err = String;

    /// `auto`, `dense` or `int4`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(WeightsChoice::Auto),
            "dense" => Ok(WeightsChoice::Dense),
            "int4" => Ok(WeightsChoice::Int4),
            other => Err(format!("must be auto, dense or int4, got `{other}`")),
        }
    }
}

impl WeightsChoice {
    /// Whether the loader keeps 4-bit weights, for a model on `device`.
    pub fn keep_int4(self, device: Device) -> Result<bool, EngineError> {
        match self {
            WeightsChoice::Auto => Ok(device == Device::Cpu),
            WeightsChoice::Dense => Ok(false),
            WeightsChoice::Int4 if device == Device::Cpu => Ok(true),
            WeightsChoice::Int4 => Err(EngineError::Int4Unavailable {
                reason: format!("the int4 kernel runs on the CPU, not {device:?}"),
            }),
        }
    }
}

impl DeviceChoice {
    /// The device and compute dtype this choice resolves to on this machine. Asking for
    /// a CUDA device that libtorch cannot see is an error naming why (no GPU, or the CUDA
    /// backend failed to load), not a fall-back to the CPU.
    pub fn resolve(self, dtype: DtypeChoice) -> Result<(Device, Kind), EngineError> {
        let device = match self {
            DeviceChoice::Cpu => Device::Cpu,
            DeviceChoice::Cuda(n) => {
                let backend = crate::device::load_cuda();
                let visible = tch::Cuda::device_count().max(0) as usize;
                if n >= visible {
                    return Err(EngineError::NoCudaDevice {
                        requested: n,
                        visible,
                        backend: format!("{backend:?}"),
                    });
                }
                Device::Cuda(n)
            }
            DeviceChoice::Auto => {
                crate::device::load_cuda();
                if tch::Cuda::device_count() > 0 {
                    Device::Cuda(0)
                } else {
                    Device::Cpu
                }
            }
        };
        let kind = match dtype {
            DtypeChoice::Float32 => Kind::Float,
            DtypeChoice::BFloat16 => Kind::BFloat16,
            DtypeChoice::Auto if device == Device::Cpu => Kind::Float,
            DtypeChoice::Auto => Kind::BFloat16,
        };
        Ok((device, kind))
    }
}

/// Reads `path`: a GGUF file (by magic) or a directory holding `config.json`,
/// `tokenizer.json`, safetensors weights and optionally `tokenizer_config.json`.
pub(crate) fn read_model(path: &Path, keep_int4: bool) -> Result<LoadedFiles, EngineError> {
    let meta = std::fs::metadata(path).map_err(|source| EngineError::Io {
        path: path.to_owned(),
        source,
    })?;
    if meta.is_dir() {
        read_hf_dir(path)
    } else if weights::is_gguf(path) {
        read_gguf(path, keep_int4)
    } else {
        Err(EngineError::UnknownFormat {
            path: path.to_owned(),
        })
    }
}

fn read_gguf(path: &Path, keep_int4: bool) -> Result<LoadedFiles, EngineError> {
    let file = GgufFile::open(path)?;
    let config = ModelConfig::from_gguf(&file)?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let chat_template = optional_template(ChatTemplate::from_gguf(&file))?;
    let mut set = WeightSet::default();
    weights::gguf::load_gguf(&file, &config, &mut set, keep_int4)?;
    let sha256 = weights::sha256_files(&[path.to_owned()])?;
    Ok(LoadedFiles {
        config,
        weights: set,
        tokenizer,
        chat_template,
        sha256,
        format: "gguf",
    })
}

fn read_hf_dir(dir: &Path) -> Result<LoadedFiles, EngineError> {
    let read = |name: &str| -> Result<Vec<u8>, EngineError> {
        let path: PathBuf = dir.join(name);
        crate::engine::read_sidecar(&path).map_err(|source| EngineError::Io { path, source })
    };
    let config = HfConfig::from_json(&read("config.json")?)?.resolve()?;
    let tokenizer = Tokenizer::from_tokenizer_json(&read("tokenizer.json")?)?;
    let chat_template = match read("tokenizer_config.json") {
        Ok(bytes) => optional_template(ChatTemplate::from_tokenizer_config(&bytes))?,
        Err(_) => None,
    };
    let mut set = WeightSet::default();
    let files = weights::safetensors::load_checkpoint_dir(dir, &mut set)?;
    let sha256 = weights::sha256_files(&files)?;
    Ok(LoadedFiles {
        config,
        weights: set,
        tokenizer,
        chat_template,
        sha256,
        format: "safetensors",
    })
}

/// A model without a chat template is usable for plain completions; a broken one is not.
fn optional_template(
    result: Result<ChatTemplate, ChatTemplateError>,
) -> Result<Option<ChatTemplate>, EngineError> {
    match result {
        Ok(template) => Ok(Some(template)),
        Err(ChatTemplateError::Missing { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Only the tokenizer of the model at `path` (no weights are read): for `sworn tokenize`.
pub fn read_tokenizer(path: &Path) -> Result<Tokenizer, EngineError> {
    let meta = std::fs::metadata(path).map_err(|source| EngineError::Io {
        path: path.to_owned(),
        source,
    })?;
    if meta.is_dir() {
        let json = path.join("tokenizer.json");
        let bytes = crate::engine::read_sidecar(&json)
            .map_err(|source| EngineError::Io { path: json, source })?;
        Ok(Tokenizer::from_tokenizer_json(&bytes)?)
    } else if weights::is_gguf(path) {
        Ok(Tokenizer::from_gguf(&GgufFile::open(path)?)?)
    } else {
        Err(EngineError::UnknownFormat {
            path: path.to_owned(),
        })
    }
}
