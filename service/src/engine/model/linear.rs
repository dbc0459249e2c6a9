//! A linear layer: dense, or with 4-bit weights and a dense copy for wide products.
//!
//! Dense layers run `x·Wᵀ + b` in the model's dtype. 4-bit layers (a GGUF's Q4_0/Q4_1
//! weights, on the CPU) run products of few rows (decode steps, bound by weight traffic)
//! through libtorch's group-wise int4 kernel, whose vectorised path takes bfloat16
//! activations: `x` is rounded to bfloat16 for the product, which comes back in the
//! model's dtype. Products over many rows (prefill, wide decode batches) are bound by
//! arithmetic and run a dense copy of the same weights instead: in bfloat16 where the CPU
//! multiplies bfloat16 natively (AVX512-BF16, AMX; 3.8× float32 at prefill's 128 rows on
//! the project's Xeon, `benches/examples/int4_probe.rs`), else in the model's dtype. The
//! weights are the file's own (see [`crate::engine::weights::int4`]); the bfloat16
//! rounding is what separates this mode from the exact one.

use tch::{Kind, Tensor};

use crate::engine::weights::int4::{GROUP, LinearWeight};

/// Most rows a product runs through the int4 kernel when the wide copy is bfloat16: the
/// two cost the same near 10 rows on the project's Xeon (int4 8.1 against 19.2 ms per
/// step's layers at 4 rows, 26.1 against 19.7 at 16).
const NARROW_ROWS_BF16: i64 = 8;
/// The same when the wide copy is float32, which only overtakes int4 past decode's rows.
const NARROW_ROWS_F32: i64 = 16;

/// Whether this CPU multiplies bfloat16 natively, so that wide products run faster in
/// bfloat16 than in float32.
pub(crate) fn native_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The form that runs products of few rows.
#[derive(Debug)]
enum Narrow {
    /// `[out, in]` weight in the model's dtype and device.
    Dense(Tensor),
    /// Packed 4-bit weight on the CPU.
    Int4 {
        /// `_convert_weight_to_int4pack_for_cpu`'s output.
        packed: Tensor,
        /// `[in / 32, out, 2]` bfloat16 scales and zeros.
        scales_zeros: Tensor,
        /// Output features.
        out: i64,
    },
}

/// One projection.
#[derive(Debug)]
pub(crate) struct Linear {
    narrow: Narrow,
    /// The same weights dense, for products over more than `narrow_rows` rows; none when
    /// the narrow form is that dense weight.
    wide: Option<Tensor>,
    narrow_rows: i64,
    /// Optional `[out]` bias in the model's dtype.
    bias: Option<Tensor>,
}

impl Linear {
    /// Places `weight` for the model. With `int4` (the CPU's quantised mode) 4-bit stays
    /// 4-bit, beside a dense copy in the given dtype; anything else goes through
    /// `to_device` dense.
    pub(crate) fn new(
        weight: LinearWeight,
        bias: Option<Tensor>,
        int4: Option<Kind>,
        to_device: &dyn Fn(Tensor) -> Result<Tensor, tch::TchError>,
    ) -> Result<Self, super::ModelError> {
        let bias = bias.map(to_device).transpose()?;
        Ok(match (weight, int4) {
            (LinearWeight::Int4(groups), Some(wide)) => {
                let out = groups.size()[0];
                let (packed, scales_zeros) = groups.pack_for_cpu()?;
                let dense = to_device(groups.dequantize()?)?.f_to_kind(wide)?;
                Linear {
                    narrow: Narrow::Int4 {
                        packed,
                        scales_zeros,
                        out,
                    },
                    narrow_rows: narrow_rows(wide),
                    wide: Some(dense),
                    bias,
                }
            }
            (weight, _) => Linear {
                narrow: Narrow::Dense(to_device(weight.into_dense()?)?),
                wide: None,
                narrow_rows: i64::MAX,
                bias,
            },
        })
    }

    /// Whether the weights are held 4-bit.
    pub(crate) fn is_int4(&self) -> bool {
        matches!(self.narrow, Narrow::Int4 { .. })
    }

    /// `x·Wᵀ + b` over the last dimension of `x`, in `x`'s dtype.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let mut shape = x.size();
        let features = *shape.last().unwrap_or(&1);
        let rows = x.numel() as i64 / features.max(1);
        let y = match (&self.narrow, &self.wide) {
            (_, Some(wide)) if rows > self.narrow_rows => x
                .f_to_kind(wide.kind())?
                .f_linear::<Tensor>(wide, None)?
                .f_to_kind(x.kind())?,
            (Narrow::Dense(weight), _) => return x.f_linear(weight, self.bias.as_ref()),
            (
                Narrow::Int4 {
                    packed,
                    scales_zeros,
                    out,
                },
                _,
            ) => {
                if let Some(last) = shape.last_mut() {
                    *last = *out;
                }
                x.f_reshape([-1, features])?
                    .f_to_kind(Kind::BFloat16)?
                    .f_contiguous()?
                    .f_internal_weight_int4pack_mm_for_cpu(packed, GROUP, scales_zeros)?
                    .f_to_kind(x.kind())?
                    .f_reshape(shape.as_slice())?
            }
        };
        match &self.bias {
            Some(bias) => y.f_add(bias),
            None => Ok(y),
        }
    }
}

