//! Model hyper-parameters: a serde mirror of Hugging Face `config.json`, the same facts
//! read from GGUF metadata, and the one validated [`ModelConfig`] both resolve into.
//!
//! Both sources are hostile input: every size has a named cap, so a crafted file cannot
//! make the engine allocate terabytes or divide by zero before the weights are even read.

use serde::Deserialize;

use super::gguf::{GgufError, GgufFile};

/// Largest vocabulary accepted: real models stay under 300k; 1M leaves room.
pub const MAX_VOCAB: usize = 1 << 20;
/// Largest hidden size accepted (Llama-3 405B uses 16384).
pub const MAX_HIDDEN: usize = 1 << 16;
/// Largest MLP width accepted (Llama-3 405B uses 53248).
pub const MAX_INTERMEDIATE: usize = 1 << 18;
/// Most transformer blocks accepted (Llama-3 405B has 126).
pub const MAX_LAYERS: usize = 1024;
/// Most attention heads accepted.
pub const MAX_HEADS: usize = 1024;
/// Largest per-head dimension accepted (real models use 64–256).
pub const MAX_HEAD_DIM: usize = 1024;
/// Longest context accepted (2^24 tokens; KV memory is bounded separately by the slots).
pub const MAX_CONTEXT: usize = 1 << 24;

/// Why a model configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `config.json` is not valid JSON or lacks a required field.
    #[error("config.json: {source}")]
    Json {
        /// The serde error, naming the line and field.
        #[from]
        source: serde_json::Error,
    },
    /// The GGUF metadata lacks a key or holds the wrong type.
    #[error("GGUF metadata: {source}")]
    Gguf {
        /// The reader's error, naming the key.
        #[from]
        source: GgufError,
    },
    /// A field that the chosen options require is absent.
    #[error("`{field}` is required")]
    Missing {
        /// The config field.
        field: &'static str,
    },
    /// The architecture is not one this engine implements.
    #[error("unsupported architecture `{name}` (supported: Llama, Qwen2, Mistral)")]
    UnsupportedArchitecture {
        /// The name the file gave.
        name: String,
    },
    /// A feature of the architecture that this engine does not implement.
    #[error("unsupported model feature: {what}")]
    Unsupported {
        /// What is unsupported, e.g. a rope scaling type.
        what: String,
    },
    /// A size is zero or beyond its cap.
    #[error("`{field}` must be in 1..={max}, got {value}")]
    OutOfRange {
        /// The config field.
        field: &'static str,
        /// The value found.
        value: u64,
        /// The cap.
        max: u64,
    },
    /// Sizes that must divide evenly do not.
    #[error("`{field}` ({value}) must be divisible by `{by_field}` ({by})")]
    NotDivisible {
        /// The field that must be a multiple.
        field: &'static str,
        /// Its value.
        value: usize,
        /// The field it must be a multiple of.
        by_field: &'static str,
        /// That field's value.
        by: usize,
    },
    /// A floating-point parameter is not finite and positive, or otherwise absurd.
    #[error("`{field}` must be finite and positive, got {value}")]
    BadFloat {
        /// The config field.
        field: &'static str,
        /// The value found.
        value: f64,
    },
}

/// The model families this engine runs; they share one forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `LlamaForCausalLM` (Llama 2/3, SmolLM, TinyLlama).
    Llama,
    /// `Qwen2ForCausalLM`: Llama with biases on the q/k/v projections.
    Qwen2,
    /// `MistralForCausalLM`: Llama with (here ignored) sliding-window attention.
    Mistral,
}

impl Architecture {
    /// The name used in receipts and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Mistral => "mistral",
        }
    }
}

/// Llama-3's frequency-dependent RoPE rescaling (`rope_type: "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3RopeScaling {
    /// How much longer the new context is than the original.
    pub factor: f64,
    /// Wavelengths longer than `original / low_freq_factor` are divided by `factor`.
    pub low_freq_factor: f64,
    /// Wavelengths shorter than `original / high_freq_factor` are kept.
    pub high_freq_factor: f64,
    /// The context length the model was pre-trained with.
    pub original_max_position_embeddings: usize,
}

