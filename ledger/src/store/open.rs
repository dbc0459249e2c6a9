//! Opening a store: identity check, recovery to the last durable size, integrity checks,
//! and the check against the high-water record (see `highwater`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::checkpoint::SignedCheckpoint;
use crate::key_history::KeyHistory;
use crate::keys::PinnedKey;
use crate::keys::valid_key_name;
use crate::merkle::{CompactRange, Hash, ProveError, root};

use super::checkpoint_tree::CheckpointTree;
use super::compact::{ModelId, parse_model_row};
use super::config::LedgerConfig;
use super::error::StoreError;
use super::hashes::SledHashes;
use super::highwater::{self, Found, HighWater, Record, SignedMark};
use super::node_cache::NodeCache;
use super::pack::{PACK_SLOTS, decode_open_pack, pack_of};
use super::request_index::{RequestIndex, fingerprint};
use super::rotation;
use super::schema::{
    ANCHORS_TREE, CHECKPOINTS_TREE, LOG_TREE, META_TREE, decode_u64, entry_key, entry_range,
    meta_key, model_range, open_pack_key, pack_range,
};
use super::shared::{DurableSize, SealSignal, Shared};

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
///
/// sled may also recover to a prefix that is too short (it reads a bad checksum after its
/// last snapshot as a torn tail), and then the store agrees with itself. So the store is
/// also held to the high-water record kept outside it: it must hold every entry the record
/// says was acknowledged, with the recorded root, and the recorded checkpoint; otherwise
/// opening fails with [`StoreError::HistoryLost`]. A missing or damaged record fails with
/// [`StoreError::HighWaterRecord`], except beside a store that never had one (created now,
/// or written by a version before records: created once from what the store holds).
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
    let db = open_db(&config)?;
    let record_path = match &config.high_water {
        Some(path) => path.clone(),
        None => highwater::default_path(&config.path)?,
    };
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

    let (recorded, repair) = match read_record(&record_path)? {
        Some((record, other_damaged)) => (Some(record), other_damaged),
        None => (None, false),
    };
    // A store without its identity is new, unless the record says it held something.
    let not_new = recorded
        .filter(|r| r.acknowledged > 0)
        .map(|r| lost(0, &r, &record_path));
    let genesis = check_identity(&log, &config.origin, &pinned.public_key_bytes(), not_new)?;
    // The record's log id names the log by its first key, which rotations do not change.
    let log_id = highwater::log_id(&config.origin, &genesis);
    let keys = rotation::read_history(&log, &config.origin, &genesis)?;
    if let Some(pending) = rotation::read_pending(&log, &config.origin)? {
        if !config.allow_pending_key_rotation {
            return Err(StoreError::KeyRotationPending {
                key_id: hex::encode(pending.key.key_id()),
                from_size: pending.from_size,
                from_seq: pending.from_seq,
            });
        }
    }
    check_current_key(&keys, &pinned)?;
    if recorded.is_some_and(|r| r.log_id != log_id) {
        return Err(StoreError::HighWaterRecord {
            path: record_path,
            reason: "it belongs to another log (another origin or public key) than this \
                     store and configuration; put back this store's own record"
                .into(),
        });
    }
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
    let packs_from = layout(&log, size)?;
    check_last_pack(&log, packs_from, size)?;
    if size > 0 && size <= packs_from && !log.contains_key(entry_key(size - 1))? {
        return Err(StoreError::corrupt(format!(
            "last entry {} is missing",
            size - 1
        )));
    }
    let hashes = SledHashes::new(&log, packs_from);
    let range = CompactRange::from_source(&hashes, size).map_err(prove_err)?;

    let has_record_marker = log.contains_key(meta_key(RECORD_MARKER))?;
    match &recorded {
        Some(record) => {
            check_against_record(record, size, &hashes, &checkpoints, &keys, &record_path)?
        }
        None if has_record_marker => return Err(record_missing(&record_path)),
        None => {}
    }

    let mut newest = None;
    if let Some(item) = checkpoints.last()? {
        let (_, note) = item;
        let signed = verify_note(&note, &keys)?;
        let cp = &signed.checkpoint;
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
        newest = Some(SignedMark {
            size: cp.size,
            root: cp.root,
            note_sha256: signed.note_hash(),
        });
    }

    // The store passed: the record now names all of it (entries flushed but never
    // acknowledged before a crash become readable now, so they are recorded first).
    let high_water = match recorded {
        Some(record) => {
            let hw = HighWater::open(&record_path, record)?;
            hw.advance(Some((size, range.root())), newest, repair)?;
            hw
        }
        None => {
            if size > 0 || newest.is_some() {
                tracing::warn!(
                    path = %record_path.display(),
                    size,
                    "the store predates high-water records; creating its record from what it holds"
                );
            }
            HighWater::create(
                &record_path,
                Record {
                    seq: 0,
                    log_id,
                    acknowledged: size,
                    acknowledged_root: range.root(),
                    checkpoint: newest,
                },
            )?
        }
    };
    if !has_record_marker {
        // After the record exists: a crash in between leaves a record and no marker, which
        // the next open completes; the reverse would refuse to start.
        log.insert(meta_key(RECORD_MARKER), &[1u8][..])?;
        db.flush()?;
    }

    let nodes = NodeCache::load(&log, &hashes, packs_from, size, config.node_cache_bytes)?;
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
    let requests = RequestIndex::load(&log, config.request_memtable)?;
    let indexed_to = RequestIndex::indexed_to(&log)?;
    let high_water = Arc::new(high_water);
    let checkpoints = CheckpointTree::new(
        checkpoints,
        db.clone(),
        Arc::clone(&high_water),
        keys.clone(),
        config.origin.clone(),
    );
    let shared = Shared {
        db,
        log,
        checkpoints,
        anchors,
        meta,
        origin: config.origin,
        key: config.key,
        pinned,
        keys,
        durable_size: DurableSize::new(size),
        nodes,
        seal_lock: Mutex::new(()),
        signal: SealSignal::default(),
        max_content_bytes: config.max_content_bytes,
        models: RwLock::new(models),
        packs_from,
        requests,
        high_water,
        fault: Default::default(),
    };
    rebuild_memtable(&shared, indexed_to, size)?;
    shared.publish_durable(size);
    Ok((Arc::new(shared), range))
}

