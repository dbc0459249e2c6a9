//! How to open a ledger: [`LedgerConfig`] and its defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::keys::LogKey;

use super::request_index::DEFAULT_REQUEST_MEMTABLE;

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
    /// The log's signing key: at first open it becomes the log's first key; later it must
    /// be the newest key of the store's key history (`crate::key_history`).
    pub key: LogKey,
    /// Most appends in one group (one sled batch, one flush).
    pub max_batch: usize,
    /// Seal a checkpoint once this many new entries are durable (0 disables the count).
    pub seal_every_entries: u64,
    /// Seal a checkpoint at least this often when anything new is durable.
    pub seal_interval: Duration,
    /// Run the sealer thread (turn off to seal only through [`Ledger::seal_now`](crate::Ledger::seal_now)).
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
    /// Open a store whose key rotation was begun but not completed (only
    /// `sworn log-key rotate` does, to finish or abort it). Off by default: such a store
    /// refuses to open ([`StoreError::KeyRotationPending`](crate::StoreError::KeyRotationPending)).
    pub allow_pending_key_rotation: bool,
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
            allow_pending_key_rotation: false,
        }
    }
}
