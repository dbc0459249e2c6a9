//! The decode step in fixed shapes: the form a CUDA graph captures.
//!
//! A graph replays the kernels it recorded on the buffers it recorded, so every shape,
//! every index and every buffer must be the same at each replay, and nothing in the step
//! may wait for the host. [`LlamaModel::decode_fixed`] is the decode step written that
//! way:
//!
//! * its whole input is one `[4, b]` int64 tensor on the device, rows [`TOKEN`], [`SLOT`],
//!   [`POSITION`] and [`WRITE`] ([`DecodeRows::pack`] lays it out on the host; the caller
//!   copies it into the same tensor before every run);
//! * `b` is a bucket size, the real batch padded up; padding rows take token 0, slot 0,
//!   position 0 and write their keys and values to the cache's scratch position
//!   ([`KvSlots::with_scratch`]), which no read covers; their logits are dropped;
//! * attention reads every slot's whole `max_ctx` under a mask instead of the longest
//!   sequence's span (a host value), and gathers the batch's slots by index;
//! * keys and values are written into the cache by `index_put_` inside the step.
//!
//! The same code runs without capture on any device: that is how the CPU tests hold it to
//! [`LlamaModel::decode`], bucket by bucket, padding rows included.

use tch::{Kind, Tensor};

use super::attention::AttentionPlan;
use super::{DecodeInput, LlamaModel, ModelError};
use crate::engine::kv_cache::KvSlots;

/// Rows of a fixed-shape step's input tensor.
pub(crate) const INPUT_ROWS: usize = 4;
/// Input row: the token each batch row appends.
pub(crate) const TOKEN: i64 = 0;
/// Input row: the KV slot of each batch row.
pub(crate) const SLOT: i64 = 1;
/// Input row: the position of each batch row (rotary angle, and the last key it sees).
pub(crate) const POSITION: i64 = 2;
/// Input row: where each batch row's key and value are written (its position, or the
/// scratch position for padding).
pub(crate) const WRITE: i64 = 3;

/// A decode batch checked against the cache: row `i` appends `tokens[i]` to slot
/// `slots[i]` at position `positions[i]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DecodeRows {
    pub(crate) slots: Vec<usize>,
    pub(crate) positions: Vec<usize>,
    pub(crate) tokens: Vec<u32>,
}

impl DecodeRows {
    /// Rows in the batch.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The input of a `bucket`-row step, row-major `[4, bucket]`; rows past the batch are
    /// padding that writes at `scratch`.
    pub(crate) fn pack(&self, bucket: usize, scratch: usize) -> Result<Vec<i64>, ModelError> {
        let rows = self.len();
        if rows > bucket {
            return Err(ModelError::BucketTooSmall { rows, bucket });
        }
        let padded = |values: &[usize], pad: usize| -> Vec<i64> {
            let mut out: Vec<i64> = values.iter().map(|&v| v as i64).collect();
            out.resize(bucket, pad as i64);
            out
        };
        let tokens: Vec<usize> = self.tokens.iter().map(|&t| t as usize).collect();
        let mut packed = Vec::with_capacity(INPUT_ROWS * bucket);
        // In the order of TOKEN, SLOT, POSITION, WRITE.
        packed.extend(padded(&tokens, 0));
        packed.extend(padded(&self.slots, 0));
        packed.extend(padded(&self.positions, 0));
        packed.extend(padded(&self.positions, scratch));
        Ok(packed)
    }
}

impl LlamaModel {
    /// Checks a decode batch against the cache (slots in use, distinct, with room; tokens
    /// in the vocabulary) and returns its rows.
    pub(crate) fn decode_rows(
        &self,
        kv: &KvSlots,
        batch: &[DecodeInput],
    ) -> Result<DecodeRows, ModelError> {
        if batch.is_empty() {
            return Err(ModelError::Empty {
                what: "decode batch",
            });
        }
        let vocab = self.config.vocab_size;
        let mut rows = DecodeRows {
            slots: Vec::with_capacity(batch.len()),
            positions: Vec::with_capacity(batch.len()),
            tokens: Vec::with_capacity(batch.len()),
        };
        for entry in batch {
            if rows.slots.contains(&entry.slot) {
                return Err(ModelError::DuplicateSlot { slot: entry.slot });
            }
            rows.positions.push(kv.check_room(entry.slot, 1)?);
            rows.slots.push(entry.slot);
            rows.tokens.push(entry.token);
        }
        if let Some(&token) = rows.tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::TokenOutOfRange { token, vocab });
        }
        Ok(rows)
    }

    /// One fixed-shape decode step over `inputs` (`[4, b]` int64 on the model's device,
    /// laid out by [`DecodeRows::pack`]): writes each row's key and value into `kv` and
    /// returns float32 logits `[b, vocab]`. Issues device work only: no host value is read
    /// and nothing is copied from the host, so a CUDA graph can capture it. Slot lengths
    /// are not advanced (the caller does, for the real rows).
    pub(crate) fn decode_fixed(
        &self,
        kv: &mut KvSlots,
        inputs: &Tensor,
    ) -> Result<Tensor, ModelError> {
        let _guard = tch::no_grad_guard();
        if kv.scratch_position().is_none() {
            return Err(ModelError::NoScratchPosition);
        }
        let size = inputs.size();
        if size.len() != 2
            || size[0] != INPUT_ROWS as i64
            || inputs.kind() != Kind::Int64
            || inputs.device() != self.device
        {
            return Err(ModelError::Torch(tch::TchError::Shape(format!(
                "fixed decode input must be [{INPUT_ROWS}, b] int64 on {:?}, got {size:?} {:?} on {:?}",
                self.device,
                inputs.kind(),
                inputs.device()
            ))));
        }
        let b = size[1];
        let row = |r: i64| inputs.f_select(0, r);
        let ids = row(TOKEN)?.f_view([b, 1])?;
        let plan = AttentionPlan::fixed(
            &self.rope,
            row(SLOT)?,
            &row(POSITION)?,
            row(WRITE)?,
            kv.max_ctx() as i64,
        )?;
        let hidden = self.run_layers(&ids, &plan, kv)?;
        Ok(self.head(&hidden)?.f_squeeze_dim(1)?)
    }
}

#[cfg(test)]
mod tests;
