//! Checkpoints, anchor records and free-form metadata: the trees written outside append
//! groups. Every write here is flushed before it returns.

use crate::checkpoint::SignedCheckpoint;

use super::error::StoreError;
use super::ledger::Ledger;
use super::schema::decode_u64;
use super::sealer::seal;

/// Longest key accepted by [`Ledger::meta_put`].
pub const MAX_META_KEY_LEN: usize = 256;
/// Largest value accepted by [`Ledger::meta_put`] and [`Ledger::put_anchor_record`].
pub const MAX_SIDE_VALUE_LEN: usize = 1024 * 1024;

impl Ledger {
    fn decode_checkpoint(&self, note: &[u8]) -> Result<SignedCheckpoint, StoreError> {
        let text =
            std::str::from_utf8(note).map_err(|_| StoreError::corrupt("checkpoint not UTF-8"))?;
        Ok(self.shared().keys.verify_checkpoint(text)?.0)
    }

    /// The newest checkpoint, if any was sealed.
    pub fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        match self.shared().checkpoints.last()? {
            None => Ok(None),
            Some((_, note)) => self.decode_checkpoint(&note).map(Some),
        }
    }

    /// The checkpoint sealed at exactly `size` entries, if any.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<SignedCheckpoint>, StoreError> {
        match self.shared().checkpoints.get(size.to_be_bytes())? {
            None => Ok(None),
            Some(note) => self.decode_checkpoint(&note).map(Some),
        }
    }

    /// Every checkpoint in sealing order (= increasing size), read lazily.
    pub fn checkpoints(&self) -> impl Iterator<Item = Result<SignedCheckpoint, StoreError>> + '_ {
        self.shared().checkpoints.iter().map(move |item| {
            let (_, note) = item?;
            self.decode_checkpoint(&note)
        })
    }

    /// Checkpoints with size in `[from, to]`, in increasing size.
    pub fn checkpoints_between(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<SignedCheckpoint, StoreError>> + '_ {
        self.shared()
            .checkpoints
            .range(from.to_be_bytes()..=to.to_be_bytes())
            .map(move |item| {
                let (_, note) = item?;
                self.decode_checkpoint(&note)
            })
    }

    /// Signs and stores a checkpoint of the current durable size now, if it has grown
    /// since the last one. Returns the new checkpoint, or `None` if nothing was new.
    pub fn seal_now(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        seal(self.shared())
    }

    /// Waits until a checkpoint of at least `min_size` entries exists, or `timeout`
    /// passes (then `None`). Lets the anchorer and tests react to the sealer without
    /// polling.
    pub fn wait_for_checkpoint(
        &self,
        min_size: u64,
        timeout: std::time::Duration,
    ) -> Result<Option<SignedCheckpoint>, StoreError> {
        let deadline = std::time::Instant::now() + timeout;
        // Subscribe before looking, so a checkpoint sealed in between is not missed.
        let mut events = self.shared().checkpoints.watch_prefix(Vec::<u8>::new());
        loop {
            if let Some(cp) = self.latest_checkpoint()? {
                if cp.checkpoint.size >= min_size {
                    return Ok(Some(cp));
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || events.next_timeout(left).is_err() {
                return Ok(None);
            }
        }
    }

    /// Stores an anchor record (opaque bytes the anchorer defines) under `seq`, durably.
    /// Overwrites any record already under `seq` (the anchorer updates a record as its
    /// transaction moves from submitted to finalized).
    pub fn put_anchor_record(&self, seq: u64, record: &[u8]) -> Result<(), StoreError> {
        check_value_len(record.len())?;
        self.shared().anchors.insert(seq.to_be_bytes(), record)?;
        self.shared().db.flush()?;
        Ok(())
    }

    /// The anchor record under `seq`.
    pub fn get_anchor_record(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .shared()
            .anchors
            .get(seq.to_be_bytes())?
            .map(|v| v.to_vec()))
    }

    /// Every anchor record in increasing `seq`.
    pub fn anchor_records(&self) -> impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + '_ {
        self.shared().anchors.iter().map(|item| {
            let (key, value) = item?;
            let seq = decode_u64(&key).ok_or_else(|| StoreError::corrupt("anchor key"))?;
            Ok((seq, value.to_vec()))
        })
    }

    /// The highest `seq` with an anchor record.
    pub fn last_anchor_seq(&self) -> Result<Option<u64>, StoreError> {
        match self.shared().anchors.last()? {
            None => Ok(None),
            Some((key, _)) => decode_u64(&key)
                .map(Some)
                .ok_or_else(|| StoreError::corrupt("anchor key")),
        }
    }

    /// A small value other components keep beside the log (e.g. the anchorer's cursor).
    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.shared().meta.get(key.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Stores a small value under `key`, durably.
    pub fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        if key.is_empty() || key.len() > MAX_META_KEY_LEN {
            return Err(StoreError::Config {
                reason: format!("meta key must be 1-{MAX_META_KEY_LEN} bytes"),
            });
        }
        check_value_len(value.len())?;
        self.shared().meta.insert(key.as_bytes(), value)?;
        self.shared().db.flush()?;
        Ok(())
    }
}

fn check_value_len(len: usize) -> Result<(), StoreError> {
    if len > MAX_SIDE_VALUE_LEN {
        return Err(StoreError::Config {
            reason: format!("value of {len} bytes is over the cap of {MAX_SIDE_VALUE_LEN}"),
        });
    }
    Ok(())
}
