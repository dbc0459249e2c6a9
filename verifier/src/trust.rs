//! The auditor's trust roots: the pinned log key (and with it the origin), given on the
//! command line or in a file — never taken from the material being verified.

use std::path::Path;

use sworn_ledger::keys::PinnedKey;
use sworn_ledger::small_file::{CappedReadError, read_capped};

/// Largest key file read: a verifier key is under 400 bytes; `/v1/audit/key`'s JSON a
/// little more.
const MAX_KEY_FILE_BYTES: u64 = 4096;

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

/// Loads a pinned key from `arg`: a C2SP verifier key string, or a file holding one
/// (alone, or as the `vkey` member of the `/v1/audit/key` JSON).
pub fn load_key(arg: &str) -> Result<PinnedKey, TrustError> {
    if let Ok(key) = PinnedKey::from_vkey(arg.trim()) {
        return Ok(key);
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
pub fn parse_key_text(text: &str) -> Result<PinnedKey, TrustError> {
    let text = text.trim();
    let vkey = match sworn_ledger::ijson::parse(text.as_bytes()) {
        Ok(v) => v
            .get("vkey")
            .and_then(|k| k.as_str())
            .map(str::to_string)
            .ok_or_else(|| TrustError::BadKey {
                reason: "JSON without a `vkey` string".into(),
            })?,
        Err(_) => text.to_string(),
    };
    PinnedKey::from_vkey(&vkey).map_err(|e| TrustError::BadKey {
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
}
