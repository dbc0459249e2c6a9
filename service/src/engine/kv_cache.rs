//! Preallocated key/value cache: a fixed number of sequence *slots*, each able to hold
//! `max_ctx` positions, allocated once when the engine starts.
//!
//! Per layer, keys and values are each one tensor `[slots, kv_heads, max_ctx, head_dim]`,
//! so the memory is known up front (see [`KvSlots::bytes`]) and a decode step writes new
//! entries in place (`index_put_`) instead of growing anything. A sequence owns one slot
//! from prefill until it leaves the batch; its length is the next position it writes.
//!
//! A cache made for CUDA graphs ([`KvSlots::with_scratch`]) holds one more position per
//! slot, `max_ctx`, that no sequence ever reaches: a graph's batch has a fixed number of
//! rows, and the rows it runs beyond the real ones write their keys and values there,
//! where no read looks (see `engine::cuda_graph`).

use tch::{Device, Kind, Tensor};

use super::config::ModelConfig;

/// Why a cache operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The slot index is not one of this cache's slots.
    #[error("KV slot {slot} does not exist (the cache has {slots})")]
    NoSuchSlot {
        /// The slot asked for.
        slot: usize,
        /// How many slots exist.
        slots: usize,
    },
    /// The slot is not currently acquired.
    #[error("KV slot {slot} is not in use")]
    SlotNotInUse {
        /// The slot asked for.
        slot: usize,
    },
    /// The sequence would outgrow its slot.
    #[error("KV slot {slot} holds {len} positions; {adding} more exceed its capacity {max_ctx}")]
    ContextFull {
        /// The slot.
        slot: usize,
        /// Positions already held.
        len: usize,
        /// Positions being added.
        adding: usize,
        /// The slot's capacity.
        max_ctx: usize,
    },
    /// The requested cache size is zero or overflows.
    #[error("KV cache of {slots} slots × {max_ctx} positions is empty or too large")]
    BadSize {
        /// Requested slots.
        slots: usize,
        /// Requested positions per slot.
        max_ctx: usize,
    },
    /// libtorch could not allocate the cache.
    #[error("allocating the KV cache: {source}")]
    Torch {
        /// The error libtorch reported.
        #[from]
        source: tch::TchError,
    },
}

/// The preallocated cache, with per-slot lengths and occupancy.
#[derive(Debug)]
pub struct KvSlots {
    pub(crate) keys: Vec<Tensor>,
    pub(crate) values: Vec<Tensor>,
    lens: Vec<usize>,
    in_use: Vec<bool>,
    max_ctx: usize,
    /// Whether position `max_ctx` exists as a scratch position.
    scratch: bool,
    bytes: usize,
}

impl KvSlots {
    /// Bytes a cache of this shape needs (keys and values, all layers).
    pub fn bytes_needed(
        config: &ModelConfig,
        slots: usize,
        max_ctx: usize,
        kind: Kind,
    ) -> Option<usize> {
        [
            config.num_layers,
            2,
            slots,
            config.num_kv_heads,
            max_ctx,
            config.head_dim,
            kind.elt_size_in_bytes(),
        ]
        .into_iter()
        .try_fold(1usize, usize::checked_mul)
    }

    /// Allocates `slots` slots of `max_ctx` positions each, zero-filled.
    pub fn new(
        config: &ModelConfig,
        slots: usize,
        max_ctx: usize,
        device: Device,
        kind: Kind,
    ) -> Result<Self, KvError> {
        Self::allocate(config, slots, max_ctx, false, device, kind)
    }

    /// [`new`](Self::new) with one scratch position per slot after the `max_ctx` usable
    /// ones, where the padding rows of a fixed-size decode batch write.
    pub fn with_scratch(
        config: &ModelConfig,
        slots: usize,
        max_ctx: usize,
        device: Device,
        kind: Kind,
    ) -> Result<Self, KvError> {
        Self::allocate(config, slots, max_ctx, true, device, kind)
    }

