//! Grouped-query attention over the preallocated KV slots.
//!
//! An [`AttentionPlan`] is built once per forward pass (positions, rotary tables, masks,
//! slot indices) and shared by every layer. Two shapes of work exist:
//!
//! * **prefill**: one sequence, `n` new positions written into its slot from `start`;
//! * **batched prefill**: `b` new sequences at once, each prompt padded to the longest
//!   (`n`), written into its own slot from position 0. The causal mask alone keeps a real
//!   query from the padding keys after it, and what a padding position writes lies past
//!   its sequence's length, where no later read looks (decode masks keys beyond each
//!   sequence's own position, and overwrites them as it goes);
//! * **decode**: one new position for each of `b` sequences, each in its own slot at its
//!   own position. Keys beyond a sequence's own length are masked, so sequences of
//!   different lengths share one batched computation.
//! * **fixed decode**: the same step in shapes that never change, for a CUDA graph
//!   (`engine::cuda_graph`): built from device tensors only (no host value decides a
//!   shape or an index), keys read over each slot's whole `max_ctx` under the mask.
//!
//! Grouped queries are folded into the key/value heads (`[b, kv_heads, group · n, d]`)
//! instead of repeating keys and values per query head, so no cache bytes are copied
//! for GQA. Scores are softmaxed in float32, as Hugging Face's eager attention does.

use tch::{Device, Kind, Tensor};

use super::rope::{self, Rope};

/// Everything the layers need to know about where this step's tokens go.
#[derive(Debug)]
pub(crate) enum AttentionPlan {
    /// `len` positions of one sequence, written to `slot` at `start..start + len`.
    Prefill {
        slot: i64,
        start: i64,
        len: i64,
        cos: Tensor,
        sin: Tensor,
        /// `[len, start + len]`, true where a key lies in a query's future.
        blocked: Option<Tensor>,
    },
    /// `len` positions from 0 of each of `b` new sequences, into `slots`.
    PrefillBatch {
        /// `[b]` int64 slot of each sequence.
        slots: Tensor,
        len: i64,
        cos: Tensor,
        sin: Tensor,
        /// `[len, len]`, true where a key lies in a query's future.
        blocked: Option<Tensor>,
    },
    /// One position for each of `b` sequences.
    Decode {
        /// `[b]` int64 slot of each sequence.
        slots: Tensor,
        /// `[b]` int64 position each sequence writes.
        positions: Tensor,
        /// When the slots are `first..first + b` in order, the cache is read as a view.
        first_slot: Option<i64>,
        /// Keys read per sequence: the longest sequence's length after this step.
        span: i64,
        /// `[b, 1, 1, d]` rotary tables.
        cos: Tensor,
        sin: Tensor,
        /// `[b, 1, 1, span]`, true beyond each sequence's own length.
        blocked: Tensor,
    },
    /// One position for each of `b` rows of a fixed-shape batch; rows past the real
    /// sequences write to the cache's scratch position and their outputs are ignored.
    Fixed {
        /// `[b]` int64 slot of each row.
        slots: Tensor,
        /// `[b]` int64 cache position each row writes (the scratch one for padding rows).
        writes: Tensor,
        /// Positions read per slot: the cache's usable length.
        max_ctx: i64,
        /// `[b, 1, 1, d]` rotary tables.
        cos: Tensor,
        sin: Tensor,
        /// `[b, 1, 1, max_ctx]`, true beyond each row's own position.
        blocked: Tensor,
    },
}

impl AttentionPlan {
    /// Plan for writing `len` positions of `slot` from `start`.
    pub(crate) fn prefill(
        rope: &Rope,
        slot: usize,
        start: usize,
        len: usize,
        device: Device,
    ) -> Result<Self, tch::TchError> {
        let (start, len) = (start as i64, len as i64);
        let (cos, sin) = rope.span(start, len)?;
        let blocked = if len > 1 {
            let keys = Tensor::f_arange(start + len, (Kind::Int64, device))?.f_unsqueeze(0)?;
            let queries = Tensor::f_arange_start(start, start + len, (Kind::Int64, device))?
                .f_unsqueeze(1)?;
            Some(keys.f_gt_tensor(&queries)?)
        } else {
            None
        };
        Ok(Self::Prefill {
            slot: slot as i64,
            start,
            len,
            cos,
            sin,
            blocked,
        })
    }

