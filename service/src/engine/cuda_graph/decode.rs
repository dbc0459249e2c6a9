//! The decode step as CUDA graphs: one graph per batch bucket, and its replay.
//!
//! Buckets are the batch sizes 1, 2, 4, … below the slot count, and the slot count; a
//! step of `n` sequences runs the smallest bucket that holds them, its rows past `n`
//! padding ([`crate::engine::model`]'s fixed-shape step says how padding stays harmless).
//! Each bucket owns its input tensor on the device; a step packs its rows on the host,
//! copies them into that tensor (the one host-to-device copy of the step), replays the
//! graph and copies the real rows out of the graph's logits, which the next replay
//! overwrites. Graphs are captured largest first into one shared memory pool.

use std::time::Instant;

use tch::{Device, Kind, Tensor};

use super::GraphError;
use super::shim::{CudaGraph, MemPool, Shim, load_shim};
use crate::engine::kv_cache::KvSlots;
use crate::engine::model::{DecodeInput, DecodeRows, INPUT_ROWS, LlamaModel, ModelError};

/// Uncaptured runs before each capture, on the capture's stream: the first run of a step
/// loads kernels and allocates cuBLAS workspaces, which must not happen inside a capture;
/// the second runs as the captured one will. (PyTorch's recipe uses a few.)
const WARMUP_RUNS: usize = 2;

/// Decode-step buckets for a cache of `slots` slots: the powers of two below it, then it.
pub fn bucket_sizes(slots: usize) -> Vec<usize> {
    let mut sizes: Vec<usize> = std::iter::successors(Some(1usize), |&b| b.checked_mul(2))
        .take_while(|&b| b < slots)
        .collect();
    if slots > 0 {
        sizes.push(slots);
    }
    sizes
}

/// The fixed-shape decode step for every bucket: captured as CUDA graphs, or run
/// uncaptured (the same code, on any device: how the CPU tests check it).
#[derive(Debug)]
pub struct DecodeGraphs {
    buckets: Vec<Bucket>,
    /// Address of the first layer's key cache the graphs write, to refuse another cache.
    cache: usize,
}

#[derive(Debug)]
struct Bucket {
    rows: usize,
    /// `[4, rows]` int64 on the device: the step's whole input, rewritten before each run.
    inputs: Tensor,
    run: Run,
}

#[derive(Debug)]
enum Run {
    /// A captured graph and the `[rows, vocab]` logits each replay writes.
    Graph { graph: CudaGraph, logits: Tensor },
    /// No graph: the fixed-shape step runs eagerly on the same input tensor.
    Uncaptured,
}

impl DecodeGraphs {
    /// The fixed-shape step for every bucket of `kv`, run without capture on any device.
    /// `kv` needs a scratch position ([`LlamaModel::new_kv_slots_for_graphs`]).
    pub fn uncaptured(model: &LlamaModel, kv: &KvSlots) -> Result<Self, ModelError> {
        let scratch = kv.scratch_position().ok_or(ModelError::NoScratchPosition)?;
        let mut buckets = Vec::new();
        for rows in bucket_sizes(kv.slots()) {
            buckets.push(Bucket {
                rows,
                inputs: padding_inputs(rows, scratch, model.device())?,
                run: Run::Uncaptured,
            });
        }
        Ok(Self {
            buckets,
            cache: cache_address(kv),
        })
    }

    /// Captures one graph per bucket of `kv` on the model's CUDA device, the largest
    /// first, all in one memory pool, through the shim ([`super::shim`]; refused where it
    /// cannot load). `kv` needs a scratch position
    /// ([`LlamaModel::new_kv_slots_for_graphs`]). Warm-up and capture runs are all
    /// padding: they write only to the scratch position of slot 0.
    pub fn capture(model: &LlamaModel, kv: &mut KvSlots) -> Result<Self, GraphError> {
        let Device::Cuda(device) = model.device() else {
            return Err(GraphError::NotCuda {
                device: format!("{:?}", model.device()).to_lowercase(),
            });
        };
        Self::capture_with(load_shim()?, device, model, kv)
    }

