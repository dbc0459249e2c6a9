//! ggml tensor types: their on-disk ids and block geometry.
//!
//! Every ggml type stores its elements in blocks: `block_elems` values packed into
//! `block_bytes` bytes (1 value per block for the plain float and integer types). The ids
//! and sizes are those of `ggml.h` / gguf-py's `GGML_QUANT_SIZES`; ids that ggml retired
//! (4, 5, 31–33, 36–38) are unknown here, so a file using them is refused.

use std::fmt;

/// A ggml tensor type, with its on-disk id as the discriminant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[allow(non_camel_case_types)] // the ggml names, as every GGUF tool prints them
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32 = 0,
    /// 16-bit IEEE half-precision float.
    F16 = 1,
    /// 4-bit blocks of 32 with an f16 scale (Q4_0).
    Q4_0 = 2,
    /// 4-bit blocks of 32 with an f16 scale and an f16 minimum (Q4_1).
    Q4_1 = 3,
    /// 5-bit blocks of 32 with an f16 scale (Q5_0).
    Q5_0 = 6,
    /// 5-bit blocks of 32 with an f16 scale and an f16 minimum (Q5_1).
    Q5_1 = 7,
    /// 8-bit blocks of 32 with an f16 scale (Q8_0).
    Q8_0 = 8,
    /// 8-bit blocks of 32 with a scale and the scaled block sum (Q8_1); a dot-product intermediate.
    Q8_1 = 9,
    /// 2-bit k-quant: super-blocks of 256 in 16 sub-blocks of 16, 4-bit scales and mins (Q2_K).
    Q2_K = 10,
    /// 3-bit k-quant: super-blocks of 256 in 16 sub-blocks of 16, with 6-bit scales (Q3_K).
    Q3_K = 11,
    /// 4-bit k-quant: super-blocks of 256 in 8 sub-blocks of 32, with 6-bit scales and mins (Q4_K).
    Q4_K = 12,
    /// 5-bit k-quant: super-blocks of 256 in 8 sub-blocks of 32, with 6-bit scales and mins (Q5_K).
    Q5_K = 13,
    /// 6-bit k-quant: super-blocks of 256 in 16 sub-blocks of 16, with 8-bit scales (Q6_K).
    Q6_K = 14,
    /// 8-bit super-blocks of 256, an f32 scale and per-16 sums (Q8_K); a dot-product intermediate.
    Q8_K = 15,
    /// i-quant, 2.06 bits/weight: super-blocks of 256 coded against a fixed grid (IQ2_XXS).
    IQ2_XXS = 16,
    /// i-quant, 2.31 bits/weight: super-blocks of 256 coded against a fixed grid (IQ2_XS).
    IQ2_XS = 17,
    /// i-quant, 3.06 bits/weight: super-blocks of 256 coded against a fixed grid (IQ3_XXS).
    IQ3_XXS = 18,
    /// i-quant, 1.56 bits/weight: super-blocks of 256 coded against a fixed grid (IQ1_S).
    IQ1_S = 19,
    /// 4-bit blocks of 32 with an f16 scale, indexing a fixed non-linear 16-value table (IQ4_NL).
    IQ4_NL = 20,
    /// i-quant, 3.44 bits/weight: super-blocks of 256 coded against a fixed grid (IQ3_S).
    IQ3_S = 21,
    /// i-quant, 2.56 bits/weight: super-blocks of 256 coded against a fixed grid (IQ2_S).
    IQ2_S = 22,
    /// IQ4_NL's non-linear 4-bit table in super-blocks of 256 with 6-bit sub-block scales (IQ4_XS).
    IQ4_XS = 23,
    /// 8-bit signed integer.
    I8 = 24,
    /// 16-bit signed integer.
    I16 = 25,
    /// 32-bit signed integer.
    I32 = 26,
    /// 64-bit signed integer.
    I64 = 27,
    /// 64-bit IEEE float.
    F64 = 28,
    /// i-quant, 1.75 bits/weight: super-blocks of 256 coded against a fixed grid (IQ1_M).
    IQ1_M = 29,
    /// bfloat16: a 16-bit float with f32's 8-bit exponent and a 7-bit mantissa.
    BF16 = 30,
    /// Ternary {-1, 0, 1} super-blocks of 256, packed base-3, with an f16 scale (TQ1_0).
    TQ1_0 = 34,
    /// Ternary {-1, 0, 1} super-blocks of 256 at 2 bits per value with an f16 scale (TQ2_0).
    TQ2_0 = 35,
    /// OCP microscaling FP4: blocks of 32 E2M1 values sharing a power-of-two (E8M0) scale (MXFP4).
    MXFP4 = 39,
    /// NVIDIA FP4: blocks of 64 E2M1 values, one FP8 (E4M3) scale per 16 (NVFP4).
    NVFP4 = 40,
    /// 1-bit blocks of 128: each value is the f16 scale, signed by its bit (Q1_0).
    Q1_0 = 41,
}

/// Every known type, for lookups by id.
const ALL: [GgmlType; 34] = {
    use GgmlType::*;
    [
        F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ2_XXS,
        IQ2_XS, IQ3_XXS, IQ1_S, IQ4_NL, IQ3_S, IQ2_S, IQ4_XS, I8, I16, I32, I64, F64, IQ1_M, BF16,
        TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0,
    ]
};

impl GgmlType {
    /// The type with this on-disk id, or `None` for ids ggml does not (or no longer) define.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        ALL.iter().copied().find(|t| t.id() == id)
    }

    /// The on-disk id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// How many elements one block holds.
    pub fn block_elems(self) -> u64 {
        self.geometry().0
    }

    /// How many bytes one block takes on disk.
    pub fn block_bytes(self) -> u64 {
        self.geometry().1
    }

    /// `(elements per block, bytes per block)`.
    fn geometry(self) -> (u64, u64) {
        use GgmlType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            I8 => (1, 1),
            I64 | F64 => (1, 8),
            Q4_0 | IQ4_NL => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 40),
            MXFP4 => (32, 17),
            NVFP4 => (64, 36),
            Q1_0 => (128, 18),
            Q2_K => (256, 84),
            Q3_K | IQ3_S => (256, 110),
            Q4_K => (256, 144),
            Q5_K => (256, 176),
            Q6_K => (256, 210),
            Q8_K => (256, 292),
            IQ2_XXS | TQ2_0 => (256, 66),
            IQ2_XS => (256, 74),
            IQ3_XXS => (256, 98),
            IQ1_S => (256, 50),
            IQ2_S => (256, 82),
            IQ4_XS => (256, 136),
            IQ1_M => (256, 56),
            TQ1_0 => (256, 54),
        }
    }

    /// Bytes needed for `n_elements` values of this type, or `None` when `n_elements` is not
    /// a whole number of blocks or the size overflows `u64`.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let (elems, bytes) = self.geometry();
        n_elements
            .is_multiple_of(elems)
            .then(|| n_elements / elems)?
            .checked_mul(bytes)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The Debug name is the ggml spelling (`Q4_K`, `BF16`).
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_retired_ids_are_unknown() {
        for t in ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
        }
        for retired in [4, 5, 31, 32, 33, 36, 37, 38, 42, u32::MAX] {
            assert_eq!(GgmlType::from_id(retired), None, "id {retired}");
        }
    }

    #[test]
    fn bytes_for_needs_whole_blocks() {
        assert_eq!(GgmlType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(GgmlType::Q4_1.bytes_for(33), None);
        assert_eq!(GgmlType::Q6_K.bytes_for(512), Some(420));
        assert_eq!(GgmlType::F32.bytes_for(u64::MAX), None);
    }
}
