//! Weights kept 4-bit: a GGUF's Q4_0/Q4_1 linear weights as codes and per-block
//! parameters, for libtorch's group-wise int4 CPU kernel.
//!
//! Q4_1 stores `w = q·d + m` per block of 32; the kernel computes `w = (q − 8)·scale +
//! zero` per group, so `scale = d` and `zero = m + 8·d` (Q4_0, `w = (q − 8)·d`, has
//! `zero = 0`). [`Int4Groups::dequantize`] gives back exactly the float32 weights the
//! dense path reads from the same file, for fused projections whose parts are not all
//! 4-bit and for devices without the kernel.

use tch::{Kind, Tensor};

use super::WeightError;
use crate::engine::quant::Q4Blocks;

/// Elements per block (ggml's `QK4_0`/`QK4_1`), the kernel's group size.
pub const GROUP: i64 = 32;

/// A `[rows, cols]` weight held as 4-bit codes with each block's scale and minimum.
#[derive(Debug)]
pub struct Int4Groups {
    /// `[rows, cols]`, uint8 codes 0..=15.
    codes: Tensor,
    /// `[rows, cols / 32]` float32 scales.
    d: Tensor,
    /// `[rows, cols / 32]` float32 minimums (zero for Q4_0).
    m: Tensor,
    /// Q4_0: codes are centred on 8.
    centred: bool,
}

impl Int4Groups {
    /// Wraps a file's blocks as a `[rows, cols]` weight (`cols` a multiple of 32).
    pub fn from_blocks(blocks: &Q4Blocks, rows: i64, cols: i64) -> Result<Self, WeightError> {
        let groups = [rows, cols / GROUP];
        Ok(Int4Groups {
            codes: Tensor::f_from_slice(&blocks.codes)?.f_reshape([rows, cols])?,
            d: Tensor::f_from_slice(&blocks.d)?.f_reshape(groups)?,
            m: Tensor::f_from_slice(&blocks.m)?.f_reshape(groups)?,
            centred: blocks.centred,
        })
    }

    /// `[rows, cols]`.
    pub fn size(&self) -> Vec<i64> {
        self.codes.size()
    }

    /// The same rearrangement of rows applied to codes and block parameters alike
    /// (`rows` maps a `[rows, n]` tensor to another; blocks never cross rows).
    pub fn map_rows(
        self,
        rows: impl Fn(&Tensor) -> Result<Tensor, WeightError>,
    ) -> Result<Self, WeightError> {
        Ok(Int4Groups {
            codes: rows(&self.codes)?,
            d: rows(&self.d)?,
            m: rows(&self.m)?,
            centred: self.centred,
        })
    }

    /// The float32 weights, bit for bit what dequantising the file's blocks gives.
    pub fn dequantize(&self) -> Result<Tensor, WeightError> {
        let [rows, cols] = self.size()[..] else {
            unreachable!("codes are two-dimensional")
        };
        let q = self
            .codes
            .f_to_kind(Kind::Float)?
            .f_reshape([rows, cols / GROUP, GROUP])?;
        let (d, m) = (self.d.f_unsqueeze(-1)?, self.m.f_unsqueeze(-1)?);
        let w = if self.centred {
            q.f_sub_scalar(8.0)?.f_mul(&d)?
        } else {
            q.f_mul(&d)?.f_add(&m)?
        };
        Ok(w.f_reshape([rows, cols])?)
    }

    /// Packs for `_weight_int4pack_mm_for_cpu`: the packed codes, and `[cols / 32, rows, 2]`
    /// scales and zeros in bfloat16 (the kernel's vectorised activation type).
    pub fn pack_for_cpu(&self) -> Result<(Tensor, Tensor), WeightError> {
        let packed = self
            .codes
            .f_to_kind(Kind::Int)?
            .f_internal_convert_weight_to_int4pack_for_cpu(1)?;
        let zero = if self.centred {
            self.m.f_zeros_like()?
        } else {
            self.m.f_add(&self.d.f_mul_scalar(8.0)?)?
        };
        let scales_zeros =
            Tensor::f_stack(&[self.d.f_transpose(0, 1)?, zero.f_transpose(0, 1)?], 2)?
                .f_to_kind(Kind::BFloat16)?
                .f_contiguous()?;
        Ok((packed, scales_zeros))
    }
}

/// A linear layer's weight as the file gave it: dense, or 4-bit.
#[derive(Debug)]
pub enum LinearWeight {
    /// A float tensor `[out, in]`.
    Dense(Tensor),
    /// 4-bit codes with block parameters.
    Int4(Int4Groups),
}

impl LinearWeight {
    /// The dense float32 (or file dtype) weight.
    pub fn into_dense(self) -> Result<Tensor, WeightError> {
        match self {
            LinearWeight::Dense(t) => Ok(t),
            LinearWeight::Int4(g) => g.dequantize(),
        }
    }

