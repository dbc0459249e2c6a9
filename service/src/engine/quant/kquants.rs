//! ggml's K-quants: super-blocks of 256 elements with per-sub-block scales.
//!
//! Q4_K and Q5_K split a super-block into 8 sub-blocks of 32, each with a 6-bit scale and
//! a 6-bit min packed into 12 bytes (`get_scale_min_k4` in ggml); Q6_K has 16 sub-blocks
//! of 16 with signed 8-bit scales; Q2_K has 16 sub-blocks of 16 with 4-bit scale and min.

use super::float::f16_at;

const QK_K: usize = 256;

/// Scale and min of sub-block `j` (0..8) from the 12 packed bytes.
#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (f32::from(sc), f32::from(m))
}

/// `block_q4_K` (`qh_len` 0) and `block_q5_K` (`qh_len` 32): f16 `d`, f16 `dmin`, 12 bytes
/// of scales, `qh_len` bytes of 5th bits, 128 bytes of nibbles. Each 32 bytes of `qs` hold
/// two sub-blocks: low nibbles first, then high nibbles. In Q5_K sub-block `2p` takes bit
/// `2p` of each `qh` byte as its 5th bit, `2p + 1` bit `2p + 1`.
fn q45_k_blocks(blocks: &[u8], out: &mut [f32], qh_len: usize) {
    for (b, y) in blocks
        .chunks_exact(144 + qh_len)
        .zip(out.chunks_exact_mut(QK_K))
    {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let scales = &b[4..16];
        let (qh, qs) = b[16..].split_at(qh_len);
        for (pair, (q, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = scale_min_k4(2 * pair, scales);
            let (sc2, m2) = scale_min_k4(2 * pair + 1, scales);
            let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
            for (l, &byte) in q.iter().enumerate() {
                // Adding 0.0 for Q4_K leaves each value exactly as it was.
                let h = qh.get(l).copied().unwrap_or(0);
                let hi1 = if h & (1 << (2 * pair)) != 0 {
                    16.0
                } else {
                    0.0
                };
                let hi2 = if h & (2 << (2 * pair)) != 0 {
                    16.0
                } else {
                    0.0
                };
                y[l] = d1 * (f32::from(byte & 0x0F) + hi1) - m1;
                y[l + 32] = d2 * (f32::from(byte >> 4) + hi2) - m2;
            }
        }
    }
}

/// `block_q4_K`: see [`q45_k_blocks`].
pub(super) fn q4_k_blocks(blocks: &[u8], out: &mut [f32]) {
    q45_k_blocks(blocks, out, 0);
}

/// `block_q5_K`: see [`q45_k_blocks`].
pub(super) fn q5_k_blocks(blocks: &[u8], out: &mut [f32]) {
    q45_k_blocks(blocks, out, 32);
}

/// `block_q6_K`: 128 bytes `ql` (low 4 bits), 64 bytes `qh` (high 2 bits), 16 signed
/// scales, f16 `d`; `x = d * scale * (q - 32)`. Each half of 128 elements uses 64 bytes of
/// `ql`, 32 of `qh` and 8 scales.
pub(super) fn q6_k_blocks(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks.chunks_exact(210).zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_at(b, 208);
        for half in 0..2 {
            let ql = &b[64 * half..64 * half + 64];
            let qh = &b[128 + 32 * half..128 + 32 * half + 32];
            let sc = &b[192 + 8 * half..192 + 8 * half + 8];
            let y = &mut y[128 * half..128 * half + 128];
            // Quarter `k` takes the low (k < 2) or high nibbles of `ql[32 * (k % 2)..]` and
            // bits `2k..2k + 2` of `qh`.
            for l in 0..32 {
                for k in 0..4 {
                    let lo = (ql[l + 32 * (k % 2)] >> (4 * (k / 2))) & 0x0F;
                    let q = i32::from(lo | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
                    y[l + 32 * k] = d * f32::from(sc[l / 16 + 2 * k] as i8) * q as f32;
                }
            }
        }
    }
}

/// `block_q2_K`: 16 bytes of scales (low nibble scale, high nibble min), 64 bytes of 2-bit
/// values, f16 `d`, f16 `dmin`. Sub-block `is` (16 elements, one scale) reads 16 bytes of
/// `qs` at shift `2 * (is / 2 % 4)`: each half of 128 elements reads its 32 bytes four
/// times, at shifts 0, 2, 4 and 6.
pub(super) fn q2_k_blocks(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks.chunks_exact(84).zip(out.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
        for (is, (&sc, y)) in b[0..16].iter().zip(y.chunks_exact_mut(16)).enumerate() {
            let (dl, ml) = (d * f32::from(sc & 0x0F), dmin * f32::from(sc >> 4));
            let q = &b[16 + 32 * (is / 8) + 16 * (is % 2)..][..16];
            let shift = 2 * (is / 2 % 4);
            for (dst, &v) in y.iter_mut().zip(q) {
                *dst = dl * f32::from((v >> shift) & 3) - ml;
            }
        }
    }
}
