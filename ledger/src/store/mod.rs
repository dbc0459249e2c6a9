//! The durable log: sled on disk, group-committed appends, stored subtree hashes.
//!
//! [`Ledger`] is a cheap-to-clone handle. Appends go through a dedicated builder thread,
//! a flusher thread and a recorder thread (see `writer`); reads go straight to sled and
//! only ever see the durable, acknowledged prefix of the log ([`Ledger::size`]). A
//! high-water record outside sled (see `highwater`) holds the store to what it
//! acknowledged and signed whenever it is opened. An optional sealer thread signs a
//! checkpoint every N entries or T milliseconds (see [`crate::sealer`]).

mod checkpoint_tree;
mod compact;
mod error;
mod fault;
mod group;
mod hashes;
mod highwater;
mod ledger;
mod node_cache;
mod open;
mod pack;
mod request_index;
pub(crate) mod schema;
mod side;
mod writer;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Condvar, Mutex, RwLock};
use std::time::Duration;

use time::OffsetDateTime;

use crate::entry::SignedEntry;
use crate::keys::{LogKey, PinnedKey, Signature};
use crate::merkle::Hash;
use crate::receipt::{ModelInfo, ParamValue};

pub use error::StoreError;
pub use hashes::SledHashes;
pub use ledger::Ledger;
pub use request_index::DEFAULT_REQUEST_MEMTABLE;
pub use schema::StoredContent;
use schema::{EntryRow, StoredBody};
pub use side::{MAX_META_KEY_LEN, MAX_SIDE_VALUE_LEN};

/// Default cap on each of prompt and response content: 8 MiB (a 128k-token context is
/// well under it).
pub const DEFAULT_MAX_CONTENT_BYTES: usize = 8 * 1024 * 1024;

/// How to open a ledger.
#[derive(Debug)]
pub struct LedgerConfig {
    /// Directory of the sled database (created if missing).
    pub path: PathBuf,
    /// Where the high-water record lives (see the crate README, "Integrity at open");
    /// `None`, the default: beside the sled directory, `<path>.high-water`. Keep it
    /// outside the sled directory and back it up with it.
    pub high_water: Option<PathBuf>,
    /// The log's origin, e.g. `sworn.example/prod-eu-1`; fixed at first open.
    pub origin: String,
    /// The log's signing key; its public key is fixed at first open.
    pub key: LogKey,
    /// Most appends in one group (one sled batch, one flush).
    pub max_batch: usize,
    /// Seal a checkpoint once this many new entries are durable (0 disables the count).
    pub seal_every_entries: u64,
    /// Seal a checkpoint at least this often when anything new is durable.
    pub seal_interval: Duration,
    /// Run the sealer thread (turn off to seal only through [`Ledger::seal_now`]).
    pub sealer: bool,
    /// sled page cache size in bytes: the main bound on resident memory.
    pub cache_bytes: u64,
    /// Memory for the upper levels of the Merkle tree (proofs and roots read the levels
    /// below from sled); 0 turns the node cache off.
    pub node_cache_bytes: usize,
    /// Cap on each of prompt and response content in bytes.
    pub max_content_bytes: usize,
    /// Request ids the request-id index keeps in memory before writing them as a sorted
    /// run (~80 bytes each); opening reads up to this many entries to rebuild them.
    pub request_memtable: usize,
}

impl LedgerConfig {
    /// A configuration with defaults: groups of up to 1024, a checkpoint every 1024
    /// entries or 1 s, sealer on, 64 MiB sled cache, 16 MiB node cache, 8 MiB content cap,
    /// 65,536 request ids in the index's memtable.
    pub fn new(path: impl Into<PathBuf>, origin: &str, key: LogKey) -> Self {
        LedgerConfig {
            path: path.into(),
            high_water: None,
            origin: origin.to_string(),
            key,
            max_batch: 1024,
            seal_every_entries: 1024,
            seal_interval: Duration::from_millis(1000),
            sealer: true,
            cache_bytes: 64 * 1024 * 1024,
            node_cache_bytes: 16 * 1024 * 1024,
            max_content_bytes: DEFAULT_MAX_CONTENT_BYTES,
            request_memtable: DEFAULT_REQUEST_MEMTABLE,
        }
    }
}