fn narrow_rows(wide: Kind) -> i64 {
    match wide {
        Kind::BFloat16 => NARROW_ROWS_BF16,
        _ => NARROW_ROWS_F32,
    }
}

/// The Euclidean norm of each row of a `[rows, n]` tensor, computed in float32.
fn row_norms(t: &Tensor, keepdim: bool) -> Result<Tensor, tch::TchError> {
    t.f_to_kind(Kind::Float)?
        .f_square()?
        .f_sum_dim_intlist([1i64].as_slice(), keepdim, Kind::Float)?
        .f_sqrt()
}

/// Bound on `|y_copy − y_exact| / (‖x‖₂·‖w‖₂)` for one logit of a head product run in
/// bfloat16 (both operands rounded, unit roundoff 2⁻⁹ each, accumulated in float32), with
/// room to spare: 2⁻⁷ against the ≈ 2⁻⁸ the rounding can reach.
const HEAD_COPY_BOUND: f64 = 1.0 / 128.0;

/// The output head, `[vocab, hidden]`: the largest weight a decode step reads, and in a
/// product of few rows reading it is the cost. With a bfloat16 copy (the quantised mode,
/// on CPUs with native bfloat16) every product runs in the copy: one row took 1.80 ms
/// against 6.91 in float32 at SmolLM2's 49,152 × 576 on a 2-core AMD EPYC
/// (`benches/examples/int4_probe.rs`), about half of a whole int4 decode step there. The
/// copy's logits are then corrected where they decide anything: every logit that could
/// be its row's largest in float32 — within twice the rounding bound of the copy's best —
/// is recomputed from the float32 weight. So the best token of every row is the one the
/// float32 head gives, and so are the logits of its close rivals.
#[derive(Debug)]
pub(crate) struct Head {
    /// The weight in the model's dtype.
    exact: Tensor,
    /// The bfloat16 copy and the largest row norm of the weight.
    copy: Option<(Tensor, f64)>,
}

impl Head {
    /// `weight` already placed; a copy in `wide` when that dtype differs from its own.
    pub(crate) fn new(weight: Tensor, wide: Option<Kind>) -> Result<Self, tch::TchError> {
        let copy = match wide.filter(|&kind| kind != weight.kind()) {
            Some(kind) => {
                let norms = row_norms(&weight, false)?;
                let largest = norms.f_max()?.f_double_value(&[])?;
                Some((weight.f_to_kind(kind)?, largest))
            }
            None => None,
        };
        Ok(Head {
            exact: weight,
            copy,
        })
    }

    /// The logits of `x` (`[.., hidden]`), in `x`'s dtype.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, tch::TchError> {
        let Some((copy, largest_norm)) = &self.copy else {
            return x.f_linear::<Tensor>(&self.exact, None);
        };
        let y = x
            .f_to_kind(copy.kind())?
            .f_linear::<Tensor>(copy, None)?
            .f_to_kind(x.kind())?
            .f_contiguous()?;
        let hidden = self.exact.size()[1];
        let vocab = self.exact.size()[0];
        let rows = x.f_reshape([-1, hidden])?;
        let flat = y.f_view([-1, vocab])?;
        // Each row's bound, and the logits that could be its best in float32.
        let bound = row_norms(&rows, true)?.f_mul_scalar(HEAD_COPY_BOUND * largest_norm)?;
        let floor = flat
            .f_amax([1i64].as_slice(), true)?
            .f_sub(&bound.f_mul_scalar(2.0)?)?;
        let rivals = flat.f_ge_tensor(&floor)?.f_nonzero()?;
        let (row, token) = (rivals.f_select(1, 0)?, rivals.f_select(1, 1)?);
        let exact = rows
            .f_index_select(0, &row)?
            .f_mul(&self.exact.f_index_select(0, &token)?)?
            .f_sum_dim_intlist([1i64].as_slice(), false, rows.kind())?;
        let mut flat = flat;
        let _ = flat.f_index_put_(&[Some(row), Some(token)], &exact, false)?;
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::quant::Q4Blocks;
    use crate::engine::weights::int4::Int4Groups;

    const ROWS: i64 = 64;
    const COLS: i64 = 128;

