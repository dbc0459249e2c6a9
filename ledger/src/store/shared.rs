//! [`Shared`]: the state the [`Ledger`](super::Ledger) handle, the writer's three threads
//! and the sealer share, and the reads every one of them makes through it.
//!
//! Each field has one owner, the module that writes it; the others only read it. The
//! struct lists the fields by owner, and each field's comment names its writer and its
//! readers. Rust cannot limit a field to one sibling module, so the comments are the rule
//! and the types help where they can: the durable size only grows and only through
//! [`DurableSize::advance_to`]; storing a checkpoint goes through `CheckpointTree`, which
//! records it in the high-water record; the fault latch keeps its first fault.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::key_history::KeyHistory;
use crate::keys::{LogKey, PinnedKey, Signature};
use crate::receipt::ModelInfo;

use super::checkpoint_tree::CheckpointTree;
use super::compact::{self, ModelId};
use super::error::StoreError;
use super::fault::Fault;
use super::hashes::SledHashes;
use super::highwater::HighWater;
use super::node_cache::NodeCache;
use super::pack;
use super::request_index::{self, RequestIndex};
use super::schema::{self, EntryRow, StoredBody};

/// State shared by the handle, the writer threads and the sealer. Built once by `open`
/// (every field is set there); after that, each field is written only by the owner its
/// comment names.
pub(super) struct Shared {
    // Set by `open` and never written again: read by everyone.
    /// The log's origin, fixed at the store's first open. Read by `ledger` (bodies it
    /// builds, `Ledger::origin`), `writer` (erasure events), `sealer` (checkpoints) and
    /// [`Shared::body_bytes`] (rebuilding compact bodies).
    pub(super) origin: String,
    /// The log's signing key. Read by `writer` (entries) and `sealer` (checkpoints).
    pub(super) key: LogKey,
    /// The log's public key under its origin. Read by `ledger` (`Ledger::public_key`) and
    /// `side` (verifying checkpoints as it reads them).
    pub(super) pinned: PinnedKey,
    /// The log's key history as of open (its current key is `pinned`). Read by `ledger`
    /// (`Ledger::key_history`), `rotation` and `side` (verifying stored checkpoints, which
    /// older keys may have signed).
    pub(super) keys: KeyHistory,
    /// Cap on each of prompt and response content. Read by `ledger` before an append is
    /// queued.
    pub(super) max_content_bytes: usize,
    /// Entries from this index on are stored in packs (see `pack`); stores written before
    /// packs keep rows of their own below it. Read by `group`, `writer`, `hashes` and the
    /// row readers here.
    pub(super) packs_from: u64,
    /// The sled database, for `flush`: `writer` (flusher thread), `sealer` and `side` make
    /// their writes durable with it; `CheckpointTree` holds its own handle.
    pub(super) db: sled::Db,

    // sled trees, by the module that writes their rows.
    /// The `log` tree: entry rows, packs, subtree hashes, content, the model dictionary,
    /// the request-id index and the store's meta keys (`schema` has the layout). Rows are
    /// written by `writer` (its builder applies each group as one batch that `group`
    /// assembles, and writes the request-id index's runs) and by `open` (layout keys, the
    /// record marker, the rebuilt memtable's run). Read by `ledger`, `group`, `writer` and
    /// the row readers here, never past the durable size for a caller.
    pub(super) log: sled::Tree,
    /// The `checkpoints` tree (size → signed note). Written by `sealer` only, through
    /// [`CheckpointTree::insert`], which also records the checkpoint in the high-water
    /// record. Read by `side` (checkpoint queries) and `sealer`.
    pub(super) checkpoints: CheckpointTree,
    /// The `anchors` tree: the anchorer's records. Written and read by `side` only.
    pub(super) anchors: sled::Tree,
    /// The `meta` tree: small values other components keep beside the log (the
    /// anchorer's cursor). Written and read by `side` only.
    pub(super) meta: sled::Tree,

