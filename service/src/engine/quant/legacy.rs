//! ggml's original 32-element block formats: Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.
//!
//! In the 4- and 5-bit formats byte `j` of `qs` holds element `j` in its low nibble and
//! element `j + 16` in its high nibble; the 5th bits of the Q5 formats sit in a 32-bit
//! little-endian `qh`, bit `j` for element `j`.

use super::float::f16_at;

const QK: usize = 32;

/// `block_q4_0`: f16 `d`, 16 bytes of nibbles; `x = (q - 8) * d`.
pub(super) fn q4_0_blocks(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks.chunks_exact(18).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for (j, &q) in b[2..18].iter().enumerate() {
            y[j] = (i32::from(q & 0x0F) - 8) as f32 * d;
            y[j + 16] = (i32::from(q >> 4) - 8) as f32 * d;
        }
    }
}

/// `block_q4_1`: f16 `d`, f16 `m`, 16 bytes of nibbles; `x = q * d + m`.
pub(super) fn q4_1_blocks(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks.chunks_exact(20).zip(out.chunks_exact_mut(QK)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        for (j, &q) in b[4..20].iter().enumerate() {
            y[j] = f32::from(q & 0x0F) * d + m;
            y[j + 16] = f32::from(q >> 4) * d + m;
        }
    }
}

/// Splits `block_q4_0` (`with_min` false) or `block_q4_1` blocks into one 4-bit code per
/// element (0..=15, element order) and each block's `d` and `m` (0 for Q4_0).
pub(super) fn q4_split(
    blocks: &[u8],
    with_min: bool,
    codes: &mut [u8],
    d: &mut [f32],
    m: &mut [f32],
) {
    let size = if with_min { 20 } else { 18 };
    let blocks = blocks.chunks_exact(size).zip(codes.chunks_exact_mut(QK));
    for ((b, y), (d, m)) in blocks.zip(d.iter_mut().zip(m.iter_mut())) {
        *d = f16_at(b, 0);
        *m = if with_min { f16_at(b, 2) } else { 0.0 };
        for (j, &q) in b[size - 16..].iter().enumerate() {
            y[j] = q & 0x0F;
            y[j + 16] = q >> 4;
        }
    }
}

/// `block_q5_0`: f16 `d`, u32 `qh`, 16 bytes of nibbles; `x = (q - 16) * d`.
pub(super) fn q5_0_blocks(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks.chunks_exact(22).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        for (j, &q) in b[6..22].iter().enumerate() {
            let (lo, hi) = fifth_bits(qh, j);
            y[j] = (i32::from((q & 0x0F) | lo) - 16) as f32 * d;
            y[j + 16] = (i32::from((q >> 4) | hi) - 16) as f32 * d;
        }
    }
}

/// `block_q5_1`: f16 `d`, f16 `m`, u32 `qh`, 16 bytes of nibbles; `x = q * d + m`.
pub(super) fn q5_1_blocks(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks.chunks_exact(24).zip(out.chunks_exact_mut(QK)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        for (j, &q) in b[8..24].iter().enumerate() {
            let (lo, hi) = fifth_bits(qh, j);
            y[j] = f32::from((q & 0x0F) | lo) * d + m;
            y[j + 16] = f32::from((q >> 4) | hi) * d + m;
        }
    }
}

/// The 5th bit (as 0 or 16) of elements `j` and `j + 16`.
#[inline]
fn fifth_bits(qh: u32, j: usize) -> (u8, u8) {
    let lo = ((qh >> j) & 1) as u8;
    let hi = ((qh >> (j + 16)) & 1) as u8;
    (lo << 4, hi << 4)
}

/// `block_q8_0`: f16 `d`, 32 signed bytes; `x = q * d`.
pub(super) fn q8_0_blocks(blocks: &[u8], out: &mut [f32]) {
    for (b, y) in blocks.chunks_exact(34).zip(out.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for (dst, &q) in y.iter_mut().zip(&b[2..34]) {
            *dst = f32::from(q as i8) * d;
        }
    }
}