/// How long to wait for the database's lock: sled's I/O threads give it back a moment
/// after a handle in this process closes, so a reopen may briefly find it held.
const LOCK_WAIT: Duration = Duration::from_secs(2);

fn open_db(config: &LedgerConfig) -> Result<sled::Db, StoreError> {
    let started = Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(&config.path)
            .cache_capacity(config.cache_bytes)
            // Durability comes from the writer's explicit flushes only.
            .flush_every_ms(None)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return Ok(other?),
        }
    }
}

/// Gives the request-id index the request ids of entries `[indexed_to, size)`, which
/// are in no run yet (at most one memtable's worth).
fn rebuild_memtable(shared: &Shared, indexed_to: u64, size: u64) -> Result<(), StoreError> {
    if indexed_to > size {
        return Err(StoreError::corrupt(format!(
            "request index covers {indexed_to} entries, the log has {size}"
        )));
    }
    let mut records = Vec::new();
    for index in indexed_to..size {
        if let Some(id) = shared.request_id_of(index)? {
            records.push((fingerprint(&id), index));
        }
    }
    if shared.requests.add(&records) {
        shared.requests.flush(&shared.log, size)?;
    }
    Ok(())
}

/// Where packs (and the request-id index) begin: stored at the first open by a version
/// with packs, and durable with the first append after it. A store written before keeps
/// its rows (and request-id rows) below its size then.
fn layout(log: &sled::Tree, size: u64) -> Result<u64, StoreError> {
    if let Some(from) = log.get(meta_key("packs_from"))? {
        return decode_u64(&from)
            .filter(|&f| f <= size)
            .ok_or_else(|| StoreError::corrupt("packs_from is not a size of this log"));
    }
    let mut batch = sled::Batch::default();
    batch.insert(meta_key("packs_from"), &size.to_be_bytes()[..]);
    batch.insert(meta_key("indexed_to"), &size.to_be_bytes()[..]);
    log.apply_batch(batch)?;
    Ok(size)
}