    /// The same 4-bit weight kept 4-bit (wide copy in `wide`) and dequantised dense.
    fn int4_and_dense(wide: Kind) -> (Linear, Linear) {
        let n = (ROWS * COLS) as usize;
        let blocks = || Q4Blocks {
            codes: (0..n).map(|i| ((i * 7 + i / 5) % 16) as u8).collect(),
            d: (0..n / 32).map(|b| 0.01 + (b % 7) as f32 * 0.003).collect(),
            m: (0..n / 32).map(|b| -0.05 - (b % 5) as f32 * 0.01).collect(),
            centred: false,
        };
        let weight = |b| LinearWeight::Int4(Int4Groups::from_blocks(&b, ROWS, COLS).unwrap());
        let to_device = |t: Tensor| Ok(t);
        let int4 = Linear::new(weight(blocks()), None, Some(wide), &to_device).unwrap();
        let dense = Linear::new(weight(blocks()), None, None, &to_device).unwrap();
        assert!(int4.is_int4() && !dense.is_int4());
        (int4, dense)
    }

    fn weight_of(dense: &Linear) -> &Tensor {
        match &dense.narrow {
            Narrow::Dense(weight) => weight,
            Narrow::Int4 { .. } => unreachable!("dense"),
        }
    }

    /// Max |a − b| and max |b|.
    fn gap(a: &Tensor, b: &Tensor) -> (f64, f64) {
        let err = (a - b).abs().max().double_value(&[]);
        (err, b.abs().max().double_value(&[]))
    }

    fn x(shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (Kind::Float, tch::Device::Cpu))
    }

    #[test]
    fn few_rows_run_the_int4_kernel_within_bfloat16_of_dense() {
        for wide in [Kind::Float, Kind::BFloat16] {
            let (int4, dense) = int4_and_dense(wide);
            for rows in [1, narrow_rows(wide)] {
                let x = x(&[rows, COLS]);
                let (a, b) = (int4.forward(&x).unwrap(), dense.forward(&x).unwrap());
                assert_eq!(a.size(), [rows, ROWS]);
                let (err, scale) = gap(&a, &b);
                assert!(err > 0.0, "the int4 kernel rounds to bfloat16");
                assert!(err < scale * 0.02, "{rows} rows: |Δ| {err} against {scale}");
            }
        }
    }

    #[test]
    fn many_rows_run_the_wide_copy_exact_in_float32_and_bfloat16_otherwise() {
        let (int4, dense) = int4_and_dense(Kind::Float);
        let x3 = x(&[2, NARROW_ROWS_F32, COLS]);
        let a = int4.forward(&x3).unwrap();
        assert_eq!(a.size(), [2, NARROW_ROWS_F32, ROWS]);
        assert!(
            a.equal(&dense.forward(&x3).unwrap()),
            "float32 copy is exact"
        );

        let (int4, dense) = int4_and_dense(Kind::BFloat16);
        let w16 = weight_of(&dense).to_kind(Kind::BFloat16);
        for rows in [NARROW_ROWS_BF16 + 1, 130] {
            let x = x(&[rows, COLS]);
            let a = int4.forward(&x).unwrap();
            let bf16 = x.to_kind(Kind::BFloat16).linear::<Tensor>(&w16, None);
            assert!(
                a.equal(&bf16.to_kind(Kind::Float)),
                "{rows} rows: the bf16 copy"
            );
            let (err, scale) = gap(&a, &dense.forward(&x).unwrap());
            assert!(err < scale * 0.02, "{rows} rows: |Δ| {err} against {scale}");
        }
    }

    #[test]
    fn a_head_with_a_bf16_copy_gives_the_float32_best_token_and_its_rivals_exactly() {
        let w = x(&[ROWS, COLS]);
        let head = Head::new(w.shallow_clone(), Some(Kind::BFloat16)).unwrap();
        for rows in [1, 16] {
            let x = x(&[rows, COLS]);
            let exact = x.linear::<Tensor>(&w, None);
            let ours = head.forward(&x).unwrap();
            // The copy's own product, uncorrected, differs somewhere.
            let copy = x
                .to_kind(Kind::BFloat16)
                .linear::<Tensor>(&w.to_kind(Kind::BFloat16), None)
                .to_kind(Kind::Float);
            assert!((&copy - &exact).abs().max().double_value(&[]) > 1e-4);
            assert!(
                ours.argmax(1, false).equal(&exact.argmax(1, false)),
                "{rows} rows"
            );
            // The best logit of each row is float32's (up to the order of its sum).
            let best = exact.amax([1i64].as_slice(), false);
            let at = ours.gather(1, &exact.argmax(1, true), false).squeeze_dim(1);
            assert!(
                (&at - &best).abs().max().double_value(&[]) < 1e-4,
                "{rows} rows"
            );
        }
        // No copy when the wide dtype is the weight's own: the weight itself, exactly.
        let same = Head::new(w.shallow_clone(), Some(Kind::Float)).unwrap();
        assert!(same.copy.is_none());
        let one = x(&[1, COLS]);
        assert!(
            same.forward(&one)
                .unwrap()
                .equal(&one.linear::<Tensor>(&w, None))
        );
    }
}
