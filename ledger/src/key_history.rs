//! The log's key history: which Ed25519 key signs which part of the log.
//!
//! A log starts with one key. A rotation (`sworn log-key rotate`, docs/OPERATIONS.md)
//! retires it at a *boundary*: the tree size `from_size` of the last checkpoint the old
//! key signed, which is the checkpoint anchored at seq `from_seq - 1`. From then on the
//! new key signs, and the contract records it with `rotateKey(logId, key, from_seq)`:
//!
//! - entry `i` is signed by the key of the last epoch whose `from_size ≤ i`;
//! - a checkpoint of size `s` may be signed by the key of an epoch `j` with
//!   `from_size_j ≤ s ≤ from_size_{j+1}` (the old key's last checkpoint, at the boundary
//!   itself, was signed before the rotation; the new key may sign that size too).
//!
//! So a signature by a retired key over an entry at or past its boundary, or over a
//! checkpoint past it, is refused: whoever holds a retired (or stolen) key cannot mint a
//! receipt or a checkpoint that verifies for the log's later history.
//!
//! Text form (`sworn log-key history`, `sworn-verify --key FILE`), a closed I-JSON object:
//!
//! ```json
//! {"format":"sworn-key-history","version":1,"origin":"sworn.example/log",
//!  "keys":[{"vkey":"sworn.example/log+…","from_size":0,"from_seq":1},
//!          {"vkey":"sworn.example/log+…","from_size":42,"from_seq":3}]}
//! ```
//!
//! Rules: 1–64 keys, all named by `origin`, none repeated; the first has `from_size` 0 and
//! `from_seq` 1; `from_seq` strictly increases and `from_size` never decreases.

use serde_json::{Map, Value, json};

use crate::checkpoint::{CheckpointError, SignedCheckpoint};
use crate::keys::PinnedKey;

/// `format` member of the text form.
pub const KEY_HISTORY_FORMAT: &str = "sworn-key-history";
/// Most keys a history holds.
pub const MAX_KEYS: usize = 64;

/// One key and the part of the log it signs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEpoch {
    /// The key (named by the origin).
    pub key: PinnedKey,
    /// The first entry index it signs (the tree size at which it took over).
    pub from_size: u64,
    /// The first anchor seq whose checkpoint it signs (the contract's `fromSeq`).
    pub from_seq: u64,
}

/// Why a key history is not valid, or a signature is not by the right key of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyHistoryError {
    /// The history breaks one of the rules in the module documentation.
    #[error("key history: {reason}")]
    Invalid {
        /// Which rule.
        reason: String,
    },
}

fn invalid(reason: impl Into<String>) -> KeyHistoryError {
    KeyHistoryError::Invalid {
        reason: reason.into(),
    }
}

/// The keys of one log, oldest first (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHistory {
    epochs: Vec<KeyEpoch>,
}

impl KeyHistory {
    /// A log that never rotated: `key` signs everything.
    pub fn single(key: PinnedKey) -> KeyHistory {
        KeyHistory {
            epochs: vec![KeyEpoch {
                key,
                from_size: 0,
                from_seq: 1,
            }],
        }
    }

    /// A history from its epochs, checked against the rules.
    pub fn new(epochs: Vec<KeyEpoch>) -> Result<KeyHistory, KeyHistoryError> {
        let Some(first) = epochs.first() else {
            return Err(invalid("no key"));
        };
        if epochs.len() > MAX_KEYS {
            return Err(invalid(format!("more than {MAX_KEYS} keys")));
        }
        if first.from_size != 0 || first.from_seq != 1 {
            return Err(invalid("the first key must apply from size 0 and seq 1"));
        }
        for (i, pair) in epochs.windows(2).enumerate() {
            let (a, b) = (&pair[0], &pair[1]);
            if b.key.name() != first.key.name() {
                return Err(invalid(format!(
                    "key {} is named {:?}, the log is {:?}",
                    i + 1,
                    b.key.name(),
                    first.key.name()
                )));
            }
            if b.from_seq <= a.from_seq {
                return Err(invalid(format!(
                    "key {} applies from seq {}, not after the previous key's seq {}",
                    i + 1,
                    b.from_seq,
                    a.from_seq
                )));
            }
            if b.from_size < a.from_size {
                return Err(invalid(format!(
                    "key {} applies from size {}, before the previous key's size {}",
                    i + 1,
                    b.from_size,
                    a.from_size
                )));
            }
        }
        for (i, e) in epochs.iter().enumerate() {
            if epochs[..i]
                .iter()
                .any(|p| p.key.public_key_bytes() == e.key.public_key_bytes())
            {
                return Err(invalid(format!("key {i} appears twice")));
            }
        }
        Ok(KeyHistory { epochs })
    }

    /// The epochs, oldest first.
    pub fn epochs(&self) -> &[KeyEpoch] {
        &self.epochs
    }

    /// The log's origin (every key's name).
    pub fn origin(&self) -> &str {
        self.epochs[0].key.name()
    }

    /// The key signing now (the newest).
    pub fn current(&self) -> &PinnedKey {
        &self.epochs[self.epochs.len() - 1].key
    }