/// After recovery the packs end exactly at `size`: only full packs below it are folded,
/// and the open pack holds the entries after them, up to `size - 1` and no further.
fn check_last_pack(log: &sled::Tree, packs_from: u64, size: u64) -> Result<(), StoreError> {
    if let Some(item) = log.range(pack_range(size / PACK_SLOTS)).next() {
        let (key, _) = item?;
        return Err(StoreError::corrupt(format!(
            "entry pack key {} lies past the durable size {size}",
            hex::encode(key)
        )));
    }
    let open_expected = size > packs_from && !size.is_multiple_of(PACK_SLOTS);
    let open = match log.get(open_pack_key())? {
        Some(value) => {
            Some(decode_open_pack(&value).ok_or_else(|| StoreError::corrupt("open pack"))?)
        }
        None => None,
    };
    match (open_expected, open) {
        (false, None) => Ok(()),
        (false, Some((no, _))) => Err(StoreError::corrupt(format!(
            "open pack {no} lies past the durable size {size}"
        ))),
        (true, None) => Err(StoreError::corrupt(format!(
            "the open pack holding the last entry {} is missing",
            size - 1
        ))),
        (true, Some((no, pack))) => {
            let (want, last) = pack_of(size - 1);
            if no != want || pack.last_slot() != Some(last) {
                return Err(StoreError::corrupt(format!(
                    "open pack {no} does not end at the last entry {} (durable size {size})",
                    size - 1
                )));
            }
            Ok(())
        }
    }
}

/// The configured key must be the history's current one: a retired key never signs again.
fn check_current_key(keys: &KeyHistory, configured: &PinnedKey) -> Result<(), StoreError> {
    if keys.current() == configured {
        return Ok(());
    }
    let current = &keys.epochs()[keys.epochs().len() - 1];
    if keys.epochs().iter().any(|e| &e.key == configured) {
        return Err(StoreError::RetiredKey {
            key_id: hex::encode(configured.key_id()),
            current_key_id: hex::encode(current.key.key_id()),
            from_size: current.from_size,
        });
    }
    Err(StoreError::IdentityMismatch { what: "public key" })
}

/// Checks the store's origin, or writes the identity into a store that has none; returns
/// the log's first public key (the configured one for a new store). `not_new` is the error
/// to return instead when a store without identity cannot be a new one.
fn check_identity(
    log: &sled::Tree,
    origin: &str,
    public_key: &[u8; 32],
    not_new: Option<StoreError>,
) -> Result<[u8; 32], StoreError> {
    let stored_origin = log.get(meta_key("origin"))?;
    let stored_key = log.get(meta_key("public_key"))?;
    match (stored_origin, stored_key) {
        (None, None) => {
            if let Some(e) = not_new {
                return Err(e);
            }
            let mut batch = sled::Batch::default();
            batch.insert(meta_key("origin"), origin.as_bytes());
            batch.insert(meta_key("public_key"), &public_key[..]);
            log.apply_batch(batch)?;
            Ok(*public_key)
        }
        (Some(o), Some(k)) => {
            if &o[..] != origin.as_bytes() {
                return Err(StoreError::IdentityMismatch { what: "origin" });
            }
            <[u8; 32]>::try_from(&k[..])
                .map_err(|_| StoreError::corrupt("stored public key is not 32 bytes"))
        }
        _ => Err(StoreError::corrupt("store has only half of its identity")),
    }
}

/// Key (under `m`) of the marker that this store keeps a high-water record: written once
/// the record exists, so a store without it predates records.
const RECORD_MARKER: &str = "high_water";

