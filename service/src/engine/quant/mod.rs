//! Dequantisation of ggml tensor data to f32.
//!
//! Block layouts follow ggml's `ggml-common.h` (`block_q4_1`, `block_q4_K`, …) and its
//! reference `dequantize_row_*` routines. Every routine takes whole blocks and writes
//! exactly `block_elems` values per block, in element order. Results are checked against
//! gguf-py's `gguf.quants.dequantize` (fixtures under `service/tests/fixtures/quant/`).
//!
//! Large tensors are split across threads by whole blocks; the values do not depend on
//! the split.

mod float;
mod kquants;
mod legacy;

use crate::engine::ggml_type::GgmlType;

/// Why tensor data could not be turned into f32.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    /// No dequantiser is implemented for this type.
    #[error("dequantisation of {dtype} is not supported")]
    Unsupported {
        /// The tensor's ggml type.
        dtype: GgmlType,
    },
    /// The element count is not a whole number of blocks.
    #[error("{n_elements} elements are not a whole number of {dtype} blocks of {block_elems}")]
    PartialBlock {
        /// The tensor's ggml type.
        dtype: GgmlType,
        /// The element count asked for.
        n_elements: u64,
        /// Elements per block of `dtype`.
        block_elems: u64,
    },
    /// The data is not the size the element count implies.
    #[error("{n_elements} {dtype} elements need {expected} bytes, got {found}")]
    LengthMismatch {
        /// The tensor's ggml type.
        dtype: GgmlType,
        /// The element count asked for.
        n_elements: u64,
        /// Bytes that many elements of `dtype` take.
        expected: u64,
        /// Bytes actually given.
        found: u64,
    },
    /// The output would not fit in this machine's address space.
    #[error("{n_elements} elements do not fit in memory on this platform")]
    TooLarge {
        /// The element count asked for.
        n_elements: u64,
    },
}

/// A Q4_0 or Q4_1 tensor kept 4-bit: element `i` is `(codes[i] - 8) · d[b]` (Q4_0) or
/// `codes[i] · d[b] + m[b]` (Q4_1), with `b = i / 32` its block.
#[derive(Debug, Clone, PartialEq)]
pub struct Q4Blocks {
    /// One code per element, 0..=15, in element order.
    pub codes: Vec<u8>,
    /// Each block's scale.
    pub d: Vec<f32>,
    /// Each block's minimum (all 0 for Q4_0).
    pub m: Vec<f32>,
    /// Q4_0: codes are centred on 8 and there is no minimum.
    pub centred: bool,
}

/// `n_elements` Q4_0 or Q4_1 values of `data`, split into codes and block parameters;
/// `None` for any other type.
pub fn q4_blocks(
    dtype: GgmlType,
    data: &[u8],
    n_elements: u64,
) -> Result<Option<Q4Blocks>, QuantError> {
    let centred = match dtype {
        GgmlType::Q4_0 => true,
        GgmlType::Q4_1 => false,
        _ => return Ok(None),
    };
    let len = usize::try_from(n_elements).map_err(|_| QuantError::TooLarge { n_elements })?;
    check_length(dtype, data, n_elements)?;
    let blocks = len / 32;
    let mut split = Q4Blocks {
        codes: vec![0; len],
        d: vec![0.0; blocks],
        m: vec![0.0; blocks],
        centred,
    };
    legacy::q4_split(data, !centred, &mut split.codes, &mut split.d, &mut split.m);
    Ok(Some(split))
}

/// Whether `data` holds exactly `n_elements` whole blocks of `dtype`.
fn check_length(dtype: GgmlType, data: &[u8], n_elements: u64) -> Result<(), QuantError> {
    let expected = dtype
        .bytes_for(n_elements)
        .ok_or(QuantError::PartialBlock {
            dtype,
            n_elements,
            block_elems: dtype.block_elems(),
        })?;
    if expected != data.len() as u64 {
        return Err(QuantError::LengthMismatch {
            dtype,
            n_elements,
            expected,
            found: data.len() as u64,
        });
    }
    Ok(())
}

/// A routine that dequantises whole blocks: `out.len()` is `blocks * block_elems`.
type BlockFn = fn(blocks: &[u8], out: &mut [f32]);

/// Below this many output values one thread is faster than spawning more.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 18;

/// Whether `dtype` has a dequantiser here.
pub fn is_supported(dtype: GgmlType) -> bool {
    block_fn(dtype).is_some()
}

fn block_fn(dtype: GgmlType) -> Option<BlockFn> {
    Some(match dtype {
        GgmlType::F32 => float::f32_blocks,
        GgmlType::F16 => float::f16_blocks,
        GgmlType::BF16 => float::bf16_blocks,
        GgmlType::Q4_0 => legacy::q4_0_blocks,
        GgmlType::Q4_1 => legacy::q4_1_blocks,
        GgmlType::Q5_0 => legacy::q5_0_blocks,
        GgmlType::Q5_1 => legacy::q5_1_blocks,
        GgmlType::Q8_0 => legacy::q8_0_blocks,
        GgmlType::Q2_K => kquants::q2_k_blocks,
        GgmlType::Q4_K => kquants::q4_k_blocks,
        GgmlType::Q5_K => kquants::q5_k_blocks,
        GgmlType::Q6_K => kquants::q6_k_blocks,
        _ => return None,
    })
}

/// Dequantises `n_elements` values of type `dtype` stored in `data`.
pub fn dequantize(dtype: GgmlType, data: &[u8], n_elements: u64) -> Result<Vec<f32>, QuantError> {
    let len = usize::try_from(n_elements).map_err(|_| QuantError::TooLarge { n_elements })?;
    let mut out = Vec::new();
    out.try_reserve_exact(len)
        .map_err(|_| QuantError::TooLarge { n_elements })?;
    out.resize(len, 0.0);
    dequantize_into(dtype, data, &mut out)?;
    Ok(out)
}

/// Dequantises `data` into `out`; `out.len()` is the element count.
pub fn dequantize_into(dtype: GgmlType, data: &[u8], out: &mut [f32]) -> Result<(), QuantError> {
    let n_elements = out.len() as u64;
    let f = block_fn(dtype).ok_or(QuantError::Unsupported { dtype })?;
    check_length(dtype, data, n_elements)?;
    // Both fit in usize: `out` and `data` are slices of these lengths.
    let (block_elems, block_bytes) = (dtype.block_elems() as usize, dtype.block_bytes() as usize);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if out.len() < PARALLEL_MIN_ELEMENTS || threads == 1 {
        f(data, out);
        return Ok(());
    }
    let n_blocks = out.len() / block_elems;
    let blocks_per_thread = n_blocks.div_ceil(threads);
    std::thread::scope(|s| {
        for (src, dst) in data
            .chunks(blocks_per_thread * block_bytes)
            .zip(out.chunks_mut(blocks_per_thread * block_elems))
        {
            s.spawn(move || f(src, dst));
        }
    });
    Ok(())
}