    fn capture_with(
        shim: &'static Shim,
        device: usize,
        model: &LlamaModel,
        kv: &mut KvSlots,
    ) -> Result<Self, GraphError> {
        let scratch = kv.scratch_position().ok_or_else(|| GraphError::Forward {
            reason: ModelError::NoScratchPosition.to_string(),
        })?;
        let started = Instant::now();
        let mut pool: Option<MemPool> = None;
        let mut buckets = Vec::new();
        for rows in bucket_sizes(kv.slots()).into_iter().rev() {
            let inputs =
                padding_inputs(rows, scratch, model.device()).map_err(|e| forward_error(&e))?;
            let (mut graph, logits) = CudaGraph::capture(shim, device, pool, WARMUP_RUNS, || {
                model
                    .decode_fixed(kv, &inputs)
                    .map_err(|e| forward_error(&e))
            })?;
            if pool.is_none() {
                pool = Some(graph.pool()?);
            }
            buckets.push(Bucket {
                rows,
                inputs,
                run: Run::Graph { graph, logits },
            });
        }
        buckets.reverse();
        tracing::info!(
            buckets = ?buckets.iter().map(|b| b.rows).collect::<Vec<_>>(),
            seconds = started.elapsed().as_secs_f64(),
            "decode step captured as CUDA graphs"
        );
        Ok(Self {
            buckets,
            cache: cache_address(kv),
        })
    }

    /// The batch sizes that have a fixed-shape step, ascending.
    pub fn buckets(&self) -> Vec<usize> {
        self.buckets.iter().map(|b| b.rows).collect()
    }

    /// Whether the steps replay captured graphs (rather than run uncaptured).
    pub fn is_captured(&self) -> bool {
        self.buckets
            .iter()
            .all(|b| matches!(b.run, Run::Graph { .. }))
    }

    /// [`LlamaModel::decode`] through the fixed-shape step: appends one token to each
    /// sequence in `batch` and returns float32 logits `[batch.len(), vocab]`. `model` and
    /// `kv` must be the ones the graphs were made with (another cache is refused).
    pub fn decode(
        &mut self,
        model: &LlamaModel,
        kv: &mut KvSlots,
        batch: &[DecodeInput],
    ) -> Result<Tensor, ModelError> {
        let _guard = tch::no_grad_guard();
        if cache_address(kv) != self.cache {
            return Err(GraphError::OtherCache.into());
        }
        let rows = model.decode_rows(kv, batch)?;
        let scratch = kv.scratch_position().ok_or(ModelError::NoScratchPosition)?;
        let n = rows.len();
        let largest = self.buckets.last().map_or(0, |b| b.rows);
        let bucket =
            (self.buckets.iter_mut())
                .find(|b| b.rows >= n)
                .ok_or(ModelError::BucketTooSmall {
                    rows: n,
                    bucket: largest,
                })?;
        let packed = Tensor::f_from_slice(&rows.pack(bucket.rows, scratch)?)?
            .f_view([INPUT_ROWS as i64, bucket.rows as i64])?;
        bucket.inputs.f_copy_(&packed)?;
        let logits = match &mut bucket.run {
            Run::Graph { graph, logits } => {
                graph.replay()?;
                logits.shallow_clone()
            }
            Run::Uncaptured => model.decode_fixed(kv, &bucket.inputs)?,
        };
        // The real rows, copied out of the buffer the next replay overwrites.
        let real = logits.f_narrow(0, 0, n as i64)?;
        let mut out = real.f_empty_like()?;
        out.f_copy_(&real)?;
        advance(kv, &rows);
        Ok(out)
    }
}

fn advance(kv: &mut KvSlots, rows: &DecodeRows) {
    for &slot in &rows.slots {
        kv.advance(slot, 1);
    }
}

/// A bucket's input tensor, filled with padding rows.
fn padding_inputs(rows: usize, scratch: usize, device: Device) -> Result<Tensor, ModelError> {
    let packed = DecodeRows::default().pack(rows, scratch)?;
    let host = Tensor::f_from_slice(&packed)?.f_view([INPUT_ROWS as i64, rows as i64])?;
    let mut inputs = Tensor::f_zeros([INPUT_ROWS as i64, rows as i64], (Kind::Int64, device))?;
    inputs.f_copy_(&host)?;
    Ok(inputs)
}

fn cache_address(kv: &KvSlots) -> usize {
    kv.keys.first().map_or(0, |k| k.data_ptr() as usize)
}

fn forward_error(e: &ModelError) -> GraphError {
    GraphError::Forward {
        reason: e.to_string(),
    }
}
