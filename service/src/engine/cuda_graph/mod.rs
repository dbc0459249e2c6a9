//! The decode step as CUDA graphs.
//!
//! On a GPU a decode step of a small model is bound by kernel launches, not by the GPU's
//! work: ~26 libtorch calls a layer, each a launch of ~10 µs from the host, so 8–13 ms a
//! step at batch 1 on an H200 whatever the batch (BENCHMARKS.md, "On a GPU"). A CUDA
//! graph records a step's launches once and replays them as one, which takes the host
//! out of the step.
//!
//! Three parts:
//!
//! * the model's fixed-shape step (`engine::model`'s `decode_fixed`): the decode step
//!   written so that it can be recorded (fixed shapes, inputs in one device tensor,
//!   nothing read back by the host, KV writes inside the step);
//! * [`DecodeGraphs`]: one graph per batch bucket, captured at load, replayed per step;
//! * the shim ([`shim`]): libtorch's `at::cuda::CUDAGraph` is C++ that tch does not
//!   expose, so a small library of our own (`service/csrc/cuda_graph.cpp`) wraps it. It
//!   is built apart from the binary and dlopened only where libtorch's CUDA backend
//!   loaded, so the binary still runs where CUDA is absent.
//!
//! The price of fixed shapes: attention in a graph reads each decoded slot's whole
//! `max_ctx` (masked past its length) where the eager step reads up to the batch's longest
//! sequence, and it gathers those slots by index. At the GPU check's 512 positions this is
//! small; with long contexts and wide batches it is memory traffic the eager step does not
//! pay (graphs per context-length bucket would bound it; not built).
//!
//! [`CudaGraphs`] is the setting (`--cuda-graphs auto|on|off`): by default the engine
//! uses graphs on CUDA when the shim loads and the capture succeeds, and otherwise decodes
//! eagerly ([`LlamaModel::decode`], unchanged) and logs why. The CPU always decodes
//! eagerly; `on` there is refused.

mod decode;
pub mod shim;

use std::fmt;

use tch::{Device, Tensor};

pub use self::decode::{DecodeGraphs, bucket_sizes};
use self::shim::{SHIM_FILE, ShimBuild, load_shim, shim_build};
use super::kv_cache::KvSlots;
use super::model::{DecodeInput, LlamaModel, ModelError};
use crate::device::{CudaLoad, load_cuda};

/// Whether the decode step runs as CUDA graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CudaGraphs {
    /// On CUDA when the shim loads and the capture succeeds; eager otherwise (logged).
    #[default]
    Auto,
    /// On CUDA, or refuse to load.
    On,
    /// Never: the eager decode step.
    Off,
}

impl std::str::FromStr for CudaGraphs {
    type Err = String;

    /// `auto`, `on` or `off`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(CudaGraphs::Auto),
            "on" => Ok(CudaGraphs::On),
            "off" => Ok(CudaGraphs::Off),
            other => Err(format!("must be auto, on or off, got `{other}`")),
        }
    }
}

/// Why CUDA graphs could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    /// Graphs were asked for on a device that is not CUDA.
    #[error("CUDA graphs need a CUDA device; the model runs on {device}")]
    NotCuda {
        /// The model's device, e.g. `cpu`.
        device: String,
    },
    /// The build did not produce the shim (it warned why).
    #[error("the CUDA-graph shim ({SHIM_FILE}) was not built: {reason}")]
    ShimNotBuilt {
        /// The build script's reason.
        reason: String,
    },
    /// The shim, or libtorch's CUDA backend it needs, could not be loaded.
    #[error("the CUDA-graph shim ({SHIM_FILE}) could not be loaded: {reason}")]
    ShimUnavailable {
        /// What failed, per candidate path.
        reason: String,
    },
    /// A call into libtorch's CUDA-graph code failed.
    #[error("CUDA graph {op}: {message}")]
    Cuda {
        /// The call, e.g. `capture end`.
        op: &'static str,
        /// libtorch's message.
        message: String,
    },
    /// The decode step failed while being warmed up or captured.
    #[error("CUDA graph capture: the decode step failed: {reason}")]
    Forward {
        /// The model's error.
        reason: String,
    },
    /// A step was given another KV cache than the one the graphs write.
    #[error("the decode graphs were captured on another KV cache")]
    OtherCache,
}