    // Owned by `writer`: what changes as appends become durable.
    /// Entries `[0, size)` are flushed and recorded; readers never look past it. Advanced
    /// by `writer`'s recorder thread only, after the high-water record covers the size.
    /// Read by `ledger` (`Ledger::size`, every read's bound), `sealer` and `writer`
    /// (erasure targets).
    pub(super) durable_size: DurableSize,
    /// The upper levels of the tree, durable nodes only. Loaded by `open`, extended by
    /// `writer`'s recorder thread after each flush; read through [`Shared::hashes`].
    pub(super) nodes: NodeCache,
    /// The high-water record, read, checked and brought up to date by `open`. After that,
    /// `writer`'s recorder thread acknowledges sizes in it, `CheckpointTree` (its own
    /// handle) records checkpoints, and `ledger` reads its path.
    pub(super) high_water: Arc<HighWater>,
    /// The model dictionary (`d` rows) that compact bodies refer to. Loaded by `open`;
    /// `writer`'s builder adds a model once its row is applied, before any entry using it
    /// is durable. Read by the builder and [`Shared::body_bytes`].
    pub(super) models: RwLock<HashMap<ModelId, ModelInfo>>,
    /// The request-id index (entries from `packs_from` on). `open` rebuilds its memtable;
    /// `writer`'s builder adds each group's ids and writes its runs. Read by
    /// [`Shared::request_index`].
    pub(super) requests: RequestIndex,
    /// The first storage fault on the write path; once set, nothing more is written.
    /// Raised by `writer`'s threads and by `sealer`; read by `writer` and `sealer`
    /// (refusing work once halted) and `ledger` (`Ledger::fault`, `Ledger::watch_fault`).
    pub(super) fault: Fault,

    // Owned by `sealer`.
    /// Serialises sealing: taken by `sealer::seal`, from the sealer thread and from
    /// `Ledger::seal_now` (in `side`), so checkpoint sizes only grow.
    pub(super) seal_lock: Mutex<()>,
    /// What the sealer waits on. `writer`'s recorder (and `open`, once) report durable
    /// sizes through [`Shared::publish_durable`]; `ledger` stops the sealer with it.
    pub(super) signal: SealSignal,
}

/// The durable size: grows only, read with `Acquire` after the writes it covers.
#[derive(Debug)]
pub(super) struct DurableSize(AtomicU64);

impl DurableSize {
    /// The size the store opened with.
    pub(super) fn new(size: u64) -> Self {
        DurableSize(AtomicU64::new(size))
    }

    /// Entries `[0, size)` are durable and acknowledged.
    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Raises the size to `size` (never lowers it). `writer`'s recorder only.
    fn advance_to(&self, size: u64) {
        self.0.fetch_max(size, Ordering::AcqRel);
    }
}

impl Shared {
    /// Publishes `size` as durable: readers may now see entries below it, and the sealer
    /// wakes. Called by `writer`'s recorder once the high-water record covers `size` (and
    /// by `open` for the size it opened with).
    pub(super) fn publish_durable(&self, size: u64) {
        self.durable_size.advance_to(size);
        self.signal.durable(size);
    }

    /// The stored row of entry `index`.
    pub(super) fn entry_row(&self, index: u64) -> Result<Option<EntryRow>, StoreError> {
        let Some(value) = self.raw_row(index)? else {
            return Ok(None);
        };
        EntryRow::decode(&value)
            .map(Some)
            .ok_or_else(|| StoreError::corrupt(format!("entry {index} row")))
    }

    /// The bytes of entry `index`'s row: its own row below `packs_from`, in its pack
    /// (folded or open) from there on.
    pub(super) fn raw_row(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if index < self.packs_from {
            return Ok(self.log.get(schema::entry_key(index))?.map(|v| v.to_vec()));
        }
        let (pack_no, slot) = pack::pack_of(index);
        let Some(pack) = pack::find_pack(&self.log, pack_no)? else {
            return Ok(None);
        };
        let row = pack::slot_in(pack.bytes(), slot)
            .ok_or_else(|| StoreError::corrupt(format!("entry pack {pack_no}")))?;
        Ok(row.map(<[u8]>::to_vec))
    }

