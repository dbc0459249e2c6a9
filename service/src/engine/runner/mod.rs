//! The synchronous engine the server drives from its engine thread.
//!
//! [`Engine::load`] opens a model (GGUF or HF directory), allocates its KV slots and keeps
//! the tokenizer, chat template and model identity beside it. Generation is expressed as
//! continuous batching from the start:
//!
//! * [`Engine::add`] prefills a prompt into a free slot and returns its first token;
//! * [`Engine::step`] decodes one token for every running sequence, in one batch;
//! * [`Engine::remove`] collects a finished sequence, or cancels a running one.
//!
//! A sequence ends at an end-of-sequence token, at its `max_tokens` or when its slot is
//! full; a constrained one ([`Engine::add_constrained`]) also when its answer is complete
//! or its constraint fails. Each step computes the constrained sequences' token masks on
//! a worker thread during the forward pass and applies them to their logits rows only
//! ([`crate::engine::constraint`] describes the design). Everything else about a request
//! (queueing, stop strings, clients that leave) is the scheduler's ([`crate::scheduler`]),
//! which is also how `sworn generate` runs one prompt.

mod admit;
mod error;
mod load;
mod pick;
mod reduce;
mod sequence;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tch::{Device, Kind};

pub use self::admit::{PendingPrefill, Prefilled};
pub use self::error::EngineError;
pub use self::load::{DeviceChoice, DtypeChoice, WeightsChoice, read_tokenizer};
use self::sequence::Sequence;
pub use self::sequence::{FinishReason, GenerationOutput, SeqEvent, SeqId};
use super::chat_template::ChatTemplate;
use super::config::ModelConfig;
use super::constraint::{self, Constraint, TokenMask};
use super::cuda_graph::{self, CudaGraphs, DecodeGraphs, GraphUse};
use super::kv_cache::KvSlots;
use super::model::{DecodeInput, LlamaModel, ModelError};
use super::sampling::SamplingParams;
use super::tokenizer::{Tokenizer, TokenizerError};

/// How to load a model and size its KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Where to run.
    pub device: DeviceChoice,
    /// The compute dtype.
    pub dtype: DtypeChoice,
    /// Dense or 4-bit linear weights.
    pub weights: WeightsChoice,
    /// Sequences that can run at once (KV slots).
    pub slots: usize,
    /// Positions per slot (prompt + generated), capped at the model's trained context.
    pub max_ctx: usize,
    /// Whether the decode step runs as CUDA graphs on CUDA ([`crate::engine::cuda_graph`]).
    pub cuda_graphs: CudaGraphs,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            device: DeviceChoice::Auto,
            dtype: DtypeChoice::Auto,
            weights: WeightsChoice::Auto,
            slots: 1,
            max_ctx: 2048,
            cuda_graphs: CudaGraphs::Auto,
        }
    }
}

/// The identity and placement of the loaded model, as receipts record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Model id: the file or directory name.
    pub id: String,
    /// SHA-256 (hex) of the weights file(s).
    pub sha256: String,
    /// `gguf` or `safetensors`.
    pub format: String,
    /// `llama`, `qwen2` or `mistral`.
    pub architecture: String,
    /// Compute dtype, e.g. `float32`.
    pub dtype: String,
    /// Device, e.g. `cpu` or `cuda:0`.
    pub device: String,
    /// Positions per sequence slot.
    pub max_ctx: usize,
    /// Sequence slots.
    pub slots: usize,
    /// Bytes held by the KV cache.
    pub kv_bytes: usize,
}

/// A loaded model with its KV slots and running sequences.
#[derive(Debug)]
pub struct Engine {
    model: LlamaModel,
    tokenizer: Arc<Tokenizer>,
    chat_template: Option<Arc<ChatTemplate>>,
    info: ModelInfo,
    kv: KvSlots,
    sequences: Vec<Sequence>,
    next_id: u64,
    /// The decode step's CUDA graphs, when captured.
    graphs: Option<DecodeGraphs>,
    graph_use: GraphUse,
}