    /// Stacks weights along their output rows (fused projections). 4-bit only when every
    /// part is 4-bit of the same kind; otherwise dense.
    pub fn cat(parts: Vec<LinearWeight>) -> Result<LinearWeight, WeightError> {
        let centred = parts.iter().map(|p| match p {
            LinearWeight::Int4(g) => Some(g.centred),
            LinearWeight::Dense(_) => None,
        });
        let centred: Vec<Option<bool>> = centred.collect();
        if let Some(&Some(first)) = centred.first()
            && centred.iter().all(|c| *c == Some(first))
        {
            let groups: Vec<Int4Groups> = parts
                .into_iter()
                .filter_map(|p| match p {
                    LinearWeight::Int4(g) => Some(g),
                    LinearWeight::Dense(_) => None,
                })
                .collect();
            let cat = |pick: fn(&Int4Groups) -> &Tensor| {
                Tensor::f_cat(&groups.iter().map(pick).collect::<Vec<_>>(), 0)
            };
            return Ok(LinearWeight::Int4(Int4Groups {
                codes: cat(|g| &g.codes)?,
                d: cat(|g| &g.d)?,
                m: cat(|g| &g.m)?,
                centred: first,
            }));
        }
        let dense = parts
            .into_iter()
            .map(LinearWeight::into_dense)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LinearWeight::Dense(Tensor::f_cat(&dense, 0)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ggml_type::GgmlType;
    use crate::engine::quant;

    /// `blocks` random Q4_0 (`with_min` false) or Q4_1 blocks, as a file stores them.
    fn random_blocks(blocks: usize, with_min: bool, seed: u64) -> Vec<u8> {
        let mut state = seed;
        let mut byte = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) as u8
        };
        let mut data = Vec::new();
        for _ in 0..blocks {
            let d = half::f16::from_f32(0.001 + f32::from(byte()) / 5000.0);
            data.extend_from_slice(&d.to_le_bytes());
            if with_min {
                let m = half::f16::from_f32(-f32::from(byte()) / 1000.0);
                data.extend_from_slice(&m.to_le_bytes());
            }
            data.extend((0..16).map(|_| byte()));
        }
        data
    }

    fn groups(dtype: GgmlType, rows: i64, cols: i64, seed: u64) -> (Int4Groups, Vec<f32>) {
        let n = (rows * cols) as u64;
        let data = random_blocks(n as usize / 32, dtype == GgmlType::Q4_1, seed);
        let dense = quant::dequantize(dtype, &data, n).unwrap();
        let blocks = quant::q4_blocks(dtype, &data, n).unwrap().unwrap();
        (Int4Groups::from_blocks(&blocks, rows, cols).unwrap(), dense)
    }

    #[test]
    fn kept_blocks_dequantise_bit_for_bit_as_the_dense_path() {
        for dtype in [GgmlType::Q4_0, GgmlType::Q4_1] {
            let (g, dense) = groups(dtype, 6, 96, 1);
            let ours = Vec::<f32>::try_from(g.dequantize().unwrap().flatten(0, -1)).unwrap();
            let same = ours
                .iter()
                .zip(&dense)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{dtype}: 4-bit groups dequantise differently");
        }
        assert!(
            quant::q4_blocks(GgmlType::Q8_0, &[0; 34], 32)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn fused_weights_stay_four_bit_only_when_every_part_is() {
        let (a, da) = groups(GgmlType::Q4_1, 4, 64, 2);
        let (b, db) = groups(GgmlType::Q4_1, 2, 64, 3);
        let expected = [da, db].concat();
        let LinearWeight::Int4(cat) =
            LinearWeight::cat(vec![LinearWeight::Int4(a), LinearWeight::Int4(b)]).unwrap()
        else {
            panic!("two 4-bit parts fuse 4-bit");
        };
        assert_eq!(cat.size(), [6, 64]);
        let ours = Vec::<f32>::try_from(cat.dequantize().unwrap().flatten(0, -1)).unwrap();
        assert_eq!(ours, expected);
        let (c, dc) = groups(GgmlType::Q4_0, 2, 64, 4);
        let dense = Tensor::from_slice(&[1.0f32; 64]).reshape([1, 64]);
        let mixed = LinearWeight::cat(vec![LinearWeight::Int4(c), LinearWeight::Dense(dense)]);
        let LinearWeight::Dense(mixed) = mixed.unwrap() else {
            panic!("a dense part makes the fusion dense");
        };
        let mixed = Vec::<f32>::try_from(mixed.flatten(0, -1)).unwrap();
        assert_eq!(mixed, [dc, vec![1.0; 64]].concat());
    }
}