    /// Plan for `len` positions from 0 of new sequences in `slots` (prompts padded to
    /// `len`).
    pub(crate) fn prefill_batch(
        rope: &Rope,
        slots: &[usize],
        len: usize,
        device: Device,
    ) -> Result<Self, tch::TchError> {
        let Self::Prefill {
            cos, sin, blocked, ..
        } = Self::prefill(rope, 0, 0, len, device)?
        else {
            unreachable!("prefill plans are Prefill");
        };
        let slots: Vec<i64> = slots.iter().map(|&s| s as i64).collect();
        Ok(Self::PrefillBatch {
            slots: Tensor::f_from_slice(&slots)?.f_to_device(device)?,
            len: len as i64,
            cos,
            sin,
            blocked,
        })
    }

    /// Plan for one new position per sequence; `slots[i]` writes at `positions[i]`.
    pub(crate) fn decode(
        rope: &Rope,
        slots: &[usize],
        positions: &[usize],
        device: Device,
    ) -> Result<Self, tch::TchError> {
        let b = slots.len() as i64;
        let to_i64 = |v: &[usize]| v.iter().map(|&x| x as i64).collect::<Vec<i64>>();
        let slot_ids = to_i64(slots);
        let first_slot = slot_ids.first().copied().filter(|&first| {
            slot_ids
                .iter()
                .enumerate()
                .all(|(i, &s)| s == first + i as i64)
        });
        let span = positions.iter().max().map_or(0, |&p| p as i64 + 1);
        let positions = Tensor::f_from_slice(&to_i64(positions))?.f_to_device(device)?;
        let (cos, sin) = rope.gather(&positions)?;
        let head_dim = cos.size()[1];
        let keys = Tensor::f_arange(span, (Kind::Int64, device))?.f_unsqueeze(0)?;
        let blocked = keys
            .f_gt_tensor(&positions.f_unsqueeze(1)?)?
            .f_view([b, 1, 1, span])?;
        Ok(Self::Decode {
            slots: Tensor::f_from_slice(&slot_ids)?.f_to_device(device)?,
            positions,
            first_slot,
            span,
            cos: cos.f_view([b, 1, 1, head_dim])?,
            sin: sin.f_view([b, 1, 1, head_dim])?,
            blocked,
        })
    }

    /// Plan for a fixed-shape step from `[b]` int64 device tensors: `positions` (rotary
    /// and mask) and `writes` (where keys and values go) differ only for padding rows.
    /// Issues device work only, so a CUDA graph can capture it.
    pub(crate) fn fixed(
        rope: &Rope,
        slots: Tensor,
        positions: &Tensor,
        writes: Tensor,
        max_ctx: i64,
    ) -> Result<Self, tch::TchError> {
        let b = positions.size()[0];
        let (cos, sin) = rope.gather(positions)?;
        let head_dim = cos.size()[1];
        let keys = Tensor::f_arange(max_ctx, (Kind::Int64, positions.device()))?.f_unsqueeze(0)?;
        let blocked = keys
            .f_gt_tensor(&positions.f_unsqueeze(1)?)?
            .f_view([b, 1, 1, max_ctx])?;
        Ok(Self::Fixed {
            slots,
            writes,
            max_ctx,
            cos: cos.f_view([b, 1, 1, head_dim])?,
            sin: sin.f_view([b, 1, 1, head_dim])?,
            blocked,
        })
    }
}

