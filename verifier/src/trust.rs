//! The auditor's trust roots: the pinned log key (and with it the origin), or the log's key
//! history when it rotated its key, given on the command line or in a file — never taken
//! from the material being verified.

use std::path::Path;

use sworn_ledger::key_history::{KEY_HISTORY_FORMAT, KeyHistory};
use sworn_ledger::keys::PinnedKey;
use sworn_ledger::small_file::{CappedReadError, read_capped};

/// Largest key file read: a verifier key is under 400 bytes, `/v1/audit/key`'s JSON a
/// little more, a key history (at most 64 keys) under 32 KiB.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The key file could not be read.
    #[error("key file {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What happened.
        reason: String,
    },
    /// Neither the argument nor the file holds a valid verifier key.
    #[error("not a verifier key (origin+keyid+base64) or a file holding one: {reason}")]
    BadKey {
        /// What was wrong.
        reason: String,
    },
}

/// Loads the pinned keys from `arg`: a C2SP verifier key string, or a file holding one
/// (alone, or as the `vkey` member of the `/v1/audit/key` JSON) — a log that never rotated
/// its key — or a file holding the log's key history (`sworn-key-history`, FORMATS.md §8.1).
pub fn load_key(arg: &str) -> Result<KeyHistory, TrustError> {
    if let Ok(key) = PinnedKey::from_vkey(arg.trim()) {
        return Ok(KeyHistory::single(key));
    }
    let path = Path::new(arg);
    let io = |reason: String| TrustError::Io {
        path: arg.to_string(),
        reason,
    };
    let bytes = read_capped(path, MAX_KEY_FILE_BYTES).map_err(|e| match e {
        CappedReadError::TooLarge { size, .. } => {
            io(format!("{size} bytes, larger than any key file"))
        }
        CappedReadError::GrewPastCap { .. } => io(format!(
            "more than {MAX_KEY_FILE_BYTES} bytes, larger than any key file"
        )),
        other => io(other.reason()),
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| io("not UTF-8 text".to_string()))?;
    parse_key_text(text)
}

/// Parses a key file's text.
pub fn parse_key_text(text: &str) -> Result<KeyHistory, TrustError> {
    let text = text.trim();
    let vkey = match sworn_ledger::ijson::parse(text.as_bytes()) {
        Ok(v) if v.get("format").and_then(|f| f.as_str()) == Some(KEY_HISTORY_FORMAT) => {
            return KeyHistory::from_json_value(&v).map_err(|e| TrustError::BadKey {
                reason: e.to_string(),
            });
        }
        Ok(v) => v
            .get("vkey")
            .and_then(|k| k.as_str())
            .map(str::to_string)
            .ok_or_else(|| TrustError::BadKey {
                reason: "JSON without a `vkey` string".into(),
            })?,
        Err(_) => text.to_string(),
    };
    PinnedKey::from_vkey(&vkey)
        .map(KeyHistory::single)
        .map_err(|e| TrustError::BadKey {
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sworn_ledger::keys::LogKey;

    #[test]
    fn key_from_string_file_and_api_json() {
        let key = LogKey::from_seed([5; 32])
            .pinned("sworn.example/t")
            .unwrap();
        let vkey = key.to_vkey();
        let key = KeyHistory::single(key);
        assert_eq!(load_key(&vkey).unwrap(), key);
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("k.vkey");
        std::fs::write(&plain, format!("{vkey}\n")).unwrap();
        assert_eq!(load_key(plain.to_str().unwrap()).unwrap(), key);
        let json = dir.path().join("k.json");
        std::fs::write(
            &json,
            serde_json::json!({"origin": "x", "vkey": vkey}).to_string(),
        )
        .unwrap();
        assert_eq!(load_key(json.to_str().unwrap()).unwrap(), key);
        assert!(matches!(load_key("nonsense"), Err(TrustError::Io { .. })));
        assert!(matches!(
            parse_key_text("{\"x\":1}"),
            Err(TrustError::BadKey { .. })
        ));
    }

    #[test]
    fn key_history_file() {
        use sworn_ledger::key_history::KeyEpoch;
        let origin = "sworn.example/t";
        let history = KeyHistory::new(vec![
            KeyEpoch {
                key: LogKey::from_seed([5; 32]).pinned(origin).unwrap(),
                from_size: 0,
                from_seq: 1,
            },
            KeyEpoch {
                key: LogKey::from_seed([6; 32]).pinned(origin).unwrap(),
                from_size: 7,
                from_seq: 2,
            },
        ])
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, history.to_json()).unwrap();
        assert_eq!(load_key(path.to_str().unwrap()).unwrap(), history);
        // A history that breaks its rules is refused, not read as a single key.
        let bad = history
            .to_json()
            .replace("\"from_size\":7", "\"from_size\":7.5");
        assert!(matches!(
            parse_key_text(&bad),
            Err(TrustError::BadKey { .. })
        ));
    }
}