/// What the service knows about a finished request, to be sworn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    /// Unique request id (`[A-Za-z0-9._:-]`, ≤ 128).
    pub request_id: String,
    /// Tenant (API key id).
    pub tenant: String,
    /// The model that answered.
    pub model: ModelInfo,
    /// Sampling parameters as applied (decimal strings, integers, booleans).
    pub params: BTreeMap<String, ParamValue>,
    /// Canonical prompt content (RFC 8785 bytes of the messages array or prompt string).
    pub prompt: Vec<u8>,
    /// Prompt length in tokens.
    pub prompt_tokens: u64,
    /// Response content as returned to the client.
    pub response: Vec<u8>,
    /// Generated tokens.
    pub response_tokens: u64,
    /// Why generation stopped.
    pub finish_reason: String,
    /// When the answer completed (written as UTC with microseconds).
    pub time: OffsetDateTime,
}

/// The result of erasing one receipt's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureOutcome {
    /// Index of the receipt whose content and salts were deleted.
    pub erased_index: u64,
    /// The signed erasure event appended to the log.
    pub event: SignedEntry,
    /// The event's leaf hash.
    pub leaf_hash: Hash,
}

/// State shared by the handle, the writer threads and the sealer.
pub(crate) struct Shared {
    pub(crate) db: sled::Db,
    pub(crate) log: sled::Tree,
    /// Checkpoints: storing one also records it in the high-water record.
    pub(crate) checkpoints: checkpoint_tree::CheckpointTree,
    pub(crate) anchors: sled::Tree,
    pub(crate) meta: sled::Tree,
    pub(crate) origin: String,
    pub(crate) key: LogKey,
    pub(crate) pinned: PinnedKey,
    /// Entries `[0, durable_size)` are flushed; readers never look past it.
    pub(crate) durable_size: AtomicU64,
    /// The upper levels of the tree, durable nodes only.
    pub(crate) nodes: node_cache::NodeCache,
    /// Serialises sealing (sealer thread and `seal_now`).
    pub(crate) seal_lock: Mutex<()>,
    pub(crate) signal: SealSignal,
    pub(crate) max_content_bytes: usize,
    /// The model dictionary (`d` rows) that compact bodies refer to; the builder adds a
    /// model once its row is applied, before any entry using it is durable.
    pub(crate) models: RwLock<HashMap<compact::ModelId, ModelInfo>>,
    /// Entries from this index on are stored in packs (see `pack`).
    pub(crate) packs_from: u64,
    /// The request-id index (entries from `packs_from` on).
    pub(crate) requests: request_index::RequestIndex,
    /// The high-water record: written before anything is acknowledged or published.
    pub(crate) high_water: std::sync::Arc<highwater::HighWater>,
    /// The first storage fault on the write path; once set, nothing more is written.
    pub(crate) fault: fault::Fault,
}

impl Shared {
    /// The stored row of entry `index`.
    pub(crate) fn entry_row(&self, index: u64) -> Result<Option<EntryRow>, StoreError> {
        let Some(value) = self.raw_row(index)? else {
            return Ok(None);
        };
        EntryRow::decode(&value)
            .map(Some)
            .ok_or_else(|| StoreError::corrupt(format!("entry {index} row")))
    }

    /// The bytes of entry `index`'s row: its own row below `packs_from`, in its pack
    /// (folded or open) from there on.
    pub(crate) fn raw_row(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
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
    pub(crate) fn hashes(&self) -> SledHashes<'_> {
        SledHashes::cached(&self.log, &self.nodes, self.packs_from)
    }

    /// Index of the entry for `request_id` among everything applied (durable or not);
    /// callers that answer readers must bound it by the durable size.
    pub(crate) fn request_index(&self, request_id: &str) -> Result<Option<u64>, StoreError> {
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
    pub(crate) fn request_id_of(&self, index: u64) -> Result<Option<String>, StoreError> {
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
    pub(crate) fn body_bytes(
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
pub(crate) struct SealSignal {
    pub(crate) state: Mutex<SignalState>,
    pub(crate) cv: Condvar,
}

/// What the sealer waits on.
#[derive(Debug, Default)]
pub(crate) struct SignalState {
    pub(crate) durable: u64,
    pub(crate) stop: bool,
}

impl SealSignal {
    pub(crate) fn durable(&self, size: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.durable = state.durable.max(size);
        self.cv.notify_all();
    }

    pub(crate) fn stop(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.stop = true;
        self.cv.notify_all();
    }
}
