//! One decoder block: RMSNorm → grouped-query attention (with the KV cache) → residual,
//! RMSNorm → SwiGLU MLP → residual.
//!
//! Projections are fused at load: one `[q + k + v, hidden]` matrix for attention and one
//! `[gate + up, hidden]` for the MLP, so each is a single GEMM per step.

use tch::Tensor;

use super::attention::{AttentionPlan, attend};
use super::error::ModelError;
use crate::engine::config::ModelConfig;
use crate::engine::weights::WeightSet;

/// RMSNorm exactly as HF's `LlamaRMSNorm`: statistics in float32, then the weight.
#[derive(Debug)]
pub(crate) struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub(crate) fn new(weight: Tensor, eps: f64) -> Self {
        Self { weight, eps }
    }

    /// libtorch's `rms_norm` is HF's sequence of operations (upcast, mean of squares,
    /// `+ eps`, `rsqrt`, scale, cast back, times the weight) as one call; on CUDA it runs
    /// as one fused kernel instead of eight launches.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let width = self.weight.size();
        x.f_rms_norm(width.as_slice(), Some(&self.weight), self.eps)
    }
}

/// The weights of one block, fused and on the model's device.
#[derive(Debug)]
pub(crate) struct DecoderLayer {
    input_norm: RmsNorm,
    post_attention_norm: RmsNorm,
    qkv: Tensor,
    qkv_bias: Option<Tensor>,
    o_proj: Tensor,
    o_bias: Option<Tensor>,
    gate_up: Tensor,
    down: Tensor,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
    intermediate: i64,
}

impl DecoderLayer {
    /// Takes layer `index`'s tensors out of `weights` (HF names), checks their shapes,
    /// fuses them and moves them to `device` in `kind`.
    pub(crate) fn load(
        weights: &mut WeightSet,
        config: &ModelConfig,
        index: usize,
        to_device: &dyn Fn(Tensor) -> Result<Tensor, tch::TchError>,
    ) -> Result<Self, ModelError> {
        let p = format!("model.layers.{index}");
        let hidden = config.hidden_size as i64;
        let (heads, kv_heads, head_dim) = (
            config.num_heads as i64,
            config.num_kv_heads as i64,
            config.head_dim as i64,
        );
        let inter = config.intermediate_size as i64;
        let q = weights.take(
            &format!("{p}.self_attn.q_proj.weight"),
            &[heads * head_dim, hidden],
        )?;
        let k = weights.take(
            &format!("{p}.self_attn.k_proj.weight"),
            &[kv_heads * head_dim, hidden],
        )?;
        let v = weights.take(
            &format!("{p}.self_attn.v_proj.weight"),
            &[kv_heads * head_dim, hidden],
        )?;
        let qkv = to_device(Tensor::f_cat(&[q, k, v], 0)?)?;
        let qkv_bias = if config.qkv_bias {
            let qb = weights.take(&format!("{p}.self_attn.q_proj.bias"), &[heads * head_dim])?;
            let kb = weights.take(
                &format!("{p}.self_attn.k_proj.bias"),
                &[kv_heads * head_dim],
            )?;
            let vb = weights.take(
                &format!("{p}.self_attn.v_proj.bias"),
                &[kv_heads * head_dim],
            )?;
            Some(to_device(Tensor::f_cat(&[qb, kb, vb], 0)?)?)
        } else {
            None
        };
        let o_proj = to_device(weights.take(
            &format!("{p}.self_attn.o_proj.weight"),
            &[hidden, heads * head_dim],
        )?)?;
        let o_bias = if config.o_bias {
            Some(to_device(
                weights.take(&format!("{p}.self_attn.o_proj.bias"), &[hidden])?,
            )?)
        } else {
            None
        };
        let gate = weights.take(&format!("{p}.mlp.gate_proj.weight"), &[inter, hidden])?;
        let up = weights.take(&format!("{p}.mlp.up_proj.weight"), &[inter, hidden])?;
        let gate_up = to_device(Tensor::f_cat(&[gate, up], 0)?)?;
        let down =
            to_device(weights.take(&format!("{p}.mlp.down_proj.weight"), &[hidden, inter])?)?;
        let mut norm = |name: &str| -> Result<RmsNorm, ModelError> {
            Ok(RmsNorm::new(
                to_device(weights.take(name, &[hidden])?)?,
                config.rms_norm_eps,
            ))
        };
        let input_norm = norm(&format!("{p}.input_layernorm.weight"))?;
        let post_attention_norm = norm(&format!("{p}.post_attention_layernorm.weight"))?;
        Ok(Self {
            input_norm,
            post_attention_norm,
            qkv,
            qkv_bias,
            o_proj,
            o_bias,
            gate_up,
            down,
            heads,
            kv_heads,
            head_dim,
            intermediate: inter,
        })
    }

    /// `x` is `[batch, seq, hidden]`; `keys`/`values` are this layer's cache tensors.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        plan: &AttentionPlan,
        keys: &mut Tensor,
        values: &mut Tensor,
    ) -> Result<Tensor, tch::TchError> {
        let size = x.size();
        let (b, n) = (size[0], size[1]);
        let h = self.input_norm.forward(x)?;
        let qkv = h.f_linear(&self.qkv, self.qkv_bias.as_ref())?;
        let q_width = self.heads * self.head_dim;
        let kv_width = self.kv_heads * self.head_dim;
        let split = |start: i64, width: i64, heads: i64| -> Result<Tensor, tch::TchError> {
            qkv.f_narrow(-1, start, width)?
                .f_reshape([b, n, heads, self.head_dim])?
                .f_transpose(1, 2)
        };
        // Queries and keys side by side as `heads + kv_heads` heads: RoPE rotates both in
        // one pass.
        let qk = split(0, q_width + kv_width, self.heads + self.kv_heads)?;
        let v = split(q_width + kv_width, kv_width, self.kv_heads)?;
        let attn = attend(plan, &qk, self.heads, &v, keys, values)?;
        let attn = attn.f_transpose(1, 2)?.f_reshape([b, n, q_width])?;
        let attn = attn.f_linear(&self.o_proj, self.o_bias.as_ref())?;
        let x = x.f_add(&attn)?;
        let h = self.post_attention_norm.forward(&x)?;
        let gate_up = h.f_linear::<Tensor>(&self.gate_up, None)?;
        let gate = gate_up.f_narrow(-1, 0, self.intermediate)?;
        let up = gate_up.f_narrow(-1, self.intermediate, self.intermediate)?;
        let mlp = gate
            .f_silu()?
            .f_mul(&up)?
            .f_linear::<Tensor>(&self.down, None)?;
        x.f_add(&mlp)
    }
}