    /// The key the log was created with.
    pub fn genesis(&self) -> &PinnedKey {
        &self.epochs[0].key
    }

    /// Whether the log ever rotated its key.
    pub fn rotated(&self) -> bool {
        self.epochs.len() > 1
    }

    /// The epoch whose key signs entry `index`.
    pub fn epoch_for_entry(&self, index: u64) -> &KeyEpoch {
        self.epochs
            .iter()
            .rev()
            .find(|e| e.from_size <= index)
            .unwrap_or(&self.epochs[0])
    }

    /// The key that signs entry `index`: a signature by any other key is refused.
    pub fn key_for_entry(&self, index: u64) -> &PinnedKey {
        &self.epoch_for_entry(index).key
    }

    /// The last tree size epoch `i`'s key may sign a checkpoint of (`None`: no limit).
    pub fn until_size(&self, i: usize) -> Option<u64> {
        self.epochs.get(i + 1).map(|next| next.from_size)
    }

    /// Whether epoch `i`'s key may sign a checkpoint of `size`.
    pub fn signs_checkpoint(&self, i: usize, size: u64) -> bool {
        self.epochs[i].from_size <= size && self.until_size(i).is_none_or(|until| size <= until)
    }

    /// Verifies a checkpoint note against the history: it must be signed by a key of the
    /// history whose range covers its size, for the history's origin. Returns the checkpoint
    /// and the epoch whose key signed it. A note signed only by a key whose range does not
    /// cover its size is refused ([`CheckpointError::KeyNotForSize`]).
    pub fn verify_checkpoint(
        &self,
        note: &str,
    ) -> Result<(SignedCheckpoint, &KeyEpoch), CheckpointError> {
        let mut first_err = None;
        let mut out_of_range = None;
        // Newest first: the current key is the usual signer.
        for (i, epoch) in self.epochs.iter().enumerate().rev() {
            match SignedCheckpoint::verify(note, &epoch.key, self.origin()) {
                Ok(signed) => {
                    if self.signs_checkpoint(i, signed.checkpoint.size) {
                        return Ok((signed, epoch));
                    }
                    out_of_range.get_or_insert(CheckpointError::KeyNotForSize {
                        key_id: hex::encode(epoch.key.key_id()),
                        size: signed.checkpoint.size,
                        from_size: epoch.from_size,
                        until_size: self.until_size(i),
                    });
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(out_of_range
            .or(first_err)
            .unwrap_or(CheckpointError::MissingLines))
    }

    /// The text form (see the module documentation), one line.
    pub fn to_json(&self) -> String {
        let keys: Vec<Value> = self
            .epochs
            .iter()
            .map(|e| {
                json!({"vkey": e.key.to_vkey(), "from_size": e.from_size, "from_seq": e.from_seq})
            })
            .collect();
        json!({
            "format": KEY_HISTORY_FORMAT,
            "version": 1,
            "origin": self.origin(),
            "keys": keys,
        })
        .to_string()
    }

    /// Reads the text form from an I-JSON value (already parsed strictly).
    pub fn from_json_value(value: &Value) -> Result<KeyHistory, KeyHistoryError> {
        let top = closed(
            value,
            &["format", "version", "origin", "keys"],
            "the history",
        )?;
        if top.get("format").and_then(Value::as_str) != Some(KEY_HISTORY_FORMAT) {
            return Err(invalid(format!("`format` is not {KEY_HISTORY_FORMAT:?}")));
        }
        if integer(top, "version")? != 1 {
            return Err(invalid("`version` is not 1"));
        }
        let origin = top
            .get("origin")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("`origin` is not a string"))?;
        let keys = top
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("`keys` is not an array"))?;
        if keys.len() > MAX_KEYS {
            return Err(invalid(format!("more than {MAX_KEYS} keys")));
        }
        let mut epochs = Vec::with_capacity(keys.len());
        for item in keys {
            let o = closed(item, &["vkey", "from_size", "from_seq"], "a key")?;
            let vkey = o
                .get("vkey")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("`vkey` is not a string"))?;
            let key = PinnedKey::from_vkey(vkey).map_err(|e| invalid(e.to_string()))?;
            if key.name() != origin {
                return Err(invalid(format!(
                    "key {vkey:?} is not named by the origin {origin:?}"
                )));
            }
            epochs.push(KeyEpoch {
                key,
                from_size: integer(o, "from_size")?,
                from_seq: integer(o, "from_seq")?,
            });
        }
        KeyHistory::new(epochs)
    }

    /// Parses the text form strictly (I-JSON, closed objects).
    pub fn parse(bytes: &[u8]) -> Result<KeyHistory, KeyHistoryError> {
        let value = crate::ijson::parse(bytes).map_err(|e| invalid(e.to_string()))?;
        Self::from_json_value(&value)
    }
}

