//! A linear layer, dense or with 4-bit weights.
//!
//! Dense layers run `x·Wᵀ + b` in the model's dtype. 4-bit layers (a GGUF's Q4_0/Q4_1
//! weights, on the CPU) run decode steps, which are bound by weight traffic, through
//! libtorch's group-wise int4 kernel, whose vectorised path takes bfloat16 activations:
//! `x` is rounded to bfloat16 for the product, which comes back in the model's dtype.
//! Prefill, bound by arithmetic, runs a dense copy exactly as the float32 mode does. The
//! weights are the file's own (see [`crate::engine::weights::int4`]); rounding
//! activations, scales and zeros to bfloat16 in decode steps is what separates this mode
//! from the exact one.

use tch::{Kind, Tensor};

use crate::engine::weights::int4::{GROUP, LinearWeight};

/// Most rows a product runs through the int4 kernel (decode steps of up to this many
/// sequences); more (prefill) go to the dense copy.
const INT4_MAX_ROWS: i64 = 16;

/// One projection.
#[derive(Debug)]
pub(crate) enum Linear {
    /// `[out, in]` weight in the model's dtype and device.
    Dense {
        /// The weight.
        weight: Tensor,
        /// Optional `[out]` bias.
        bias: Option<Tensor>,
    },
    /// Packed 4-bit weight on the CPU.
    Int4 {
        /// `_convert_weight_to_int4pack_for_cpu`'s output.
        packed: Tensor,
        /// `[in / 32, out, 2]` bfloat16 scales and zeros.
        scales_zeros: Tensor,
        /// Output features.
        out: i64,
        /// The same weights dense in the model's dtype, for products over many rows
        /// (prefill), which are bound by arithmetic: there the dense kernels are faster,
        /// and exact.
        dense: Tensor,
        /// Optional `[out]` bias in the model's dtype.
        bias: Option<Tensor>,
    },
}

impl Linear {
    /// Places `weight` for the model: 4-bit stays 4-bit when `int4` (the CPU), anything
    /// else goes through `to_device` dense.
    pub(crate) fn new(
        weight: LinearWeight,
        bias: Option<Tensor>,
        int4: bool,
        to_device: &dyn Fn(Tensor) -> Result<Tensor, tch::TchError>,
    ) -> Result<Self, super::ModelError> {
        let bias = bias.map(to_device).transpose()?;
        Ok(match weight {
            LinearWeight::Int4(groups) if int4 => {
                let out = groups.size()[0];
                let (packed, scales_zeros) = groups.pack_for_cpu()?;
                let dense = to_device(groups.dequantize()?)?;
                Linear::Int4 {
                    packed,
                    scales_zeros,
                    out,
                    dense,
                    bias,
                }
            }
            weight => Linear::Dense {
                weight: to_device(weight.into_dense()?)?,
                bias,
            },
        })
    }

    /// Whether the weights are held 4-bit.
    pub(crate) fn is_int4(&self) -> bool {
        matches!(self, Linear::Int4 { .. })
    }

    /// `x·Wᵀ + b` over the last dimension of `x`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        match self {
            Linear::Dense { weight, bias } => x.f_linear(weight, bias.as_ref()),
            Linear::Int4 {
                packed,
                scales_zeros,
                out,
                dense,
                bias,
            } => {
                let mut shape = x.size();
                let features = *shape.last().unwrap_or(&0);
                let rows = x.f_reshape([-1, features])?;
                if rows.size()[0] > INT4_MAX_ROWS {
                    return x.f_linear(dense, bias.as_ref());
                }
                let y = rows
                    .f_to_kind(Kind::BFloat16)?
                    .f_contiguous()?
                    .f_internal_weight_int4pack_mm_for_cpu(packed, GROUP, scales_zeros)?
                    .f_to_kind(x.kind())?;
                if let Some(last) = shape.last_mut() {
                    *last = *out;
                }
                let y = y.f_reshape(shape.as_slice())?;
                match bias {
                    Some(bias) => y.f_add(bias),
                    None => Ok(y),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::quant::Q4Blocks;
    use crate::engine::weights::int4::Int4Groups;

    fn int4_and_dense(rows: i64, cols: i64) -> (Linear, Linear) {
        let n = (rows * cols) as usize;
        let blocks = || Q4Blocks {
            codes: (0..n).map(|i| ((i * 7 + i / 5) % 16) as u8).collect(),
            d: (0..n / 32).map(|b| 0.01 + (b % 7) as f32 * 0.003).collect(),
            m: (0..n / 32).map(|b| -0.05 - (b % 5) as f32 * 0.01).collect(),
            centred: false,
        };
        let weight = |b| LinearWeight::Int4(Int4Groups::from_blocks(&b, rows, cols).unwrap());
        let to_device = |t: Tensor| Ok(t);
        let int4 = Linear::new(weight(blocks()), None, true, &to_device).unwrap();
        let dense = Linear::new(weight(blocks()), None, false, &to_device).unwrap();
        assert!(int4.is_int4() && !dense.is_int4());
        (int4, dense)
    }

    #[test]
    fn decode_rows_use_the_int4_kernel_within_bfloat16_of_dense_and_prefill_is_exact() {
        let (int4, dense) = int4_and_dense(64, 128);
        for rows in [1, INT4_MAX_ROWS] {
            let x = Tensor::randn([rows, 128], (Kind::Float, tch::Device::Cpu));
            let (a, b) = (int4.forward(&x).unwrap(), dense.forward(&x).unwrap());
            assert_eq!(a.size(), [rows, 64]);
            let err = (&a - &b).abs().max().double_value(&[]);
            let scale = b.abs().max().double_value(&[]);
            assert!(err > 0.0, "the int4 kernel rounds to bfloat16");
            assert!(
                err < scale * 0.02,
                "{rows} rows: |Δ| {err} against |y| {scale}"
            );
        }
        let x = Tensor::randn([2, INT4_MAX_ROWS, 128], (Kind::Float, tch::Device::Cpu));
        let (a, b) = (int4.forward(&x).unwrap(), dense.forward(&x).unwrap());
        assert_eq!(a.size(), [2, INT4_MAX_ROWS, 64]);
        assert!(a.equal(&b), "prefill runs the dense copy");
    }
}
