//! Dequantisation against gguf-py's reference (`scripts/fixtures/quant_goldens.py`).

use sworn_service::engine::gguf::{GgmlType, GgufFile};
use sworn_service::engine::quant::{self, QuantError};

use crate::fixture;

/// gguf-py computes in f32 with the same operation order as ggml's reference routines, so
/// the values must agree bit for bit.
fn assert_matches_reference(name: &str) {
    let f = GgufFile::open(&fixture("quant/quant_goldens.gguf")).unwrap();
    let q = f.tensor(&format!("{name}.q")).unwrap();
    assert_eq!(q.dtype.to_string(), name);
    let got = f.dequantize(&format!("{name}.q")).unwrap();
    let want = f.dequantize(&format!("{name}.want")).unwrap();
    assert_eq!(got.len(), 1024);
    assert_eq!(want.len(), 1024);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{name} element {i}: got {g}, gguf-py {w}"
        );
    }
    // The reference data is not degenerate (4-bit symmetric formats round many small
    // values to zero, hence only half).
    assert!(
        want.iter().filter(|v| **v != 0.0).count() > 512,
        "{name} golden is mostly zeros"
    );
}

#[test]
fn f32_matches_gguf_py() {
    assert_matches_reference("F32");
}
#[test]
fn f16_matches_gguf_py() {
    assert_matches_reference("F16");
}
#[test]
fn bf16_matches_gguf_py() {
    assert_matches_reference("BF16");
}
#[test]
fn q4_0_matches_gguf_py() {
    assert_matches_reference("Q4_0");
}
#[test]
fn q4_1_matches_gguf_py() {
    assert_matches_reference("Q4_1");
}
#[test]
fn q5_0_matches_gguf_py() {
    assert_matches_reference("Q5_0");
}
#[test]
fn q5_1_matches_gguf_py() {
    assert_matches_reference("Q5_1");
}
#[test]
fn q8_0_matches_gguf_py() {
    assert_matches_reference("Q8_0");
}
#[test]
fn q2_k_matches_gguf_py() {
    assert_matches_reference("Q2_K");
}
#[test]
fn q4_k_matches_gguf_py() {
    assert_matches_reference("Q4_K");
}
#[test]
fn q5_k_matches_gguf_py() {
    assert_matches_reference("Q5_K");
}
#[test]
fn q6_k_matches_gguf_py() {
    assert_matches_reference("Q6_K");
}

#[test]
fn q4_1_block_layout_low_nibbles_first() {
    // d = 1.0 (f16 0x3C00), m = -8.0 (f16 0xC800); byte j = (j+1)<<4 | j.
    let mut block = vec![0x00, 0x3C, 0x00, 0xC8];
    block.extend((0..16u8).map(|j| (((j + 1) & 0x0F) << 4) | j));
    let out = quant::dequantize(GgmlType::Q4_1, &block, 32).unwrap();
    let want: Vec<f32> = (0..16)
        .map(|j| j as f32 - 8.0)
        .chain((0..16).map(|j| ((j + 1) % 16) as f32 - 8.0))
        .collect();
    assert_eq!(out, want);
}

#[test]
fn large_tensors_split_across_threads_give_the_same_values() {
    // Above the parallel threshold; each block decodes to a distinct constant, so a block
    // written to the wrong place would show.
    let n_blocks = 20_000usize;
    let mut data = Vec::with_capacity(n_blocks * 34);
    for b in 0..n_blocks {
        data.extend_from_slice(&half::f16::from_f32((b % 1000) as f32 / 64.0).to_le_bytes());
        data.extend(std::iter::repeat_n(1u8, 32));
    }
    let out = quant::dequantize(GgmlType::Q8_0, &data, (n_blocks * 32) as u64).unwrap();
    for (b, chunk) in out.chunks(32).enumerate() {
        let want = half::f16::from_f32((b % 1000) as f32 / 64.0).to_f32();
        assert!(chunk.iter().all(|v| *v == want), "block {b}");
    }
}

#[test]
fn wrong_sizes_and_unsupported_types_are_errors() {
    assert_eq!(
        quant::dequantize(GgmlType::Q4_1, &[0; 19], 32),
        Err(QuantError::LengthMismatch {
            dtype: GgmlType::Q4_1,
            n_elements: 32,
            expected: 20,
            found: 19
        })
    );
    assert!(matches!(
        quant::dequantize(GgmlType::Q4_K, &[0; 144], 255),
        Err(QuantError::PartialBlock { .. })
    ));
    assert_eq!(
        quant::dequantize(GgmlType::IQ2_XXS, &[0; 66], 256),
        Err(QuantError::Unsupported {
            dtype: GgmlType::IQ2_XXS
        })
    );
    assert!(!quant::is_supported(GgmlType::Q3_K));
    assert!(quant::is_supported(GgmlType::Q6_K));
}