    fn allocate(
        config: &ModelConfig,
        slots: usize,
        max_ctx: usize,
        scratch: bool,
        device: Device,
        kind: Kind,
    ) -> Result<Self, KvError> {
        let positions = max_ctx.checked_add(usize::from(scratch));
        let bytes = match positions.and_then(|p| Self::bytes_needed(config, slots, p, kind)) {
            Some(b) if b > 0 && max_ctx > 0 && i64::try_from(b).is_ok() => b,
            _ => return Err(KvError::BadSize { slots, max_ctx }),
        };
        let shape = [
            slots as i64,
            config.num_kv_heads as i64,
            (max_ctx + usize::from(scratch)) as i64,
            config.head_dim as i64,
        ];
        let mut keys = Vec::with_capacity(config.num_layers);
        let mut values = Vec::with_capacity(config.num_layers);
        for _ in 0..config.num_layers {
            keys.push(Tensor::f_zeros(shape, (kind, device))?);
            values.push(Tensor::f_zeros(shape, (kind, device))?);
        }
        Ok(Self {
            keys,
            values,
            lens: vec![0; slots],
            in_use: vec![false; slots],
            max_ctx,
            scratch,
            bytes,
        })
    }

    /// The scratch position (`max_ctx`) when the cache has one ([`Self::with_scratch`]).
    pub fn scratch_position(&self) -> Option<usize> {
        self.scratch.then_some(self.max_ctx)
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.lens.len()
    }

    /// Positions each slot can hold.
    pub fn max_ctx(&self) -> usize {
        self.max_ctx
    }

    /// Memory held by the cache, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Slots currently free.
    pub fn free_slots(&self) -> usize {
        self.in_use.iter().filter(|used| !**used).count()
    }

    /// Takes the lowest free slot (lowest-first keeps a batch's slots contiguous, which
    /// lets decode read the cache without gathering), empty; `None` when all are in use.
    pub fn acquire(&mut self) -> Option<usize> {
        let slot = self.in_use.iter().position(|used| !used)?;
        self.in_use[slot] = true;
        self.lens[slot] = 0;
        Some(slot)
    }

    /// Returns a slot to the pool; its contents are simply overwritten by the next user.
    pub fn release(&mut self, slot: usize) -> Result<(), KvError> {
        self.check(slot)?;
        self.in_use[slot] = false;
        self.lens[slot] = 0;
        Ok(())
    }

    /// Positions held by `slot` (the position its next token takes).
    pub fn len(&self, slot: usize) -> Result<usize, KvError> {
        self.check(slot)?;
        Ok(self.lens[slot])
    }

    /// Forgets everything after the first `len` positions of `slot` (e.g. to re-run a
    /// prompt suffix); `len` may not exceed what the slot holds.
    pub fn truncate(&mut self, slot: usize, len: usize) -> Result<(), KvError> {
        self.check(slot)?;
        self.lens[slot] = self.lens[slot].min(len);
        Ok(())
    }

    /// Makes `to` hold a copy of what `from` holds (both in use): `n` choices of one prompt
    /// share its prefill this way.
    pub fn copy_slot(&mut self, from: usize, to: usize) -> Result<(), KvError> {
        self.check(from)?;
        self.check(to)?;
        let len = self.lens[from];
        if from != to && len > 0 {
            for cache in self.keys.iter().chain(&self.values) {
                let source = cache
                    .f_narrow(0, from as i64, 1)?
                    .f_narrow(2, 0, len as i64)?;
                cache
                    .f_narrow(0, to as i64, 1)?
                    .f_narrow(2, 0, len as i64)?
                    .f_copy_(&source)?;
            }
        }
        self.lens[to] = len;
        Ok(())
    }

    /// Checks that `slot` is in use and can take `adding` more positions.
    pub(crate) fn check_room(&self, slot: usize, adding: usize) -> Result<usize, KvError> {
        self.check(slot)?;
        let len = self.lens[slot];
        if len.checked_add(adding).is_none_or(|end| end > self.max_ctx) {
            return Err(KvError::ContextFull {
                slot,
                len,
                adding,
                max_ctx: self.max_ctx,
            });
        }
        Ok(len)
    }

    /// Records that `slot` now holds `adding` more positions (after a successful forward).
    pub(crate) fn advance(&mut self, slot: usize, adding: usize) {
        if let Some(len) = self.lens.get_mut(slot) {
            *len += adding;
        }
    }

    fn check(&self, slot: usize) -> Result<(), KvError> {
        match self.in_use.get(slot) {
            None => Err(KvError::NoSuchSlot {
                slot,
                slots: self.slots(),
            }),
            Some(false) => Err(KvError::SlotNotInUse { slot }),
            Some(true) => Ok(()),
        }
    }
}