/// The resolved, validated hyper-parameters of a Llama-family decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Which family; decides the default bias layout.
    pub architecture: Architecture,
    /// Rows of the embedding and of the output head.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Per-head dimension (usually `hidden_size / num_heads`).
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Llama-3 RoPE scaling, when the model uses it.
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Longest context the model was trained for.
    pub max_position_embeddings: usize,
    /// Whether the output head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections have biases (Qwen2; Llama with `attention_bias`).
    pub qkv_bias: bool,
    /// Whether the attention output projection has a bias (Llama with `attention_bias`).
    pub o_bias: bool,
}

/// RoPE parameters as HF writes them: `rope_scaling` (transformers 4) or
/// `rope_parameters` (transformers 5, which also carries `rope_theta`).
#[derive(Debug, Clone, Deserialize)]
struct HfRopeParameters {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    rope_theta: Option<f64>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<usize>,
}

/// The fields of HF `config.json` this engine reads; unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_rms_norm_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<HfRopeParameters>,
    #[serde(default)]
    rope_parameters: Option<HfRopeParameters>,
    #[serde(default = "default_max_positions")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    mlp_bias: Option<bool>,
    #[serde(default)]
    hidden_act: Option<String>,
    /// Mistral/Qwen2 sliding window: accepted and ignored (full attention is exact for
    /// contexts within the window, and this engine caps context below it).
    #[serde(default)]
    #[allow(dead_code)]
    sliding_window: Option<serde_json::Value>,
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}

fn default_max_positions() -> usize {
    2048
}

impl HfConfig {
    /// Parses `config.json` bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Resolves and validates into a [`ModelConfig`].
    pub fn resolve(&self) -> Result<ModelConfig, ConfigError> {
        let name = self
            .architectures
            .first()
            .cloned()
            .or_else(|| self.model_type.clone())
            .unwrap_or_default();
        let architecture = match name.as_str() {
            "LlamaForCausalLM" | "llama" => Architecture::Llama,
            "Qwen2ForCausalLM" | "qwen2" => Architecture::Qwen2,
            "MistralForCausalLM" | "mistral" => Architecture::Mistral,
            _ => return Err(ConfigError::UnsupportedArchitecture { name }),
        };
        if let Some(act) = &self.hidden_act
            && act != "silu"
        {
            return Err(ConfigError::Unsupported {
                what: format!("hidden_act `{act}`"),
            });
        }
        if self.mlp_bias == Some(true) {
            return Err(ConfigError::Unsupported {
                what: "mlp_bias".to_owned(),
            });
        }
        let rope = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref());
        let rope_theta = self
            .rope_theta
            .or_else(|| rope.and_then(|r| r.rope_theta))
            .unwrap_or(10_000.0);
        let rope_scaling = match rope {
            None => None,
            Some(r) => match r.rope_type.as_deref() {
                None | Some("default") => None,
                Some("llama3") => Some(Llama3RopeScaling {
                    factor: required(r.factor, "rope_scaling.factor")?,
                    low_freq_factor: required(r.low_freq_factor, "rope_scaling.low_freq_factor")?,
                    high_freq_factor: required(
                        r.high_freq_factor,
                        "rope_scaling.high_freq_factor",
                    )?,
                    original_max_position_embeddings: r
                        .original_max_position_embeddings
                        .ok_or_else(|| missing("rope_scaling.original_max_position_embeddings"))?,
                }),
                Some(other) => {
                    return Err(ConfigError::Unsupported {
                        what: format!("rope scaling type `{other}`"),
                    });
                }
            },
        };
        let attention_bias = self.attention_bias.unwrap_or(false);
        let (qkv_bias, o_bias) = match architecture {
            Architecture::Qwen2 => (true, false),
            Architecture::Llama | Architecture::Mistral => (attention_bias, attention_bias),
        };
        let num_heads = self.num_attention_heads;
        let config = ModelConfig {
            architecture,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_hidden_layers,
            num_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(num_heads),
            head_dim: self
                .head_dim
                .unwrap_or_else(|| self.hidden_size.checked_div(num_heads).unwrap_or(0)),
            rms_norm_eps: self.rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(false),
            qkv_bias,
            o_bias,
        };
        config.validate().map(|()| config)
    }
}