/// What the engine decided about graphs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphUse {
    /// Decode steps replay captured graphs.
    Captured {
        /// The batch sizes with a graph.
        buckets: Vec<usize>,
        /// Where the shim was loaded from.
        shim: String,
    },
    /// Decode steps run eagerly.
    Eager {
        /// Why: the setting, the device, or what failed.
        reason: String,
    },
}

impl fmt::Display for GraphUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphUse::Captured { buckets, shim } => {
                write!(f, "CUDA graphs for batch sizes {buckets:?} ({shim})")
            }
            GraphUse::Eager { reason } => write!(f, "eager ({reason})"),
        }
    }
}

/// Allocates the engine's KV cache and, as `choice` and the device allow, captures the
/// decode graphs on it. `auto` falls back to eager decoding (logged); `on` turns every
/// reason not to use graphs into an error.
pub(crate) fn kv_and_graphs(
    model: &LlamaModel,
    choice: CudaGraphs,
    slots: usize,
    max_ctx: usize,
) -> Result<(KvSlots, Option<DecodeGraphs>, GraphUse), ModelError> {
    let eager = |reason: &str| GraphUse::Eager {
        reason: reason.to_owned(),
    };
    if choice == CudaGraphs::Off {
        let kv = model.new_kv_slots(slots, max_ctx)?;
        return Ok((kv, None, eager("--cuda-graphs off")));
    }
    if model.device() == Device::Cpu {
        if choice == CudaGraphs::On {
            return Err(GraphError::NotCuda {
                device: "the CPU".to_owned(),
            }
            .into());
        }
        let kv = model.new_kv_slots(slots, max_ctx)?;
        return Ok((kv, None, eager("the model runs on the CPU")));
    }
    let refused = |error: GraphError, kv: KvSlots| {
        if choice == CudaGraphs::On {
            return Err(ModelError::Graph(error));
        }
        tracing::warn!(%error, "decoding without CUDA graphs");
        Ok((kv, None, eager(&error.to_string())))
    };
    let shim = match load_shim() {
        Ok(shim) => shim,
        Err(error) => return refused(error, model.new_kv_slots(slots, max_ctx)?),
    };
    let mut kv = model.new_kv_slots_for_graphs(slots, max_ctx)?;
    match DecodeGraphs::capture(model, &mut kv) {
        Ok(graphs) => {
            let used = GraphUse::Captured {
                buckets: graphs.buckets(),
                shim: shim.path().to_owned(),
            };
            Ok((kv, Some(graphs), used))
        }
        Err(error) => refused(error, kv),
    }
}

/// One decode step: through the graphs when there are some, else eagerly.
pub(crate) fn decode_step(
    graphs: Option<&mut DecodeGraphs>,
    model: &LlamaModel,
    kv: &mut KvSlots,
    batch: &[DecodeInput],
) -> Result<Tensor, ModelError> {
    match graphs {
        Some(graphs) => graphs.decode(model, kv, batch),
        None => model.decode(kv, batch),
    }
}

/// The shim's state in a line, for `sworn --version`: built or not, loaded or not.
pub fn shim_status() -> String {
    match shim_build() {
        ShimBuild::Skipped { reason } => format!("CUDA-graph shim not built ({reason})"),
        ShimBuild::Built { .. } if matches!(load_cuda(), CudaLoad::Unavailable(_)) => {
            "CUDA-graph shim built, not loaded (no CUDA backend)".to_owned()
        }
        ShimBuild::Built { .. } => match load_shim() {
            Ok(shim) => format!("CUDA-graph shim loaded ({})", shim.path()),
            Err(error) => format!("CUDA-graph shim not loaded: {error}"),
        },
    }
}

#[cfg(test)]
mod tests;
