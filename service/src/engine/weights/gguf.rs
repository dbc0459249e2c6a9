//! GGUF tensors, dequantised to f32 and renamed to their Hugging Face names.
//!
//! Two facts of llama.cpp's converter are undone here so the model code has one layout:
//!
//! * GGUF lists dimensions fastest-first (`ne0`), so a `[out, in]` PyTorch weight is
//!   stored with shape `[in, out]`; the element order is already row-major `[out, in]`.
//! * For the `llama` architecture (which llama.cpp also uses for Mistral), the converter
//!   permutes the rows of `attn_q` and `attn_k` within each head, from HF's "rotate
//!   halves" RoPE layout to ggml's interleaved-pairs layout. Row `h·D + 2i + p` of the file
//!   is row `h·D + p·D/2 + i` of the HF weight (head `h`, head size `D`, pair `i`, half
//!   `p`); [`unpermute_rows`] moves each back. transformers' GGUF loader
//!   (`LlamaTensorProcessor`) does the same, which is why the goldens agree.
//!   Qwen2's converter does not permute.

use tch::{Kind, Tensor};

use super::int4::Int4Groups;
use super::{WeightError, WeightSet};
use crate::engine::config::{Architecture, ModelConfig};
use crate::engine::gguf::{GgufError, GgufFile};
use crate::engine::quant;

/// The HF name of a GGUF tensor, or `None` for tensors the engine does not use.
pub fn hf_name(gguf_name: &str) -> Option<String> {
    match gguf_name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let (layer, rest) = gguf_name.strip_prefix("blk.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, suffix) = rest
        .rsplit_once('.')
        .filter(|(_, s)| matches!(*s, "weight" | "bias"))?;
    let hf_part = match part {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf_part}.{suffix}"))
}

/// Dequantises every tensor the model uses into `set`, under its HF name, in f32; with
/// `keep_int4`, the Q4_0/Q4_1 weights of linear layers stay 4-bit ([`Int4Groups`]).
pub fn load_gguf(
    file: &GgufFile,
    config: &ModelConfig,
    set: &mut WeightSet,
    keep_int4: bool,
) -> Result<(), WeightError> {
    let permuted = matches!(
        config.architecture,
        Architecture::Llama | Architecture::Mistral
    );
    for info in file.tensors() {
        let Some(name) = hf_name(&info.name) else {
            continue;
        };
        // GGUF shape is fastest-first; PyTorch's is slowest-first.
        let shape: Vec<i64> = info
            .shape
            .iter()
            .rev()
            .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
            .collect();
        let heads = match permuted && info.name.ends_with(".weight") {
            true if info.name.contains(".attn_q.") => Some(config.num_heads),
            true if info.name.contains(".attn_k.") => Some(config.num_kv_heads),
            _ => None,
        };
        let unpermute = |t: &Tensor| match heads {
            Some(heads) => unpermute_rows(t, heads, &info.name),
            None => Ok(t.shallow_clone()),
        };
        // The decoder blocks' projections; the head and embedding stay dense.
        let linear = name.ends_with("_proj.weight");
        if let (true, true, &[rows, cols]) = (keep_int4, linear, shape.as_slice()) {
            let data = file.bytes_of(info);
            let blocks = quant::q4_blocks(info.dtype, data, info.n_elements).map_err(|source| {
                GgufError::Dequantize {
                    tensor: info.name.clone(),
                    dtype: info.dtype,
                    source,
                }
            })?;
            if let Some(blocks) = blocks {
                let groups = Int4Groups::from_blocks(&blocks, rows, cols)?.map_rows(unpermute)?;
                set.insert_int4(name, groups);
                continue;
            }
        }
        let values = file.dequantize(&info.name)?;
        let tensor = Tensor::f_from_slice(&values)?.f_reshape(shape.as_slice())?;
        drop(values);
        set.insert(name, unpermute(&tensor)?.f_to_kind(Kind::Float)?);
    }
    Ok(())
}

/// Undoes llama.cpp's per-head row interleaving of a `[heads · D, in]` Q or K weight.
pub fn unpermute_rows(weight: &Tensor, heads: usize, name: &str) -> Result<Tensor, WeightError> {
    let size = weight.size();
    let heads = i64::try_from(heads).unwrap_or(i64::MAX);
    let shape_error = || WeightError::Shape {
        name: name.to_owned(),
        expected: vec![heads, -1],
        found: size.clone(),
    };
    let [rows, cols] = size[..] else {
        return Err(shape_error());
    };
    if heads == 0 || rows % (2 * heads) != 0 {
        return Err(shape_error());
    }
    let half = rows / heads / 2;
    // File rows within a head are (pair i, half p) with p fastest; HF wants p slowest.
    Ok(weight
        .f_reshape([heads, half, 2, cols])?
        .f_transpose(1, 2)?
        .f_reshape([rows, cols])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_gguf_names_map_to_hf() {
        for (gguf, hf) in [
            ("token_embd.weight", Some("model.embed_tokens.weight")),
            (
                "blk.12.attn_q.bias",
                Some("model.layers.12.self_attn.q_proj.bias"),
            ),
            (
                "blk.0.ffn_norm.weight",
                Some("model.layers.0.post_attention_layernorm.weight"),
            ),
            ("rope_freqs.weight", None),
            ("blk.x.attn_q.weight", None),
            ("blk.1.attn_q.scale", None),
        ] {
            assert_eq!(hf_name(gguf).as_deref(), hf, "{gguf}");
        }
    }

    #[test]
    fn test_unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp's converter: reshape(heads, 2, D/2, in).swapaxes(1, 2).
        let (heads, d, cols) = (3i64, 8i64, 5i64);
        let hf = Tensor::arange(heads * d * cols, (Kind::Float, tch::Device::Cpu))
            .reshape([heads * d, cols]);
        let gguf = hf
            .reshape([heads, 2, d / 2, cols])
            .transpose(1, 2)
            .reshape([heads * d, cols]);
        assert!(!gguf.equal(&hf));
        let back = unpermute_rows(&gguf, heads as usize, "q").unwrap();
        assert!(back.equal(&hf));
        assert!(unpermute_rows(&gguf, 5, "q").is_err());
    }
}
