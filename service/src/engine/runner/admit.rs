//! Admitting prompts: one, several prefilled together, several choices of one, or one
//! prefilled a chunk at a time between decode steps. Each ends with the prompt's first
//! token sampled and a running sequence, or with an error and no slot held.

use super::sequence::Sequence;
use super::{Engine, EngineError, SeqEvent, SeqId, pick};
use crate::engine::constraint::{self, Constraint, TokenMask};
use crate::engine::kv_cache::KvSlots;
use crate::engine::model::{Logits, ModelError};
use crate::engine::sampling::SamplingParams;
use crate::engine::tokenizer::TokenizerError;

impl Engine {
    /// Prefills `prompt` into a free slot and samples the first token.
    pub fn add(&mut self, prompt: &[u32], params: SamplingParams) -> Result<SeqEvent, EngineError> {
        self.add_constrained(prompt, params, None)
    }

    /// [`add`](Self::add) for a sequence whose every token, the first included, is picked
    /// among those `constraint` allows (none: free generation).
    pub fn add_constrained(
        &mut self,
        prompt: &[u32],
        params: SamplingParams,
        mut constraint: Option<Constraint>,
    ) -> Result<SeqEvent, EngineError> {
        self.check_prompt(prompt)?;
        let max = self.kv.max_ctx();
        let slot = self.kv.acquire().ok_or(EngineError::NoFreeSlot {
            slots: self.kv.slots(),
        })?;
        let id = SeqId(self.next_id);
        self.next_id += 1;
        let picked = self
            .prefill_and_sample(slot, prompt, &params, constraint.as_mut())
            .inspect_err(|_| drop(self.kv.release(slot)))?;
        let mut seq = Sequence::new(id, slot, params, prompt.len(), constraint, &self.tokenizer);
        let event = seq.accept(picked, &self.tokenizer, prompt.len() >= max);
        self.sequences.push(seq);
        self.settle(id, event)
    }

    /// Prefills `prompt` once for `params.len()` choices (`n`), each in a slot of its own
    /// holding a copy of the prompt's keys and values, and samples each choice's first
    /// token from the same logits with its own parameters. Each choice is then a sequence
    /// like any other; `constraint` (if any) is copied to each. Needs a free slot per
    /// choice.
    pub fn add_choices(
        &mut self,
        prompt: &[u32],
        params: &[SamplingParams],
        mut constraint: Option<Constraint>,
    ) -> Result<Vec<SeqEvent>, EngineError> {
        self.check_prompt(prompt)?;
        if params.is_empty() || self.kv.free_slots() < params.len() {
            return Err(EngineError::NoFreeSlot {
                slots: self.kv.slots(),
            });
        }
        let max = self.kv.max_ctx();
        let mut slots = Vec::with_capacity(params.len());
        let release = |kv: &mut KvSlots, slots: &[usize]| {
            for &slot in slots {
                drop(kv.release(slot));
            }
        };
        let first = self.kv.acquire().ok_or(EngineError::NoFreeSlot {
            slots: self.kv.slots(),
        })?;
        slots.push(first);
        let row = self
            .prefill_row(first, prompt, constraint.as_mut())
            .inspect_err(|_| release(&mut self.kv, &slots))?;
        for _ in 1..params.len() {
            let copied = self
                .kv
                .acquire()
                .map(|slot| (slot, self.kv.copy_slot(first, slot)));
            match copied {
                Some((slot, Ok(()))) => slots.push(slot),
                Some((slot, Err(e))) => {
                    slots.push(slot);
                    release(&mut self.kv, &slots);
                    return Err(ModelError::from(e).into());
                }
                None => {
                    release(&mut self.kv, &slots);
                    return Err(EngineError::NoFreeSlot {
                        slots: self.kv.slots(),
                    });
                }
            }
        }
        let mut picks = Vec::with_capacity(params.len());
        for p in params {
            match pick::pick_host(&row, p, 0) {
                Ok(picked) => picks.push(picked),
                Err(e) => {
                    release(&mut self.kv, &slots);
                    return Err(e.into());
                }
            }
        }
        let mut events = Vec::with_capacity(params.len());
        for ((slot, p), picked) in slots.into_iter().zip(params).zip(picks) {
            let id = SeqId(self.next_id);
            self.next_id += 1;
            let mut seq = Sequence::new(
                id,
                slot,
                p.clone(),
                prompt.len(),
                constraint.clone(),
                &self.tokenizer,
            );
            let event = seq.accept(picked, &self.tokenizer, prompt.len() >= max);
            self.sequences.push(seq);
            events.push((id, event));
        }
        self.settle_all(events)
    }

