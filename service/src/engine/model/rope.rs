//! Rotary position embeddings, as Hugging Face's Llama computes them.
//!
//! The inverse frequencies and the cos/sin tables are computed with the same float32
//! tensor operations, in the same order, as `LlamaRotaryEmbedding` (and, for Llama 3.1,
//! `_compute_llama3_parameters`), then tabulated once for every position the KV cache can
//! hold. Queries and keys are rotated in HF's "rotate halves" layout (GGUF weights are
//! un-permuted at load to match, see `weights::gguf`).

use tch::{Device, Kind, Tensor};

use crate::engine::config::{Llama3RopeScaling, ModelConfig};

/// cos/sin tables for positions `0..max_positions`, each `[max_positions, head_dim]`.
#[derive(Debug)]
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Tabulates the rotation for `max_positions` positions, in `kind` on `device`.
    pub(crate) fn new(
        config: &ModelConfig,
        max_positions: usize,
        device: Device,
        kind: Kind,
    ) -> Result<Self, tch::TchError> {
        let dim = config.head_dim as i64;
        let exponents = Tensor::f_arange_start_step(0, dim, 2, (Kind::Int64, Device::Cpu))?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(dim)?;
        let mut inv_freq = Tensor::f_pow_scalar(config.rope_theta, &exponents)?.f_reciprocal()?;
        if let Some(scaling) = &config.rope_scaling {
            inv_freq = llama3_inv_freq(&inv_freq, scaling)?;
        }
        let positions = Tensor::f_arange(max_positions as i64, (Kind::Int64, Device::Cpu))?
            .f_to_kind(Kind::Float)?;
        // HF: position_ids[..., None].float() * inv_freq, then cat((freqs, freqs), -1).
        let freqs = positions
            .f_unsqueeze(-1)?
            .f_mul(&inv_freq.f_unsqueeze(0)?)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        Ok(Self {
            cos: emb.f_cos()?.f_to_kind(kind)?.f_to_device(device)?,
            sin: emb.f_sin()?.f_to_kind(kind)?.f_to_device(device)?,
        })
    }

    /// Number of positions tabulated.
    pub(crate) fn positions(&self) -> usize {
        self.cos.size().first().map_or(0, |&n| n as usize)
    }

    /// Rows `start..start + len` of the cos and sin tables, `[len, head_dim]`.
    pub(crate) fn span(&self, start: i64, len: i64) -> Result<(Tensor, Tensor), tch::TchError> {
        Ok((
            self.cos.f_narrow(0, start, len)?,
            self.sin.f_narrow(0, start, len)?,
        ))
    }

    /// The rows at `positions` (an int64 tensor of shape `[b]`), `[b, head_dim]`.
    pub(crate) fn gather(&self, positions: &Tensor) -> Result<(Tensor, Tensor), tch::TchError> {
        Ok((
            self.cos.f_index_select(0, positions)?,
            self.sin.f_index_select(0, positions)?,
        ))
    }
}

/// Llama 3.1's rescaling: long wavelengths slowed by `factor`, short ones kept, and a
/// smooth blend between, in float32 exactly as transformers orders the operations.
fn llama3_inv_freq(inv_freq: &Tensor, s: &Llama3RopeScaling) -> Result<Tensor, tch::TchError> {
    let old_context = s.original_max_position_embeddings as f64;
    let low_freq_wavelen = old_context / s.low_freq_factor;
    let high_freq_wavelen = old_context / s.high_freq_factor;
    let wavelen = inv_freq
        .f_reciprocal()?
        .f_mul_scalar(2.0 * std::f64::consts::PI)?;
    let slowed = inv_freq.f_div_scalar(s.factor)?;
    let is_low = wavelen.f_gt(low_freq_wavelen)?;
    let llama = slowed.f_where_self(&is_low, inv_freq)?;
    let smooth = wavelen
        .f_reciprocal()?
        .f_mul_scalar(old_context)?
        .f_sub_scalar(s.low_freq_factor)?
        .f_div_scalar(s.high_freq_factor - s.low_freq_factor)?;
    let smoothed = smooth
        .f_neg()?
        .f_add_scalar(1.0)?
        .f_mul(&llama)?
        .f_div_scalar(s.factor)?
        .f_add(&smooth.f_mul(&llama)?)?;
    let is_medium = wavelen
        .f_lt(high_freq_wavelen)?
        .f_logical_not()?
        .f_logical_and(&wavelen.f_gt(low_freq_wavelen)?.f_logical_not()?)?;
    smoothed.f_where_self(&is_medium, &llama)
}

/// `x * cos + rotate_half(x) * sin`, with `rotate_half(x) = cat(-x2, x1)`; `cos`/`sin`
/// broadcast against `x` (`[.., seq, head_dim]`).
pub(crate) fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor, tch::TchError> {
    let half = x.size().last().copied().unwrap_or(0) / 2;
    let x1 = x.f_narrow(-1, 0, half)?;
    let x2 = x.f_narrow(-1, half, half)?;
    let rotated = Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)?;
    x.f_mul(cos)?.f_add(&rotated.f_mul(sin)?)
}