/// The record beside the store, if any, and whether its other copy is damaged (to be
/// rewritten); refuses a damaged record.
fn read_record(path: &Path) -> Result<Option<(Record, bool)>, StoreError> {
    match highwater::read(path)? {
        Found::Missing => Ok(None),
        Found::Valid {
            record,
            other_damaged,
        } => {
            if other_damaged {
                // A write torn by a crash, or damage to the older copy: the newest valid
                // copy is at most one write behind, and the next write replaces the other.
                tracing::warn!(
                    path = %path.display(),
                    "one of the high-water record's two copies fails its checksum; using the other"
                );
            }
            Ok(Some((record, other_damaged)))
        }
    }
}

fn record_missing(path: &Path) -> StoreError {
    StoreError::HighWaterRecord {
        path: path.to_path_buf(),
        reason: "it is missing, but this store has kept one since it was created or \
                 upgraded, so what the log acknowledged cannot be checked; put back the \
                 newest copy of this file (a backup's copy is an older bound, and is still \
                 checked against the store) — never create it anew or remove the store's \
                 marker"
            .into(),
    }
}

/// The refusal for a store holding `size` entries of the `record.acknowledged` acknowledged.
fn lost(size: u64, record: &Record, path: &Path) -> StoreError {
    StoreError::HistoryLost {
        what: format!(
            "the store holds {size} entries, but {} were acknowledged (high-water record at \
             {}); entries {size}..{} are lost — restore the data directory from a backup, do \
             not delete the record (the backup's sled directory must hold them; this record \
             stays in place)",
            record.acknowledged,
            path.display(),
            record.acknowledged
        ),
    }
}

/// Verifies a stored note under the key of the history that signs its size.
fn verify_note(note: &[u8], keys: &KeyHistory) -> Result<SignedCheckpoint, StoreError> {
    let note = std::str::from_utf8(note)
        .map_err(|_| StoreError::corrupt("checkpoint note is not UTF-8"))?;
    Ok(keys.verify_checkpoint(note)?.0)
}

/// Holds the store to its record: every acknowledged entry present with the recorded
/// root, and the recorded checkpoint present, identical, and reproduced by the entries.
fn check_against_record(
    record: &Record,
    size: u64,
    hashes: &SledHashes<'_>,
    checkpoints: &sled::Tree,
    keys: &KeyHistory,
    path: &Path,
) -> Result<(), StoreError> {
    let refuse = |what: String| StoreError::HistoryLost {
        what: format!(
            "{what} (high-water record at {}) — restore the data directory from a backup, \
             do not delete the record (the backup's sled directory must hold it; this \
             record stays in place)",
            path.display()
        ),
    };
    if size < record.acknowledged {
        return Err(lost(size, record, path));
    }
    let root_at = |n: u64| -> Result<Hash, StoreError> { root(hashes, n).map_err(prove_err) };
    if root_at(record.acknowledged)? != record.acknowledged_root {
        return Err(refuse(format!(
            "the store's first {} entries do not hash to the root they had when they were \
             acknowledged: acknowledged entries were changed",
            record.acknowledged
        )));
    }
    let Some(mark) = record.checkpoint else {
        return Ok(());
    };
    let Some(note) = checkpoints.get(mark.size.to_be_bytes())? else {
        return Err(refuse(format!(
            "the checkpoint signed at size {} is missing from the store",
            mark.size
        )));
    };
    let note_sha256: [u8; 32] = sha2::Sha256::digest(&note[..]).into();
    if note_sha256 != mark.note_sha256 {
        return Err(refuse(format!(
            "the store's checkpoint at size {} is not the one signed (its note's SHA-256 \
             differs)",
            mark.size
        )));
    }
    let signed = verify_note(&note, keys)?;
    if signed.checkpoint.size != mark.size || signed.checkpoint.root != mark.root {
        return Err(refuse(format!(
            "the store's checkpoint at size {} does not name the recorded size and root",
            mark.size
        )));
    }
    if root_at(mark.size)? != mark.root {
        return Err(refuse(format!(
            "the store's entries do not reproduce the root of the checkpoint signed at size {}",
            mark.size
        )));
    }
    Ok(())
}