impl Engine {
    /// Loads the model at `path` (GGUF file or HF checkpoint directory).
    pub fn load(path: &Path, options: &EngineOptions) -> Result<Self, EngineError> {
        let (device, kind) = options.device.resolve(options.dtype)?;
        let keep_int4 = options.weights.keep_int4(device)?;
        let files = load::read_model(path, keep_int4)?;
        if options.weights == WeightsChoice::Int4 && !files.weights.has_int4() {
            return Err(EngineError::Int4Unavailable {
                reason: "the model has no Q4_0/Q4_1 linear weights to keep 4-bit".into(),
            });
        }
        let max_ctx = options.max_ctx.max(1);
        let model = LlamaModel::load(files.config, files.weights, device, kind, max_ctx)?;
        let (kv, graphs, graph_use) =
            cuda_graph::kv_and_graphs(&model, options.cuda_graphs, options.slots, max_ctx)?;
        tracing::info!(decode = %graph_use, "decode step");
        let id = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let info = ModelInfo {
            id,
            sha256: files.sha256,
            format: files.format.to_owned(),
            architecture: model.config().architecture.as_str().to_owned(),
            // 4-bit projections are recorded: `float32+int4` (activations rounded to
            // bfloat16 for the int4 kernel), `float32+int4+bf16` when products over many
            // rows also run in bfloat16.
            dtype: match model.int4() {
                Some(Kind::BFloat16) if kind != Kind::BFloat16 => {
                    format!("{}+int4+bf16", kind_name(kind))
                }
                Some(_) => format!("{}+int4", kind_name(kind)),
                None => kind_name(kind).to_owned(),
            },
            device: device_name(device),
            max_ctx: kv.max_ctx(),
            slots: kv.slots(),
            kv_bytes: kv.bytes(),
        };
        Ok(Self {
            model,
            tokenizer: Arc::new(files.tokenizer),
            chat_template: files.chat_template.map(Arc::new),
            info,
            kv,
            sequences: Vec::new(),
            next_id: 0,
            graphs,
            graph_use,
        })
    }

    /// [`load`](Self::load) on a thread of its own that ends once the model is loaded, for
    /// an engine that then runs on yet another thread (`sworn serve`, `sworn generate`).
    ///
    /// libtorch's CPU work runs in an OpenMP team owned by the thread that starts it, and
    /// the team lives as long as that thread. A second live team in the process makes
    /// GNU OpenMP count more threads than cores and throttle its spin-waits, so every
    /// parallel region of the running engine then waits on a futex: on 2 cores that
    /// halved batch-1 decode (27 against 62 tok/s, int4). Loading on a thread that exits
    /// leaves the engine thread's team the only one.
    pub fn load_on_own_thread(path: &Path, options: &EngineOptions) -> Result<Self, EngineError> {
        let (path, options) = (path.to_owned(), *options);
        std::thread::Builder::new()
            .name("sworn-load".into())
            .spawn(move || Engine::load(&path, &options))
            .map_err(|source| EngineError::Io {
                path: PathBuf::from("(model loading thread)"),
                source,
            })?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Identity and placement of the model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    /// The model itself (for scoring and tests).
    pub fn model(&self) -> &LlamaModel {
        &self.model
    }

    /// Whether decode steps replay CUDA graphs, or why not.
    pub fn cuda_graphs(&self) -> &GraphUse {
        &self.graph_use
    }

    /// The tokenizer that came with the model.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template, when the model has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_deref()
    }

    /// Shared handles to the tokenizer and chat template, for encoding prompts on other
    /// threads while the engine thread generates.
    pub fn text_handles(&self) -> (Arc<Tokenizer>, Option<Arc<ChatTemplate>>) {
        (Arc::clone(&self.tokenizer), self.chat_template.clone())
    }

    /// Sequences currently holding a KV slot (running).
    pub fn running(&self) -> usize {
        self.sequences.iter().filter(|s| s.finish.is_none()).count()
    }

    /// KV slots free for [`add`](Self::add).
    pub fn free_slots(&self) -> usize {
        self.kv.free_slots()
    }