fn missing(field: &'static str) -> ConfigError {
    ConfigError::Missing { field }
}

fn required(value: Option<f64>, field: &'static str) -> Result<f64, ConfigError> {
    value.ok_or_else(|| missing(field))
}

impl ModelConfig {
    /// Reads the hyper-parameters from GGUF metadata (`{arch}.*` keys, as llama.cpp's
    /// converter writes them). `vocab_size` falls back to the tokenizer's token count.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ConfigError> {
        let arch_name = file.get_str("general.architecture")?.to_owned();
        let architecture = match arch_name.as_str() {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            "mistral" => Architecture::Mistral,
            _ => return Err(ConfigError::UnsupportedArchitecture { name: arch_name }),
        };
        let key = |suffix: &str| format!("{arch_name}.{suffix}");
        let int = |suffix: &str| -> Result<usize, ConfigError> {
            let k = key(suffix);
            let value = match file.get_u32(&k) {
                Ok(v) => u64::from(v),
                Err(_) => file.get_u64(&k)?,
            };
            Ok(usize::try_from(value).unwrap_or(usize::MAX))
        };
        let hidden_size = int("embedding_length")?;
        let num_heads = int("attention.head_count")?;
        let num_kv_heads = int("attention.head_count_kv").unwrap_or(num_heads);
        let head_dim = match int("rope.dimension_count") {
            Ok(d) => d,
            Err(_) if num_heads > 0 => hidden_size / num_heads,
            Err(_) => 0,
        };
        let vocab_size = match int("vocab_size") {
            Ok(v) => v,
            Err(_) => file.tensor("token_embd.weight").map_or(0, |t| {
                t.shape
                    .get(1)
                    .map_or(0, |&n| usize::try_from(n).unwrap_or(usize::MAX))
            }),
        };
        let rope_scaling = match file.get_str(&key("rope.scaling.type")) {
            Ok("llama3") => Some(Llama3RopeScaling {
                factor: f64::from(file.get_f32(&key("rope.scaling.factor"))?),
                low_freq_factor: f64::from(file.get_f32(&key("rope.scaling.low_freq_factor"))?),
                high_freq_factor: f64::from(file.get_f32(&key("rope.scaling.high_freq_factor"))?),
                original_max_position_embeddings: int("rope.scaling.original_context_length")?,
            }),
            Ok("none") | Err(_) => None,
            Ok(other) => {
                return Err(ConfigError::Unsupported {
                    what: format!("rope scaling type `{other}`"),
                });
            }
        };
        let config = ModelConfig {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: int("feed_forward_length")?,
            num_layers: int("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: f64::from(file.get_f32(&key("attention.layer_norm_rms_epsilon"))?),
            rope_theta: file
                .get_f32(&key("rope.freq_base"))
                .map_or(10_000.0, f64::from),
            rope_scaling,
            max_position_embeddings: int("context_length")?,
            // Decided by the weight loader: tied when the file has no `output.weight`.
            tie_word_embeddings: file.tensor("output.weight").is_err(),
            qkv_bias: architecture == Architecture::Qwen2,
            o_bias: false,
        };
        config.validate().map(|()| config)
    }