/// Rotates queries and keys (`qk`: `[b, heads + kv_heads, n, d]`, the first `heads` of
/// them queries), writes keys and `v` into this layer's cache, and attends over every
/// cached position of each sequence. Returns `[b, heads, n, d]`.
pub(crate) fn attend(
    plan: &AttentionPlan,
    qk: &Tensor,
    heads: i64,
    v: &Tensor,
    keys: &mut Tensor,
    values: &mut Tensor,
) -> Result<Tensor, tch::TchError> {
    let (cos, sin) = match plan {
        AttentionPlan::Prefill { cos, sin, .. }
        | AttentionPlan::PrefillBatch { cos, sin, .. }
        | AttentionPlan::Decode { cos, sin, .. }
        | AttentionPlan::Fixed { cos, sin, .. } => (cos, sin),
    };
    let qk = rope::apply(qk, cos, sin)?;
    let kv_heads = qk.size()[1] - heads;
    let (q, k) = (qk.f_narrow(1, 0, heads)?, qk.f_narrow(1, heads, kv_heads)?);
    let (cached_k, cached_v, blocked) = match plan {
        AttentionPlan::Prefill {
            slot,
            start,
            len,
            blocked,
            ..
        } => {
            keys.f_narrow(0, *slot, 1)?
                .f_narrow(2, *start, *len)?
                .f_copy_(&k)?;
            values
                .f_narrow(0, *slot, 1)?
                .f_narrow(2, *start, *len)?
                .f_copy_(v)?;
            let end = start + len;
            let read_k = keys.f_narrow(0, *slot, 1)?.f_narrow(2, 0, end)?;
            let read_v = values.f_narrow(0, *slot, 1)?.f_narrow(2, 0, end)?;
            (read_k, read_v, blocked.as_ref().map(PlannedMask::Causal))
        }
        AttentionPlan::PrefillBatch {
            slots,
            len,
            blocked,
            ..
        } => {
            let mut write_k = keys.f_narrow(2, 0, *len)?;
            let _ = write_k.f_index_copy_(0, slots, &k.f_to_kind(keys.kind())?)?;
            let mut write_v = values.f_narrow(2, 0, *len)?;
            let _ = write_v.f_index_copy_(0, slots, &v.f_to_kind(values.kind())?)?;
            // Read back from the cache, as a single prefill does (the same dtype).
            let read_k = keys.f_narrow(2, 0, *len)?.f_index_select(0, slots)?;
            let read_v = values.f_narrow(2, 0, *len)?.f_index_select(0, slots)?;
            (read_k, read_v, blocked.as_ref().map(PlannedMask::Causal))
        }
        AttentionPlan::Decode {
            slots,
            positions,
            first_slot,
            span,
            blocked,
            ..
        } => {
            let index = [
                Some(slots.shallow_clone()),
                None,
                Some(positions.shallow_clone()),
            ];
            let _ = keys.f_index_put_(&index, &k.f_squeeze_dim(2)?, false)?;
            let _ = values.f_index_put_(&index, &v.f_squeeze_dim(2)?, false)?;
            let b = q.size()[0];
            let read = |cache: &Tensor| -> Result<Tensor, tch::TchError> {
                let cache = cache.f_narrow(2, 0, *span)?;
                match first_slot {
                    Some(first) => cache.f_narrow(0, *first, b),
                    None => cache.f_index_select(0, slots),
                }
            };
            (
                read(keys)?,
                read(values)?,
                Some(PlannedMask::PerSequence(blocked)),
            )
        }
        AttentionPlan::Fixed {
            slots,
            writes,
            max_ctx,
            blocked,
            ..
        } => {
            let index = [
                Some(slots.shallow_clone()),
                None,
                Some(writes.shallow_clone()),
            ];
            let _ = keys.f_index_put_(&index, &k.f_squeeze_dim(2)?, false)?;
            let _ = values.f_index_put_(&index, &v.f_squeeze_dim(2)?, false)?;
            // The scratch position (`max_ctx`) is never read.
            let read = |cache: &Tensor| cache.f_narrow(2, 0, *max_ctx)?.f_index_select(0, slots);
            (
                read(keys)?,
                read(values)?,
                Some(PlannedMask::PerSequence(blocked)),
            )
        }
    };
    grouped_attention(&q, &cached_k, &cached_v, blocked.as_ref())
}

enum PlannedMask<'a> {
    /// `[n, keys]`, the same for every head.
    Causal(&'a Tensor),
    /// `[b, 1, 1, keys]`, one row per sequence (n = 1).
    PerSequence(&'a Tensor),
}

/// softmax(q·kᵀ / √d + mask) · v with query heads grouped onto their key/value head.
fn grouped_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    blocked: Option<&PlannedMask<'_>>,
) -> Result<Tensor, tch::TchError> {
    let [b, heads, n, d] = q.size()[..] else {
        return Err(tch::TchError::Shape(format!("query shape {:?}", q.size())));
    };
    let kv_heads = k.size()[1];
    let group = heads / kv_heads;
    let q = q.f_reshape([b, kv_heads, group * n, d])?;
    let scale = 1.0 / (d as f64).sqrt();
    let mut scores = q.f_matmul(&k.f_transpose(-2, -1)?)?.f_mul_scalar(scale)?;
    match blocked {
        None => {}
        Some(PlannedMask::Causal(mask)) => {
            // Row g·n + i of a group is query i.
            let mask = mask.f_repeat([group, 1])?;
            scores = scores.f_masked_fill(&mask, f64::NEG_INFINITY)?;
        }
        Some(PlannedMask::PerSequence(mask)) => {
            scores = scores.f_masked_fill(mask, f64::NEG_INFINITY)?;
        }
    }
    let probs = scores.f_softmax(-1, Kind::Float)?.f_to_kind(v.kind())?;
    probs.f_matmul(v)?.f_reshape([b, heads, n, d])
}
