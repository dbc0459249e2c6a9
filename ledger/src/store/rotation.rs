//! The store's key history (`crate::key_history`) and the two-step record of a rotation.
//!
//! Rows (in the `log` tree, beside the identity):
//!
//! | key | value |
//! |---|---|
//! | `m` ‖ `key_history`          | the committed history, its text form (absent: the log never rotated, `m` ‖ `public_key` signs everything) |
//! | `m` ‖ `key_rotation_pending` | `{"vkey","from_size","from_seq"}`: a rotation begun, its chain transaction not known to be final |
//!
//! `m` ‖ `public_key` stays the log's first key for ever (the high-water record's log id is
//! computed from it). A rotation is begun ([`Ledger::begin_key_rotation`]: the pending row,
//! flushed) before the `rotateKey` transaction is sent, and completed
//! ([`Ledger::complete_key_rotation`]: the pending row moved into the history in one
//! batch, flushed) once the chain holds it, final. A store with a pending row refuses to
//! open unless [`LedgerConfig::allow_pending_key_rotation`](super::LedgerConfig) is set,
//! so a crash in between leaves a log that does not serve until the operator finishes or
//! aborts the rotation, never one that signs with a key the chain does not know.
//! The history and pending row take effect at the next open: the open handle keeps the
//! key it was opened with.

use serde_json::{Value, json};

use crate::key_history::{KeyEpoch, KeyHistory};
use crate::keys::PinnedKey;

use super::error::StoreError;
use super::ledger::Ledger;
use super::schema::meta_key;

const HISTORY: &str = "key_history";
const PENDING: &str = "key_rotation_pending";

/// The store's committed history: the stored one, or the first key alone.
pub(super) fn read_history(
    log: &sled::Tree,
    origin: &str,
    genesis: &[u8; 32],
) -> Result<KeyHistory, StoreError> {
    let first = PinnedKey::new(origin, genesis).map_err(|e| StoreError::corrupt(e.to_string()))?;
    let Some(bytes) = log.get(meta_key(HISTORY))? else {
        return Ok(KeyHistory::single(first));
    };
    let history = KeyHistory::parse(&bytes)
        .map_err(|e| StoreError::corrupt(format!("stored key history: {e}")))?;
    if history.genesis() != &first || history.origin() != origin {
        return Err(StoreError::corrupt(
            "stored key history does not start with the log's first key",
        ));
    }
    Ok(history)
}

/// The pending rotation, if one was begun and not completed.
pub(super) fn read_pending(log: &sled::Tree, origin: &str) -> Result<Option<KeyEpoch>, StoreError> {
    let Some(bytes) = log.get(meta_key(PENDING))? else {
        return Ok(None);
    };
    let bad = |why: String| StoreError::corrupt(format!("pending key rotation: {why}"));
    let value = crate::ijson::parse(&bytes).map_err(|e| bad(e.to_string()))?;
    let vkey = value
        .get("vkey")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no vkey".into()))?;
    let key = PinnedKey::from_vkey(vkey).map_err(|e| bad(e.to_string()))?;
    if key.name() != origin {
        return Err(bad("named by another origin".into()));
    }
    let number = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(format!("no {name}")))
    };
    Ok(Some(KeyEpoch {
        key,
        from_size: number("from_size")?,
        from_seq: number("from_seq")?,
    }))
}

impl Ledger {
    /// The log's key history as it was when this handle opened the store.
    pub fn key_history(&self) -> &KeyHistory {
        &self.shared().keys
    }

    /// The rotation begun and not completed, if any (read from the store now).
    pub fn pending_key_rotation(&self) -> Result<Option<KeyEpoch>, StoreError> {
        read_pending(&self.shared().log, &self.shared().origin)
    }

    /// Begins rotating to `new_key` from anchor seq `from_seq`, at the current size: writes
    /// the pending row and flushes. Refused unless the handle signs with the history's
    /// current key, no rotation is pending, the newest checkpoint covers every entry (the
    /// old key's last checkpoint is the boundary), and `new_key` is not in the history.
    /// Nothing must append meanwhile: the rotation command holds the store alone.
    pub fn begin_key_rotation(
        &self,
        new_key: &PinnedKey,
        from_seq: u64,
    ) -> Result<KeyEpoch, StoreError> {
        let refuse = |reason: String| Err(StoreError::KeyRotation { reason });
        let shared = self.shared();
        if let Some(p) = self.pending_key_rotation()? {
            return refuse(format!(
                "a rotation to key id {} is already pending",
                hex::encode(p.key.key_id())
            ));
        }
        if new_key.name() != shared.origin {
            return refuse("the new key is named by another origin".into());
        }
        if shared
            .keys
            .epochs()
            .iter()
            .any(|e| e.key.public_key_bytes() == new_key.public_key_bytes())
        {
            return refuse(format!(
                "key id {} is already in the log's key history; a rotation needs a new key",
                hex::encode(new_key.key_id())
            ));
        }
        let size = self.size();
        let sealed = self.latest_checkpoint()?.map_or(0, |c| c.checkpoint.size);
        if size == 0 || sealed != size {
            return refuse(format!(
                "the newest checkpoint covers {sealed} of {size} entries; the old key's last \
                 checkpoint must cover every entry (and be anchored) before it retires"
            ));
        }
        let last = &shared.keys.epochs()[shared.keys.epochs().len() - 1];
        if from_seq <= last.from_seq {
            return refuse(format!(
                "seq {from_seq} is not after the current key's first seq {}",
                last.from_seq
            ));
        }
        let epoch = KeyEpoch {
            key: new_key.clone(),
            from_size: size,
            from_seq,
        };
        let row = json!({"vkey": new_key.to_vkey(), "from_size": size, "from_seq": from_seq});
        shared
            .log
            .insert(meta_key(PENDING), row.to_string().as_bytes())?;
        shared.db.flush()?;
        Ok(epoch)
    }

    /// Completes the pending rotation: the history gains the pending key, in one batch with
    /// the pending row's removal, flushed. Returns the new history. Call it only once the
    /// chain holds the rotation, final.
    pub fn complete_key_rotation(&self) -> Result<KeyHistory, StoreError> {
        let shared = self.shared();
        let Some(pending) = self.pending_key_rotation()? else {
            return Err(StoreError::KeyRotation {
                reason: "no rotation is pending".into(),
            });
        };
        let mut epochs = shared.keys.epochs().to_vec();
        epochs.push(pending);
        let history = KeyHistory::new(epochs).map_err(|e| StoreError::KeyRotation {
            reason: e.to_string(),
        })?;
        let mut batch = sled::Batch::default();
        batch.insert(meta_key(HISTORY), history.to_json().as_bytes());
        batch.remove(meta_key(PENDING));
        shared.log.apply_batch(batch)?;
        shared.db.flush()?;
        Ok(history)
    }

    /// Drops the pending rotation (only when the chain does not hold it). Returns it.
    pub fn abort_key_rotation(&self) -> Result<Option<KeyEpoch>, StoreError> {
        let pending = self.pending_key_rotation()?;
        if pending.is_some() {
            self.shared().log.remove(meta_key(PENDING))?;
            self.shared().db.flush()?;
        }
        Ok(pending)
    }
}
