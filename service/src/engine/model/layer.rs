//! One decoder block: RMSNorm → grouped-query attention (with the KV cache) → residual,
//! RMSNorm → SwiGLU MLP → residual.
//!
//! Projections are fused at load: one `[q + k + v, hidden]` matrix for attention and one
//! `[gate + up, hidden]` for the MLP, so each is a single GEMM per step.

use tch::Tensor;

use super::attention::{AttentionPlan, attend};
use super::error::ModelError;
use super::linear::Linear;
use crate::engine::config::ModelConfig;
use crate::engine::weights::WeightSet;
use crate::engine::weights::int4::LinearWeight;

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
    qkv: Linear,
    o_proj: Linear,
    gate_up: Linear,
    down: Linear,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
    intermediate: i64,
}

impl DecoderLayer {
    /// Takes layer `index`'s tensors out of `weights` (HF names), checks their shapes,
    /// fuses them and moves them to `device` in `kind`; with `int4` 4-bit weights stay
    /// 4-bit beside a dense copy in that dtype ([`Linear::new`]).
    pub(crate) fn load(
        weights: &mut WeightSet,
        config: &ModelConfig,
        index: usize,
        to_device: &dyn Fn(Tensor) -> Result<Tensor, tch::TchError>,
        int4: Option<tch::Kind>,
    ) -> Result<Self, ModelError> {
        let p = format!("model.layers.{index}");
        let hidden = config.hidden_size as i64;
        let (heads, kv_heads, head_dim) = (
            config.num_heads as i64,
            config.num_kv_heads as i64,
            config.head_dim as i64,
        );
        let inter = config.intermediate_size as i64;
        let (q_rows, kv_rows) = (heads * head_dim, kv_heads * head_dim);
        let mut take =
            |name: &str, shape: &[i64]| weights.take_linear(&format!("{p}.{name}"), shape);
        let qkv = LinearWeight::cat(vec![
            take("self_attn.q_proj.weight", &[q_rows, hidden])?,
            take("self_attn.k_proj.weight", &[kv_rows, hidden])?,
            take("self_attn.v_proj.weight", &[kv_rows, hidden])?,
        ])?;
        let o_proj = take("self_attn.o_proj.weight", &[hidden, q_rows])?;
        let gate_up = LinearWeight::cat(vec![
            take("mlp.gate_proj.weight", &[inter, hidden])?,
            take("mlp.up_proj.weight", &[inter, hidden])?,
        ])?;
        let down = take("mlp.down_proj.weight", &[hidden, inter])?;
        let mut bias = |name: &str, rows: i64| weights.take(&format!("{p}.{name}"), &[rows]);
        let qkv_bias = if config.qkv_bias {
            let parts = [
                bias("self_attn.q_proj.bias", q_rows)?,
                bias("self_attn.k_proj.bias", kv_rows)?,
                bias("self_attn.v_proj.bias", kv_rows)?,
            ];
            Some(Tensor::f_cat(&parts, 0)?)
        } else {
            None
        };
        let o_bias = config
            .o_bias
            .then(|| bias("self_attn.o_proj.bias", hidden))
            .transpose()?;
        let mut norm = |name: &str| -> Result<RmsNorm, ModelError> {
            Ok(RmsNorm::new(
                to_device(weights.take(&format!("{p}.{name}"), &[hidden])?)?,
                config.rms_norm_eps,
            ))
        };
        let input_norm = norm("input_layernorm.weight")?;
        let post_attention_norm = norm("post_attention_layernorm.weight")?;
        let linear = |w, b| Linear::new(w, b, int4, to_device);
        Ok(Self {
            input_norm,
            post_attention_norm,
            qkv: linear(qkv, qkv_bias)?,
            o_proj: linear(o_proj, o_bias)?,
            gate_up: linear(gate_up, None)?,
            down: linear(down, None)?,
            heads,
            kv_heads,
            head_dim,
            intermediate: inter,
        })
    }

    /// Whether the block's projections hold 4-bit weights.
    pub(crate) fn is_int4(&self) -> bool {
        [&self.qkv, &self.o_proj, &self.gate_up, &self.down]
            .iter()
            .any(|l| l.is_int4())
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
        let qkv = self.qkv.forward(&h)?;
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
        let attn = self.o_proj.forward(&attn)?;
        let x = x.f_add(&attn)?;
        let h = self.post_attention_norm.forward(&x)?;
        let gate_up = self.gate_up.forward(&h)?;
        let gate = gate_up.f_narrow(-1, 0, self.intermediate)?;
        let up = gate_up.f_narrow(-1, self.intermediate, self.intermediate)?;
        let mlp = self.down.forward(&gate.f_silu()?.f_mul(&up)?)?;
        x.f_add(&mlp)
    }
}