    /// Checks every size against its cap and the divisibility the forward pass needs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let caps: [(&'static str, usize, usize); 8] = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_HIDDEN),
            (
                "intermediate_size",
                self.intermediate_size,
                MAX_INTERMEDIATE,
            ),
            ("num_hidden_layers", self.num_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_heads, MAX_HEADS),
            ("num_key_value_heads", self.num_kv_heads, MAX_HEADS),
            ("head_dim", self.head_dim, MAX_HEAD_DIM),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_CONTEXT,
            ),
        ];
        for (field, value, max) in caps {
            if value == 0 || value > max {
                return Err(ConfigError::OutOfRange {
                    field,
                    value: value as u64,
                    max: max as u64,
                });
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(ConfigError::NotDivisible {
                field: "num_attention_heads",
                value: self.num_heads,
                by_field: "num_key_value_heads",
                by: self.num_kv_heads,
            });
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(ConfigError::NotDivisible {
                field: "head_dim",
                value: self.head_dim,
                by_field: "2 (RoPE rotates pairs)",
                by: 2,
            });
        }
        positive(self.rms_norm_eps, "rms_norm_eps")?;
        positive(self.rope_theta, "rope_theta")?;
        if let Some(s) = &self.rope_scaling {
            positive(s.factor, "rope_scaling.factor")?;
            positive(s.low_freq_factor, "rope_scaling.low_freq_factor")?;
            positive(s.high_freq_factor, "rope_scaling.high_freq_factor")?;
            if s.high_freq_factor <= s.low_freq_factor {
                return Err(ConfigError::BadFloat {
                    field: "rope_scaling.high_freq_factor (must exceed low_freq_factor)",
                    value: s.high_freq_factor,
                });
            }
            if s.original_max_position_embeddings == 0
                || s.original_max_position_embeddings > MAX_CONTEXT
            {
                return Err(ConfigError::OutOfRange {
                    field: "rope_scaling.original_max_position_embeddings",
                    value: s.original_max_position_embeddings as u64,
                    max: MAX_CONTEXT as u64,
                });
            }
        }
        Ok(())
    }

    /// Width of the fused q/k/v projection output.
    pub fn qkv_width(&self) -> usize {
        (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
    }
}

fn positive(value: f64, field: &'static str) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::BadFloat { field, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "vocab_size": 300, "hidden_size": 64, "intermediate_size": 160,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-5, "max_position_embeddings": 256,
        })
    }

    fn resolve(v: &serde_json::Value) -> Result<ModelConfig, ConfigError> {
        HfConfig::from_json(v.to_string().as_bytes())?.resolve()
    }

    #[test]
    fn test_config_defaults_head_dim_and_theta() {
        let c = resolve(&base()).unwrap();
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.rope_theta, 10_000.0);
        assert!(!c.tie_word_embeddings && !c.qkv_bias);
    }

    #[test]
    fn test_config_reads_legacy_rope_scaling_and_v5_rope_parameters() {
        let mut legacy = base();
        legacy["rope_theta"] = 500000.0.into();
        legacy["rope_scaling"] = serde_json::json!({"type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192});
        let mut v5 = base();
        v5["rope_parameters"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0,
            "rope_theta": 500000.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192});
        let a = resolve(&legacy).unwrap();
        let b = resolve(&v5).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.rope_theta, 500000.0);
        assert_eq!(
            a.rope_scaling.unwrap().original_max_position_embeddings,
            8192
        );
    }

    #[test]
    fn test_config_qwen2_has_qkv_bias_only() {
        let mut v = base();
        v["architectures"] = serde_json::json!(["Qwen2ForCausalLM"]);
        v["sliding_window"] = 4096.into();
        let c = resolve(&v).unwrap();
        assert!(c.qkv_bias && !c.o_bias);
        assert_eq!(c.architecture, Architecture::Qwen2);
    }

    #[test]
    fn test_config_rejects_nonsense() {
        let cases: [(&str, serde_json::Value); 6] = [
            ("num_attention_heads", 0.into()),
            ("num_key_value_heads", 3.into()),
            ("vocab_size", (MAX_VOCAB as u64 + 1).into()),
            ("num_hidden_layers", 0.into()),
            ("rms_norm_eps", (-1.0).into()),
            ("hidden_act", "gelu".into()),
        ];
        for (field, value) in cases {
            let mut v = base();
            v[field] = value;
            assert!(resolve(&v).is_err(), "{field} accepted");
        }
        let mut v = base();
        v["architectures"] = serde_json::json!(["GPT2LMHeadModel"]);
        assert!(matches!(
            resolve(&v),
            Err(ConfigError::UnsupportedArchitecture { .. })
        ));
        let mut v = base();
        v["rope_scaling"] = serde_json::json!({"type": "yarn", "factor": 4.0});
        assert!(matches!(resolve(&v), Err(ConfigError::Unsupported { .. })));
        assert!(matches!(
            HfConfig::from_json(b"{"),
            Err(ConfigError::Json { .. })
        ));
    }
}
