//! The Llama-family decoder (Llama, SmolLM, Qwen2, Mistral) on libtorch.
//!
//! Architecture as in Hugging Face `modeling_llama.py` (the numerical reference):
//! token embedding → N × [`layer::DecoderLayer`] → RMSNorm → output head (tied to the
//! embedding when the checkpoint says so). Float32 on the CPU, bfloat16 on CUDA.
//!
//! The forward pass is shaped for continuous batching: [`LlamaModel::prefill`] fills one
//! sequence's KV slot, [`LlamaModel::decode`] advances many slots by one token each, every
//! sequence at its own position; `fixed_decode` is that decode step in fixed shapes, the
//! form a CUDA graph captures ([`crate::engine::cuda_graph`]). Everything that input can
//! reach (token ids, slots, lengths, tensor shapes in the file) is checked and returned as
//! a [`ModelError`].

mod attention;
mod error;
mod fixed_decode;
mod layer;
mod linear;
mod rope;

use tch::{Device, Kind, Tensor};

use self::attention::AttentionPlan;
pub use self::error::ModelError;
pub(crate) use self::fixed_decode::{DecodeRows, INPUT_ROWS};
use self::layer::{DecoderLayer, RmsNorm};
use self::linear::Head;
use self::rope::Rope;
use super::config::ModelConfig;
use super::kv_cache::KvSlots;
use super::weights::{WeightError, WeightSet};

/// Which positions' logits a prefill returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position (what generation needs).
    Last,
    /// Every position (for scoring and for tests).
    All,
}

/// One sequence's entry in a decode step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeInput {
    /// The sequence's KV slot.
    pub slot: usize,
    /// The token it appends (the one sampled last step).
    pub token: u32,
}

/// A loaded model, ready to run.
#[derive(Debug)]
pub struct LlamaModel {
    config: ModelConfig,
    embed: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Head,
    rope: Rope,
    /// The dtype of wide products in the CPU's quantised mode, when 4-bit weights loaded.
    int4_wide: Option<Kind>,
    device: Device,
    kind: Kind,
}

impl LlamaModel {
    /// Builds the model from HF-named weights. Every tensor the config implies must be
    /// present with its exact shape. `max_positions` bounds the rotary tables (and so
    /// the usable context); it is capped at the config's trained context.
    pub fn load(
        config: ModelConfig,
        mut weights: WeightSet,
        device: Device,
        kind: Kind,
        max_positions: usize,
    ) -> Result<Self, ModelError> {
        let _guard = tch::no_grad_guard();
        let to_device = |t: Tensor| -> Result<Tensor, tch::TchError> {
            t.f_to_device(device)?.f_to_kind(kind)?.f_contiguous()
        };
        let (vocab, hidden) = (config.vocab_size as i64, config.hidden_size as i64);
        let embed = to_device(weights.take("model.embed_tokens.weight", &[vocab, hidden])?)?;
        // libtorch's int4 kernel is the CPU's; elsewhere 4-bit weights load dense. Wide
        // products of the quantised mode run bfloat16 where the CPU has it natively.
        let int4 = (device == Device::Cpu).then(|| match linear::native_bf16() {
            true => Kind::BFloat16,
            false => kind,
        });
        let mut layers = Vec::with_capacity(config.num_layers);
        for index in 0..config.num_layers {
            layers.push(DecoderLayer::load(
                &mut weights,
                &config,
                index,
                &to_device,
                int4,
            )?);
        }
        let norm = RmsNorm::new(
            to_device(weights.take("model.norm.weight", &[hidden])?)?,
            config.rms_norm_eps,
        );
        // A file may carry `lm_head.weight` even when tied; the config decides.
        let head = weights.take_optional("lm_head.weight", &[vocab, hidden])?;
        let lm_head = match head {
            Some(head) if !config.tie_word_embeddings => to_device(head)?,
            None if !config.tie_word_embeddings => {
                return Err(WeightError::Missing {
                    name: "lm_head.weight".to_owned(),
                }
                .into());
            }
            _ => embed.shallow_clone(),
        };
        let int4_wide = int4.filter(|_| layers.iter().any(DecoderLayer::is_int4));
        // In the quantised mode the head runs in the wide dtype (bfloat16 where the CPU
        // has it natively), whatever the rows: reading it is most of a narrow product.
        let lm_head = Head::new(lm_head, int4_wide)?;
        let max_positions = max_positions.clamp(1, config.max_position_embeddings);
        let rope = Rope::new(&config, max_positions, device, kind)?;
        Ok(Self {
            config,
            embed,
            layers,
            norm,
            lm_head,
            rope,
            int4_wide,
            device,
            kind,
        })
    }

    /// The resolved hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Where the weights live.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The compute dtype.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// With 4-bit projections (the CPU's quantised mode), the dtype their products over
    /// many rows run in; none in the dense modes.
    pub fn int4(&self) -> Option<Kind> {
        self.int4_wide
    }

    /// Allocates a KV cache for this model: `slots` sequences of up to `max_ctx`
    /// positions (capped at the rotary table's length).
    pub fn new_kv_slots(&self, slots: usize, max_ctx: usize) -> Result<KvSlots, ModelError> {
        let max_ctx = max_ctx.min(self.rope.positions());
        Ok(KvSlots::new(
            &self.config,
            slots,
            max_ctx,
            self.device,
            self.kind,
        )?)
    }

    /// [`new_kv_slots`](Self::new_kv_slots) with the scratch position a fixed-shape
    /// decode step (a CUDA graph's) needs for its padding rows ([`KvSlots::with_scratch`]).
    pub fn new_kv_slots_for_graphs(
        &self,
        slots: usize,
        max_ctx: usize,
    ) -> Result<KvSlots, ModelError> {
        let max_ctx = max_ctx.min(self.rope.positions());
        Ok(KvSlots::with_scratch(
            &self.config,
            slots,
            max_ctx,
            self.device,
            self.kind,
        )?)
    }

