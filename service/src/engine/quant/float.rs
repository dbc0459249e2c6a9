//! Plain float storage: F32, F16 and BF16 (one value per "block").

pub(super) fn f32_blocks(blocks: &[u8], out: &mut [f32]) {
    for (src, dst) in blocks.chunks_exact(4).zip(out.iter_mut()) {
        *dst = f32::from_le_bytes([src[0], src[1], src[2], src[3]]);
    }
}

pub(super) fn f16_blocks(blocks: &[u8], out: &mut [f32]) {
    for (src, dst) in blocks.chunks_exact(2).zip(out.iter_mut()) {
        *dst = half::f16::from_le_bytes([src[0], src[1]]).to_f32();
    }
}

pub(super) fn bf16_blocks(blocks: &[u8], out: &mut [f32]) {
    for (src, dst) in blocks.chunks_exact(2).zip(out.iter_mut()) {
        *dst = half::bf16::from_le_bytes([src[0], src[1]]).to_f32();
    }
}

/// Reads a little-endian f16 at `at` as f32 (the scales of quantised blocks).
#[inline]
pub(super) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}