    /// Hashes of the stored tree, through the node cache.
    pub(super) fn hashes(&self) -> SledHashes<'_> {
        SledHashes::cached(&self.log, &self.nodes, self.packs_from)
    }

    /// Index of the entry for `request_id` among everything applied (durable or not);
    /// callers that answer readers must bound it by the durable size.
    pub(super) fn request_index(&self, request_id: &str) -> Result<Option<u64>, StoreError> {
        if self.packs_from > 0 {
            if let Some(value) = self.log.get(schema::request_key(request_id))? {
                return schema::decode_u64(&value)
                    .map(Some)
                    .ok_or_else(|| StoreError::corrupt("request id index"));
            }
        }
        let candidates = self
            .requests
            .candidates(&self.log, &request_index::fingerprint(request_id))?;
        for index in candidates {
            // A fingerprint is 64 bits: the entry itself must name the request id.
            if self.request_id_of(index)?.as_deref() == Some(request_id) {
                return Ok(Some(index));
            }
        }
        Ok(None)
    }

    /// The request id in the body of entry `index` (`None` for an erasure event).
    pub(super) fn request_id_of(&self, index: u64) -> Result<Option<String>, StoreError> {
        let row = self.entry_row(index)?.ok_or_else(|| {
            StoreError::corrupt(format!("request id names entry {index}, which is missing"))
        })?;
        let (_, body) = self.body_bytes(index, row)?;
        match crate::entry::EntryBody::parse_canonical(&body)
            .map_err(|e| StoreError::corrupt(format!("entry {index}: {e}")))?
        {
            crate::entry::EntryBody::Receipt(receipt) => Ok(Some(receipt.request_id)),
            _ => Ok(None),
        }
    }

    /// The canonical body bytes of entry `index` from its row.
    pub(super) fn body_bytes(
        &self,
        index: u64,
        row: EntryRow,
    ) -> Result<(Signature, Vec<u8>), StoreError> {
        let corrupt = |what: &str| StoreError::corrupt(format!("entry {index}: {what}"));
        match row {
            EntryRow::Earlier { signature, body } => Ok((signature, body)),
            EntryRow::Current {
                signature,
                body: StoredBody::Json(body),
                ..
            } => Ok((signature, body)),
            EntryRow::Current {
                signature,
                leaf,
                body: StoredBody::Compact(bytes),
                ..
            } => {
                let id = compact::model_id_of(&bytes).ok_or_else(|| corrupt("compact body"))?;
                let models = self.models.read().unwrap_or_else(|p| p.into_inner());
                let model = models.get(&id).ok_or_else(|| corrupt("unknown model id"))?;
                let body = compact::decode(&bytes, &self.origin, index, model)
                    .ok_or_else(|| corrupt("compact body"))?;
                let bytes = body
                    .to_canonical_bytes()
                    .map_err(|e| corrupt(&e.to_string()))?;
                // The writer checked the rebuild; this guards against a damaged row.
                if crate::merkle::hash_leaf(&bytes) != leaf {
                    return Err(corrupt("compact body does not rebuild its leaf"));
                }
                Ok((signature, bytes))
            }
        }
    }
}

/// Wakes the sealer when the durable size grows, or to stop it.
#[derive(Debug, Default)]
pub(super) struct SealSignal {
    /// The durable size and the stop flag.
    pub(super) state: Mutex<SignalState>,
    /// Notified whenever `state` changes.
    pub(super) cv: Condvar,
}

/// What the sealer waits on.
#[derive(Debug, Default)]
pub(super) struct SignalState {
    /// The largest durable size reported.
    pub(super) durable: u64,
    /// Set once the ledger shuts down.
    pub(super) stop: bool,
}

impl SealSignal {
    /// Records that `size` entries are durable and wakes the sealer.
    pub(super) fn durable(&self, size: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.durable = state.durable.max(size);
        self.cv.notify_all();
    }

    /// Tells the sealer to stop.
    pub(super) fn stop(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.stop = true;
        self.cv.notify_all();
    }
}
