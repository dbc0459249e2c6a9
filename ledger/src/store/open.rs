//! Opening a store: identity check, recovery to the last durable size, integrity checks.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use crate::checkpoint::SignedCheckpoint;
use crate::keys::valid_key_name;
use crate::merkle::{CompactRange, ProveError, root};

use super::compact::{ModelId, parse_model_row};
use super::error::StoreError;
use super::hashes::SledHashes;
use super::node_cache::NodeCache;
use super::schema::{
    ANCHORS_TREE, CHECKPOINTS_TREE, LOG_TREE, META_TREE, decode_u64, entry_key, entry_range,
    meta_key, model_range,
};
use super::{LedgerConfig, SealSignal, Shared};

pub(crate) fn prove_err(e: ProveError<StoreError>) -> StoreError {
    match e {
        ProveError::Source(e) => e,
        ProveError::InvalidRequest { reason } => StoreError::InvalidProofRequest {
            reason: reason.to_string(),
        },
    }
}

/// Opens (or creates) the database and recovers the right edge of the tree.
///
/// Recovery needs no repair: every append group is one atomic batch that also writes the
/// size, so sled's recovered state is a prefix of whole groups and `size` is exact. What
/// is checked instead: the store's origin and key are the configured ones, no entry exists
/// at or past `size`, the last entry exists, and the newest checkpoint's root equals the
/// root recomputed from stored hashes.
pub(crate) fn open_shared(config: LedgerConfig) -> Result<(Arc<Shared>, CompactRange), StoreError> {
    if !valid_key_name(&config.origin) {
        return Err(StoreError::Config {
            reason: format!("origin {:?} is not a valid log name", config.origin),
        });
    }
    if config.max_batch == 0 {
        return Err(StoreError::Config {
            reason: "max_batch must be at least 1".into(),
        });
    }
    let db = sled::Config::new()
        .path(&config.path)
        .cache_capacity(config.cache_bytes)
        // Durability comes from the writer's explicit flushes only.
        .flush_every_ms(None)
        .open()?;
    let log = db.open_tree(LOG_TREE)?;
    let checkpoints = db.open_tree(CHECKPOINTS_TREE)?;
    let anchors = db.open_tree(ANCHORS_TREE)?;
    let meta = db.open_tree(META_TREE)?;
    let pinned = config
        .key
        .pinned(&config.origin)
        .map_err(|e| StoreError::Config {
            reason: e.to_string(),
        })?;

    check_identity(&log, &config.origin, &pinned.public_key_bytes())?;
    db.flush()?;

    let size = match log.get(meta_key("size"))? {
        Some(v) => decode_u64(&v).ok_or_else(|| StoreError::corrupt("size is not 8 bytes"))?,
        None => 0,
    };
    if let Some(item) = log.range(entry_range(size)).next() {
        let (key, _) = item?;
        return Err(StoreError::corrupt(format!(
            "entry key {} exists at or past the durable size {size}",
            hex::encode(key)
        )));
    }
    if size > 0 && !log.contains_key(entry_key(size - 1))? {
        return Err(StoreError::corrupt(format!(
            "last entry {} is missing",
            size - 1
        )));
    }
    let hashes = SledHashes::new(&log);
    let range = CompactRange::from_source(&hashes, size).map_err(prove_err)?;

    if let Some(item) = checkpoints.last()? {
        let (_, note) = item;
        let note = std::str::from_utf8(&note)
            .map_err(|_| StoreError::corrupt("checkpoint note is not UTF-8"))?;
        let signed = SignedCheckpoint::verify(note, &pinned, &config.origin)?;
        let cp = signed.checkpoint;
        if cp.size > size {
            return Err(StoreError::corrupt(format!(
                "checkpoint at size {} is past the log size {size}",
                cp.size
            )));
        }
        if root(&hashes, cp.size).map_err(prove_err)? != cp.root {
            return Err(StoreError::corrupt(format!(
                "stored hashes do not reproduce the root of checkpoint {}",
                cp.size
            )));
        }
    }

    let nodes = NodeCache::load(&log, size, config.node_cache_bytes)?;
    let mut models = HashMap::new();
    for item in log.range(model_range()) {
        let (key, row) = item?;
        let id: ModelId = key[1..]
            .try_into()
            .map_err(|_| StoreError::corrupt("model key"))?;
        let model =
            parse_model_row(&row).ok_or_else(|| StoreError::corrupt("model dictionary row"))?;
        models.insert(id, model);
    }
    let shared = Shared {
        db,
        log,
        checkpoints,
        anchors,
        meta,
        origin: config.origin,
        key: config.key,
        pinned,
        durable_size: AtomicU64::new(size),
        nodes,
        seal_lock: Mutex::new(()),
        signal: SealSignal::default(),
        max_content_bytes: config.max_content_bytes,
        models: RwLock::new(models),
    };
    shared.signal.durable(size);
    Ok((Arc::new(shared), range))
}

fn check_identity(log: &sled::Tree, origin: &str, public_key: &[u8; 32]) -> Result<(), StoreError> {
    let stored_origin = log.get(meta_key("origin"))?;
    let stored_key = log.get(meta_key("public_key"))?;
    match (stored_origin, stored_key) {
        (None, None) => {
            let mut batch = sled::Batch::default();
            batch.insert(meta_key("origin"), origin.as_bytes());
            batch.insert(meta_key("public_key"), &public_key[..]);
            log.apply_batch(batch)?;
            Ok(())
        }
        (Some(o), Some(k)) => {
            if &o[..] != origin.as_bytes() {
                return Err(StoreError::IdentityMismatch { what: "origin" });
            }
            if k[..] != public_key[..] {
                return Err(StoreError::IdentityMismatch { what: "public key" });
            }
            Ok(())
        }
        _ => Err(StoreError::corrupt("store has only half of its identity")),
    }
}