    /// Prefills several prompts in one forward pass (each in a free slot of its own,
    /// padded to the longest: [`LlamaModel::prefill_batch`]) and samples each one's first
    /// token with its own parameters and constraint; events in the order given. A burst of
    /// arrivals so costs one pass of wide matrix products instead of one per prompt. Needs
    /// a free slot per prompt; on any error no sequence is added.
    pub fn add_batch(
        &mut self,
        jobs: Vec<(&[u32], SamplingParams, Option<Constraint>)>,
    ) -> Result<Vec<SeqEvent>, EngineError> {
        for (prompt, ..) in &jobs {
            self.check_prompt(prompt)?;
        }
        if self.kv.free_slots() < jobs.len() {
            return Err(EngineError::NoFreeSlot {
                slots: self.kv.slots(),
            });
        }
        let max = self.kv.max_ctx();
        let mut slots = Vec::with_capacity(jobs.len());
        for _ in &jobs {
            slots.extend(self.kv.acquire());
        }
        let (prompts, mut rest): (Vec<&[u32]>, Vec<_>) = jobs
            .into_iter()
            .map(|(prompt, params, constraint)| (prompt, (params, constraint)))
            .unzip();
        let rows: Vec<(usize, &[u32])> =
            slots.iter().copied().zip(prompts.iter().copied()).collect();
        let constrained: Vec<(usize, &mut Constraint)> = (rest.iter_mut().enumerate())
            .filter_map(|(row, (_, c))| Some((row, c.as_mut()?)))
            .collect();
        let (logits, masks) = constraint::masks_during(constrained, || {
            self.model.prefill_batch(&mut self.kv, &rows)
        });
        let release = |kv: &mut KvSlots| {
            for &slot in &slots {
                drop(kv.release(slot));
            }
        };
        let mut logits = match logits {
            Ok(logits) => logits,
            Err(e) => {
                release(&mut self.kv);
                return Err(e.into());
            }
        };
        let mut kept = Vec::with_capacity(masks.len());
        for (row, mask) in masks {
            match mask {
                Ok(mask) => kept.push((row, mask)),
                // Sampled freely, then refused at commit: the sequence ends `Error`.
                Err(error) => {
                    if let Some(c) = rest[row].1.as_mut() {
                        c.fail(error);
                    }
                }
            }
        }
        let kept: Vec<(usize, &TokenMask)> = kept.iter().map(|(row, m)| (*row, m)).collect();
        let host = (|| -> Result<Vec<f32>, EngineError> {
            pick::mask_rows(&mut logits, &kept)?;
            let flat = logits.f_flatten(0, -1).map_err(ModelError::from)?;
            Ok(Vec::<f32>::try_from(flat).map_err(ModelError::from)?)
        })();
        let host = match host {
            Ok(host) => host,
            Err(e) => {
                release(&mut self.kv);
                return Err(e);
            }
        };
        let vocab = host.len() / prompts.len().max(1);
        let mut picks = Vec::with_capacity(prompts.len());
        for (row, (params, _)) in host.chunks_exact(vocab.max(1)).zip(&rest) {
            match pick::pick_host(row, params, 0) {
                Ok(picked) => picks.push(picked),
                Err(e) => {
                    release(&mut self.kv);
                    return Err(e.into());
                }
            }
        }
        let mut events = Vec::with_capacity(prompts.len());
        for (((slot, prompt), (params, constraint)), picked) in
            slots.into_iter().zip(prompts).zip(rest).zip(picks)
        {
            let id = SeqId(self.next_id);
            self.next_id += 1;
            let mut seq =
                Sequence::new(id, slot, params, prompt.len(), constraint, &self.tokenizer);
            let event = seq.accept(picked, &self.tokenizer, prompt.len() >= max);
            self.sequences.push(seq);
            events.push((id, event));
        }
        self.settle_all(events)
    }

    /// Reserves a slot for `prompt`, to be prefilled a chunk at a time by
    /// [`continue_prefill`](Self::continue_prefill) between decode steps, so that a long
    /// prompt does not stall the running sequences for its whole prefill.
    pub fn begin_prefill(
        &mut self,
        prompt: &[u32],
        params: SamplingParams,
        constraint: Option<Constraint>,
    ) -> Result<PendingPrefill, EngineError> {
        self.check_prompt(prompt)?;
        let slot = self.kv.acquire().ok_or(EngineError::NoFreeSlot {
            slots: self.kv.slots(),
        })?;
        Ok(PendingPrefill {
            slot,
            prompt: prompt.to_vec(),
            done: 0,
            params,
            constraint,
        })
    }