    /// Runs `tokens` of one sequence into `slot` (after what it already holds) and
    /// returns float32 logits `[1 or tokens.len(), vocab]`.
    pub fn prefill(
        &self,
        kv: &mut KvSlots,
        slot: usize,
        tokens: &[u32],
        logits: Logits,
    ) -> Result<Tensor, ModelError> {
        let _guard = tch::no_grad_guard();
        if tokens.is_empty() {
            return Err(ModelError::Empty { what: "prompt" });
        }
        let start = kv.check_room(slot, tokens.len())?;
        let ids = self
            .token_tensor(tokens)?
            .f_view([1, tokens.len() as i64])?;
        let plan = AttentionPlan::prefill(&self.rope, slot, start, tokens.len(), self.device)?;
        let hidden = self.run_layers(&ids, &plan, kv)?;
        let hidden = match logits {
            Logits::Last => hidden.f_narrow(1, tokens.len() as i64 - 1, 1)?,
            Logits::All => hidden,
        };
        let out = self.head(&hidden)?;
        kv.advance(slot, tokens.len());
        Ok(out.f_squeeze_dim(0)?)
    }

    /// Prefills several new sequences in one pass: `prompts[i]` goes into the empty slot
    /// `slots[i]`, all padded to the longest prompt. Returns float32 logits `[b, vocab]`
    /// of each prompt's last position.
    pub fn prefill_batch(
        &self,
        kv: &mut KvSlots,
        prompts: &[(usize, &[u32])],
    ) -> Result<Tensor, ModelError> {
        let _guard = tch::no_grad_guard();
        let len = prompts.iter().map(|(_, p)| p.len()).max().unwrap_or(0);
        if prompts.iter().any(|(_, p)| p.is_empty()) || len == 0 {
            return Err(ModelError::Empty { what: "prompt" });
        }
        let mut padded = Vec::with_capacity(prompts.len() * len);
        let mut last = Vec::with_capacity(prompts.len());
        for (row, (slot, prompt)) in prompts.iter().enumerate() {
            if kv.check_room(*slot, prompt.len())? != 0 || kv.check_room(*slot, len).is_err() {
                return Err(ModelError::Empty {
                    what: "slot for a batched prefill (it must be empty and hold the batch)",
                });
            }
            padded.extend_from_slice(prompt);
            padded.extend(std::iter::repeat_n(0, len - prompt.len()));
            last.push((row * len + prompt.len() - 1) as i64);
        }
        let b = prompts.len() as i64;
        let ids = self.token_tensor(&padded)?.f_view([b, len as i64])?;
        let slots: Vec<usize> = prompts.iter().map(|(s, _)| *s).collect();
        let plan = AttentionPlan::prefill_batch(&self.rope, &slots, len, self.device)?;
        let hidden = self.run_layers(&ids, &plan, kv)?;
        let width = hidden.size()[2];
        let last = Tensor::f_from_slice(&last)?.f_to_device(self.device)?;
        let hidden = hidden
            .f_reshape([b * len as i64, width])?
            .f_index_select(0, &last)?
            .f_unsqueeze(1)?;
        let out = self.head(&hidden)?.f_squeeze_dim(1)?;
        for (slot, prompt) in prompts {
            kv.advance(*slot, prompt.len());
        }
        Ok(out)
    }

    /// Appends one token to each sequence in `batch` and returns float32 logits
    /// `[batch.len(), vocab]`, row `i` for `batch[i]`.
    pub fn decode(&self, kv: &mut KvSlots, batch: &[DecodeInput]) -> Result<Tensor, ModelError> {
        let _guard = tch::no_grad_guard();
        let rows = self.decode_rows(kv, batch)?;
        let ids = self
            .token_tensor(&rows.tokens)?
            .f_view([rows.len() as i64, 1])?;
        let plan = AttentionPlan::decode(&self.rope, &rows.slots, &rows.positions, self.device)?;
        let hidden = self.run_layers(&ids, &plan, kv)?;
        let out = self.head(&hidden)?.f_squeeze_dim(1)?;
        for &slot in &rows.slots {
            kv.advance(slot, 1);
        }
        Ok(out)
    }

    fn token_tensor(&self, tokens: &[u32]) -> Result<Tensor, ModelError> {
        let vocab = self.config.vocab_size;
        let mut ids = Vec::with_capacity(tokens.len());
        for &token in tokens {
            if token as usize >= vocab {
                return Err(ModelError::TokenOutOfRange { token, vocab });
            }
            ids.push(i64::from(token));
        }
        Ok(Tensor::f_from_slice(&ids)?.f_to_device(self.device)?)
    }

    fn run_layers(
        &self,
        ids: &Tensor,
        plan: &AttentionPlan,
        kv: &mut KvSlots,
    ) -> Result<Tensor, ModelError> {
        if kv.keys.len() != self.layers.len() {
            return Err(ModelError::CacheMismatch {
                cache: kv.keys.len(),
                model: self.layers.len(),
            });
        }
        let mut x = Tensor::f_embedding(&self.embed, ids, -1, false, false)?;
        for ((layer, keys), values) in self
            .layers
            .iter()
            .zip(kv.keys.iter_mut())
            .zip(kv.values.iter_mut())
        {
            x = layer.forward(&x, plan, keys, values)?;
        }
        Ok(x)
    }

    fn head(&self, hidden: &Tensor) -> Result<Tensor, ModelError> {
        let normed = self.norm.forward(hidden)?;
        Ok(self.lm_head.forward(&normed)?.f_to_kind(Kind::Float)?)
    }
}