fn closed<'a>(
    value: &'a Value,
    members: &[&str],
    what: &str,
) -> Result<&'a Map<String, Value>, KeyHistoryError> {
    let Value::Object(o) = value else {
        return Err(invalid(format!("{what} is not an object")));
    };
    if let Some(extra) = o.keys().find(|k| !members.contains(&k.as_str())) {
        return Err(invalid(format!("{what} has an unknown member {extra:?}")));
    }
    for m in members {
        if !o.contains_key(*m) {
            return Err(invalid(format!("{what} lacks `{m}`")));
        }
    }
    Ok(o)
}

/// A non-negative integer member without fraction or exponent.
fn integer(o: &Map<String, Value>, name: &str) -> Result<u64, KeyHistoryError> {
    match o.get(name) {
        Some(Value::Number(n)) if n.is_u64() => Ok(n.as_u64().unwrap_or_default()),
        _ => Err(invalid(format!("`{name}` is not an integer"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::keys::LogKey;
    use crate::merkle::Hash;

    const ORIGIN: &str = "sworn.example/rot";

    fn two() -> (LogKey, LogKey, KeyHistory) {
        let (old, new) = (LogKey::from_seed([1; 32]), LogKey::from_seed([2; 32]));
        let history = KeyHistory::new(vec![
            KeyEpoch {
                key: old.pinned(ORIGIN).unwrap(),
                from_size: 0,
                from_seq: 1,
            },
            KeyEpoch {
                key: new.pinned(ORIGIN).unwrap(),
                from_size: 10,
                from_seq: 4,
            },
        ])
        .unwrap();
        (old, new, history)
    }

    fn note(size: u64, key: &LogKey) -> String {
        SignedCheckpoint::sign(Checkpoint::new(ORIGIN, size, Hash([7; 32])), key)
            .unwrap()
            .note
    }

    #[test]
    fn entries_take_the_key_of_their_epoch() {
        let (old, new, h) = two();
        assert_eq!(h.key_for_entry(0), &old.pinned(ORIGIN).unwrap());
        assert_eq!(h.key_for_entry(9), &old.pinned(ORIGIN).unwrap());
        assert_eq!(h.key_for_entry(10), &new.pinned(ORIGIN).unwrap());
        assert_eq!(h.key_for_entry(u64::MAX), &new.pinned(ORIGIN).unwrap());
        assert_eq!(h.current(), &new.pinned(ORIGIN).unwrap());
        assert_eq!(h.genesis(), &old.pinned(ORIGIN).unwrap());
    }

    #[test]
    fn a_retired_key_signs_no_checkpoint_past_its_boundary() {
        let (old, new, h) = two();
        // The old key's checkpoints up to the boundary, the new key's from it on.
        for size in [1, 9, 10] {
            let (cp, epoch) = h.verify_checkpoint(&note(size, &old)).unwrap();
            assert_eq!((cp.checkpoint.size, epoch.from_size), (size, 0));
        }
        for size in [10, 11, 1000] {
            assert_eq!(
                h.verify_checkpoint(&note(size, &new)).unwrap().1.from_size,
                10
            );
        }
        assert!(matches!(
            h.verify_checkpoint(&note(11, &old)),
            Err(CheckpointError::KeyNotForSize {
                size: 11,
                until_size: Some(10),
                ..
            })
        ));
        assert!(matches!(
            h.verify_checkpoint(&note(9, &new)),
            Err(CheckpointError::KeyNotForSize { size: 9, .. })
        ));
        // A key outside the history verifies nothing.
        let stranger = LogKey::from_seed([3; 32]);
        assert!(matches!(
            h.verify_checkpoint(&note(5, &stranger)),
            Err(CheckpointError::Note(_))
        ));
    }

    #[test]
    fn text_form_round_trips_and_is_strict() {
        let (_, _, h) = two();
        let text = h.to_json();
        assert_eq!(KeyHistory::parse(text.as_bytes()).unwrap(), h);
        let single = KeyHistory::single(LogKey::from_seed([1; 32]).pinned(ORIGIN).unwrap());
        assert_eq!(
            KeyHistory::parse(single.to_json().as_bytes()).unwrap(),
            single
        );
        for bad in [
            text.replace("\"from_size\":10", "\"from_size\":10.0"),
            text.replace("\"from_seq\":4", "\"from_seq\":1"),
            text.replace("\"from_size\":0", "\"from_size\":11"),
            text.replace("\"version\":1", "\"version\":2"),
            text.replace("\"format\"", "\"extra\":1,\"format\""),
            text.replace("\"origin\":\"sworn.example/rot\"", "\"origin\":\"other\""),
            // An unknown member in a key (whatever order serde_json writes them in).
            text.replacen("\"from_seq\":", "\"x\":0,\"from_seq\":", 1),
        ] {
            assert_ne!(bad, text);
            assert!(KeyHistory::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        // The same key twice is refused.
        let k = LogKey::from_seed([1; 32]).pinned(ORIGIN).unwrap();
        assert!(
            KeyHistory::new(vec![
                KeyEpoch {
                    key: k.clone(),
                    from_size: 0,
                    from_seq: 1
                },
                KeyEpoch {
                    key: k,
                    from_size: 3,
                    from_seq: 2
                },
            ])
            .is_err()
        );
    }
}