    /// Prefills up to `budget` (at least 1) more positions of `pending`. Once its last
    /// position is in, samples the first token exactly as [`add_constrained`]
    /// (Self::add_constrained) would and the prompt becomes a running sequence. On an
    /// error the slot is freed.
    pub fn continue_prefill(
        &mut self,
        mut pending: PendingPrefill,
        budget: usize,
    ) -> Result<Prefilled, EngineError> {
        let end = pending.done + budget.max(1);
        let outcome = if end < pending.prompt.len() {
            let chunk = &pending.prompt[pending.done..end];
            (self
                .model
                .prefill(&mut self.kv, pending.slot, chunk, Logits::Last))
            .map(|_| None)
            .map_err(EngineError::from)
        } else {
            let chunk = pending.prompt[pending.done..].to_vec();
            self.prefill_row(pending.slot, &chunk, pending.constraint.as_mut())
                .and_then(|row| Ok(Some(pick::pick_host(&row, &pending.params, 0)?)))
        };
        let picked = match outcome {
            Ok(None) => {
                pending.done = end;
                return Ok(Prefilled::More(pending));
            }
            Ok(Some(picked)) => picked,
            Err(e) => {
                drop(self.kv.release(pending.slot));
                return Err(e);
            }
        };
        let PendingPrefill {
            slot,
            prompt,
            params,
            constraint,
            ..
        } = pending;
        let max = self.kv.max_ctx();
        let id = SeqId(self.next_id);
        self.next_id += 1;
        let mut seq = Sequence::new(id, slot, params, prompt.len(), constraint, &self.tokenizer);
        let event = seq.accept(picked, &self.tokenizer, prompt.len() >= max);
        self.sequences.push(seq);
        self.settle(id, event).map(Prefilled::Started)
    }

    /// Frees the slot of a prefill that will not be finished (its client left).
    // By value: an abandoned prefill cannot be continued.
    #[allow(clippy::needless_pass_by_value)]
    pub fn abandon_prefill(&mut self, pending: PendingPrefill) {
        drop(self.kv.release(pending.slot));
    }

    /// Prefills `prompt` and samples its first token; `constraint`'s mask is computed
    /// during the prefill and applied to the logits first.
    fn prefill_and_sample(
        &mut self,
        slot: usize,
        prompt: &[u32],
        params: &SamplingParams,
        constraint: Option<&mut Constraint>,
    ) -> Result<pick::Picked, EngineError> {
        let row = self.prefill_row(slot, prompt, constraint)?;
        Ok(pick::pick_host(&row, params, 0)?)
    }

    /// Prefills `prompt` into `slot` and returns the last position's logits on the host,
    /// masked by `constraint` (computed during the prefill).
    fn prefill_row(
        &mut self,
        slot: usize,
        prompt: &[u32],
        mut constraint: Option<&mut Constraint>,
    ) -> Result<Vec<f32>, EngineError> {
        let constrained: Vec<(usize, &mut Constraint)> = constraint
            .as_deref_mut()
            .map(|c| (0, c))
            .into_iter()
            .collect();
        let (logits, mut masks) = constraint::masks_during(constrained, || {
            self.model.prefill(&mut self.kv, slot, prompt, Logits::Last)
        });
        let mut logits = logits?.f_view([1, -1]).map_err(ModelError::from)?;
        match (masks.pop(), constraint) {
            (Some((_, Ok(mask))), _) => pick::mask_rows(&mut logits, &[(0, &mask)])?,
            // Sampled freely, then refused at commit: the sequence ends `Error`.
            (Some((_, Err(error))), Some(c)) => c.fail(error),
            _ => {}
        }
        let row = Vec::<f32>::try_from(logits.f_flatten(0, -1).map_err(ModelError::from)?)
            .map_err(ModelError::from)?;
        Ok(row)
    }

    /// Settles the first events of sequences admitted together, all or none: if any is an
    /// error, every one of them is removed (its slot freed) and the first error returned,
    /// so that a caller who gets no events holds no sequence it cannot name.
    fn settle_all(
        &mut self,
        events: Vec<(SeqId, Result<SeqEvent, TokenizerError>)>,
    ) -> Result<Vec<SeqEvent>, EngineError> {
        let ids: Vec<SeqId> = events.iter().map(|(id, _)| *id).collect();
        let settled: Result<Vec<SeqEvent>, EngineError> = events
            .into_iter()
            .map(|(id, event)| self.settle(id, event))
            .collect();
        if settled.is_err() {
            for id in ids {
                // Already gone when its own event failed.
                let _ = self.remove(id);
            }
        }
        settled
    }
}

/// A prompt being prefilled a chunk at a time ([`Engine::begin_prefill`]): it holds a KV
/// slot and is not a sequence yet.
#[derive(Debug)]
pub struct PendingPrefill {
    slot: usize,
    prompt: Vec<u32>,
    /// Positions already in the slot.
    done: usize,
    params: SamplingParams,
    constraint: Option<Constraint>,
}

impl PendingPrefill {
    /// Prompt positions not prefilled yet.
    pub fn remaining(&self) -> usize {
        self.prompt.len() - self.done
    }
}

/// What [`Engine::continue_prefill`] left.
#[derive(Debug)]
pub enum Prefilled {
    /// More of the prompt is to come.
    More(PendingPrefill),
    /// The prompt is in: the sequence runs, with its first token.
    Started(SeqEvent),
}
