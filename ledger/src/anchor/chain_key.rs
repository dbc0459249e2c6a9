//! The chain key: the secp256k1 private key of the account that submits anchors (and
//! deploys the contract), read from a file of hex. The file must not be readable by group
//! or others, and the key never appears in logs or errors.

use std::path::Path;

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;

use super::error::AnchorError;
use crate::small_file::{CappedReadError, OpenedFile};

/// Largest chain key file read: a 32-byte key in hex with `0x` and a newline is 67 bytes;
/// anything much larger is not a key file.
const MAX_KEY_FILE_LEN: u64 = 256;

/// Loads the signer from `path`: 64 hex digits, optional `0x`, surrounding whitespace
/// ignored. Refuses files that group or others can read.
pub fn load_chain_key(path: &Path) -> Result<PrivateKeySigner, AnchorError> {
    let fail = |reason: String| AnchorError::ChainKey {
        path: path.to_path_buf(),
        reason,
    };
    let file = OpenedFile::open(path).map_err(|e| fail(e.reason()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "mode {mode:03o} lets group or others read it; chmod 600 it"
            )));
        }
    }
    let bytes = file.read_capped(MAX_KEY_FILE_LEN).map_err(|e| {
        fail(match e {
            CappedReadError::TooLarge { size, .. } => {
                format!("{size} bytes is too long for a key file (max {MAX_KEY_FILE_LEN})")
            }
            CappedReadError::GrewPastCap { .. } => {
                format!("more than {MAX_KEY_FILE_LEN} bytes is too long for a key file")
            }
            other => other.reason(),
        })
    })?;
    let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".to_string()))?;
    let digits = text.trim();
    let digits = digits.strip_prefix("0x").unwrap_or(digits);
    if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(fail(
            "expected 64 hex digits (a 32-byte secp256k1 key)".to_string(),
        ));
    }
    let mut bytes = [0u8; 32];
    alloy::hex::decode_to_slice(digits, &mut bytes)
        .map_err(|_| fail("expected 64 hex digits".to_string()))?;
    PrivateKeySigner::from_bytes(&B256::from(bytes))
        .map_err(|_| fail("not a valid secp256k1 private key".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    // Anvil's development account 0: a published key, never used outside local chains.
    const DEV_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    fn write_key(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join("chain-key");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn loads_a_private_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let signer =
            load_chain_key(&write_key(dir.path(), &format!("0x{DEV_KEY}\n"), 0o600)).unwrap();
        assert_eq!(
            signer.address().to_string(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
    }

    #[test]
    fn refuses_group_or_world_readable_files() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o644] {
            let err = load_chain_key(&write_key(dir.path(), DEV_KEY, mode)).unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
            assert!(!err.to_string().contains(DEV_KEY));
        }
    }

    #[test]
    fn refuses_malformed_keys_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["", "0x1234", &DEV_KEY.replace('a', "g"), &"ab".repeat(200)] {
            let err = load_chain_key(&write_key(dir.path(), text, 0o600)).unwrap_err();
            assert!(matches!(err, AnchorError::ChainKey { .. }), "{err}");
            if !text.is_empty() {
                assert!(!err.to_string().contains(text), "{err}");
            }
        }
        // The zero scalar is not a valid secp256k1 key.
        let err = load_chain_key(&write_key(dir.path(), &"0".repeat(64), 0o600)).unwrap_err();
        assert!(err.to_string().contains("secp256k1"), "{err}");
    }
}