    /// Whether [`add`](Self::add) would take `prompt`: not empty, and leaving room in a
    /// slot for at least one generated token.
    pub fn check_prompt(&self, prompt: &[u32]) -> Result<(), EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let max = self.kv.max_ctx();
        if prompt.len() >= max {
            return Err(EngineError::ContextLengthExceeded {
                tokens: prompt.len(),
                max,
            });
        }
        Ok(())
    }

    /// Decodes one token for every running sequence. Events come in the order the
    /// sequences were added. Empty when nothing runs.
    pub fn step(&mut self) -> Result<Vec<SeqEvent>, EngineError> {
        self.step_where(|_| true)
    }

    /// Decodes one token for the running sequences among `ids` only (a scheduler that
    /// keeps some sequences out of a step); unknown or finished ids are skipped.
    pub fn step_some(&mut self, ids: &[SeqId]) -> Result<Vec<SeqEvent>, EngineError> {
        self.step_where(|id| ids.contains(&id))
    }

    fn step_where(
        &mut self,
        include: impl Fn(SeqId) -> bool,
    ) -> Result<Vec<SeqEvent>, EngineError> {
        // Batch row r decodes `self.sequences[owners[r]]`.
        let (owners, batch): (Vec<usize>, Vec<DecodeInput>) = (self.sequences.iter())
            .enumerate()
            .filter(|(_, s)| s.finish.is_none() && include(s.id))
            .filter_map(|(i, s)| {
                let input = DecodeInput {
                    slot: s.slot?,
                    token: *s.tokens.last()?,
                };
                Some((i, input))
            })
            .unzip();
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut row_of = vec![None; self.sequences.len()];
        for (row, &owner) in owners.iter().enumerate() {
            row_of[owner] = Some(row);
        }
        let constrained: Vec<(usize, &mut Constraint)> = (self.sequences.iter_mut())
            .zip(&row_of)
            .filter_map(|(s, row)| Some(((*row)?, s.constraint.as_mut()?)))
            .collect();
        let (logits, masks) = constraint::masks_during(constrained, || {
            cuda_graph::decode_step(self.graphs.as_mut(), &self.model, &mut self.kv, &batch)
        });
        let mut logits = logits?;
        let masks = self.keep_masks(masks, |row| owners[row]);
        let masks: Vec<(usize, &TokenMask)> = masks.iter().map(|(row, m)| (*row, m)).collect();
        pick::mask_rows(&mut logits, &masks)?;
        let rows: Vec<Option<(&SamplingParams, u64)>> = owners
            .iter()
            .map(|&i| Some((&self.sequences[i].params, self.sequences[i].step())))
            .collect();
        // Sampled rows are drawn where the logits are ([`reduce`]): the tokens whole rows
        // on the host would give, with a fraction of the traffic and, on the CPU too, of
        // the time (BENCHMARKS.md, Engine).
        let picked = pick::pick_tokens(&logits, &rows, true)?;
        let max = self.kv.max_ctx();
        let mut events = Vec::with_capacity(batch.len());
        for ((input, index), picked) in batch.iter().zip(owners).zip(picked) {
            let Some(picked) = picked else {
                continue;
            };
            let seq = &mut self.sequences[index];
            let slot_full = self.kv.len(input.slot).map_or(true, |len| len >= max);
            let event = seq.accept(picked, &self.tokenizer, slot_full);
            let id = seq.id;
            events.push(self.settle(id, event)?);
        }
        Ok(events)
    }

    /// The masks that were computed; a row whose mask failed has its constraint marked
    /// failed (`owner(row)` is its sequence's index), so the token it gets is refused at
    /// commit and the sequence ends `Error`.
    fn keep_masks(
        &mut self,
        masks: constraint::RowMasks,
        owner: impl Fn(usize) -> usize,
    ) -> Vec<(usize, TokenMask)> {
        let mut kept = Vec::with_capacity(masks.len());
        for (row, mask) in masks {
            match mask {
                Ok(mask) => kept.push((row, mask)),
                Err(error) => {
                    if let Some(c) = self.sequences[owner(row)].constraint.as_mut() {
                        c.fail(error);
                    }
                }
            }
        }
        kept
    }

    /// Takes sequence `id` out of the engine: its output if finished, or cancelled now
    /// if still running. Frees its slot either way.
    pub fn remove(&mut self, id: SeqId) -> Result<GenerationOutput, EngineError> {
        let index = self
            .sequences
            .iter()
            .position(|s| s.id == id)
            .ok_or(EngineError::UnknownSequence { id })?;
        let mut seq = self.sequences.remove(index);
        seq.cancel();
        if let Some(slot) = seq.slot.take() {
            self.kv.release(slot).map_err(ModelError::from)?;
        }
        Ok(seq.output())
    }

    /// Frees the slot of a sequence whose event finished it; maps a detokeniser error.
    fn settle(
        &mut self,
        id: SeqId,
        event: Result<SeqEvent, TokenizerError>,
    ) -> Result<SeqEvent, EngineError> {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                let _ = self.remove(id);
                return Err(e.into());
            }
        };
        if event.finish.is_some()
            && let Some(seq) = self.sequences.iter_mut().find(|s| s.id == id)
            && let Some(slot) = seq.slot.take()
        {
            self.kv.release(slot).map_err(ModelError::from)?;
        }
        Ok(event)
    }
}

/// Draws the next token of each row of `logits` (`[rows, vocab]`, float32, any device) as
/// a decode step does, `rows[i]` being row i's sampling parameters and step: on the host
/// from whole rows, or with `reduce` where the logits are ([`reduce`]). The tokens are the
/// same; public so that benchmarks can time both.
pub fn draw_tokens(
    logits: &tch::Tensor,
    rows: &[(&SamplingParams, u64)],
    reduce: bool,
) -> Result<Vec<u32>, EngineError> {
    let rows: Vec<Option<(&SamplingParams, u64)>> = rows.iter().copied().map(Some).collect();
    pick::pick_tokens(logits, &rows, reduce)?
        .into_iter()
        .map(|p| {
            p.map(|p| p.token).ok_or(EngineError::Sampling(
                super::sampling::SamplingError::BadLogits { reason: "no draw" },
            ))
        })
        .collect()
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "float32",
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        _ => "other",
    }
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
