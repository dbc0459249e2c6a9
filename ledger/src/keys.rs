//! The log's Ed25519 key: generated into, and loaded from, a private file; and the pinned
//! public key verifiers trust.
//!
//! Secret key file format (one line, UTF-8): `sworn-log-key-v1 <base64 of the 32-byte
//! seed>\n`. The file is created with mode 0600 and loading refuses a file that its group
//! or others can read or write.
//!
//! Public keys travel as C2SP signed-note *verifier keys*:
//! `<name>+<key id, 8 hex>+<base64(0x01 ‖ 32-byte public key)>`, where the name is the log
//! origin and the key id is `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::OsRng;
use sha2::{Digest, Sha256};

use crate::ed25519::StrictKey;
use crate::small_file::{CappedReadError, OpenedFile};

pub use ed25519_dalek::Signature;

/// First token of a secret key file; bump it if the format ever changes.
pub const KEY_FILE_TAG: &str = "sworn-log-key-v1";
/// Signature type byte of Ed25519 in C2SP signed notes.
pub const ED25519_SIG_TYPE: u8 = 0x01;
/// Largest key file read: a valid one is under 64 bytes.
const MAX_KEY_FILE_BYTES: u64 = 1024;
/// Longest key name (log origin) accepted.
pub const MAX_KEY_NAME_LEN: usize = 256;

/// Why a key could not be created, loaded or parsed, or a signature did not verify.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file can be read or written by group or others.
    #[error(
        "key file {path} has mode {mode:o}; it must not be accessible to group or others (chmod 600)"
    )]
    Permissive {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is larger than any valid one.
    #[error("key file {path} is {len} bytes, larger than a key file can be")]
    TooLarge {
        /// The key file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The key file's content is not `sworn-log-key-v1 <base64 seed>`.
    #[error("key file {path} is not a {KEY_FILE_TAG} file")]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
    /// The public key is not a valid Ed25519 point, or is a weak (small-order) key.
    #[error("public key is invalid or weak")]
    WeakOrInvalidPublicKey,
    /// The key name is empty, too long, or contains whitespace or `+`.
    #[error("key name {name:?} is not a valid signed-note key name")]
    BadName {
        /// The name given.
        name: String,
    },
    /// A verifier key string is not `name+keyid+base64(0x01‖key)` or its key id is wrong.
    #[error("verifier key is malformed: {reason}")]
    BadVerifierKey {
        /// What was wrong.
        reason: &'static str,
    },
    /// The signature does not verify under the pinned key (strict verification).
    #[error("signature does not verify under the pinned key")]
    BadSignature,
}

/// The log's signing key. Never printed: its `Debug` shows only the public key.
pub struct LogKey {
    signing: SigningKey,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LogKey(public {})",
            hex::encode(self.signing.verifying_key().as_bytes())
        )
    }
}

impl LogKey {
    /// A new random key, written to `path` (which must not exist) with mode 0600.
    pub fn generate_to_file(path: &Path) -> Result<LogKey, KeyError> {
        let key = LogKey {
            signing: SigningKey::generate(&mut OsRng),
        };
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let line = format!("{KEY_FILE_TAG} {}\n", BASE64.encode(key.signing.to_bytes()));
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(key)
    }

    /// Loads a key written by [`LogKey::generate_to_file`], refusing files that group or
    /// others can access.
    pub fn load(path: &Path) -> Result<LogKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Mode and size are checked on the handle that is read (see `small_file`).
        let file = OpenedFile::open(path).map_err(|e| io(e.into_io_error()))?;
        let mode = file.metadata().permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissive {
                path: path.to_path_buf(),
                mode,
            });
        }
        let bytes = file.read_capped(MAX_KEY_FILE_BYTES).map_err(|e| match e {
            CappedReadError::TooLarge { size, .. } => KeyError::TooLarge {
                path: path.to_path_buf(),
                len: size,
            },
            other => io(other.into_io_error()),
        })?;
        let malformed = || KeyError::Malformed {
            path: path.to_path_buf(),
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| malformed())?;
        Self::parse_file_text(text).ok_or_else(malformed)
    }

    fn parse_file_text(text: &str) -> Option<LogKey> {
        let line = text.strip_suffix('\n').unwrap_or(text);
        let (tag, b64) = line.split_once(' ')?;
        if tag != KEY_FILE_TAG {
            return None;
        }
        let seed: [u8; 32] = BASE64.decode(b64).ok()?.try_into().ok()?;
        let key = LogKey::from_seed(seed);
        if key.signing.verifying_key().is_weak() {
            return None;
        }
        Some(key)
    }

    /// A key from a fixed 32-byte seed (test vectors, deterministic fixtures).
    pub fn from_seed(seed: [u8; 32]) -> LogKey {
        LogKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The raw 32-byte public key.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The public key pinned under `name` (the log origin), for verifiers.
    pub fn pinned(&self, name: &str) -> Result<PinnedKey, KeyError> {
        PinnedKey::new(name, &self.public_key_bytes())
    }

    /// Ed25519 signature of `message` (RFC 8032, deterministic).
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }
}

/// Whether `name` may name a signed-note key: non-empty, bounded, no whitespace, no `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEY_NAME_LEN
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// C2SP signed-note key id: `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`.
pub fn note_key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ED25519_SIG_TYPE]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A public key a verifier trusts, under the name (log origin) it signs for.
#[derive(Clone, PartialEq, Eq)]
pub struct PinnedKey {
    name: String,
    key: VerifyingKey,
    key_id: [u8; 4],
    /// The key prepared for strict verification (see [`crate::ed25519`]).
    strict: StrictKey,
}

impl std::fmt::Debug for PinnedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl PinnedKey {
    /// Pins `public_key` under `name`, refusing invalid points and weak (small-order) keys.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<PinnedKey, KeyError> {
        if !valid_key_name(name) {
            return Err(KeyError::BadName {
                name: name.to_string(),
            });
        }
        let key =
            VerifyingKey::from_bytes(public_key).map_err(|_| KeyError::WeakOrInvalidPublicKey)?;
        // `None` exactly for weak (small-order) keys.
        let strict = StrictKey::new(&key).ok_or(KeyError::WeakOrInvalidPublicKey)?;
        Ok(PinnedKey {
            name: name.to_string(),
            key,
            key_id: note_key_id(name, public_key),
            strict,
        })
    }

    /// The name this key signs for (the log origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signed-note key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The raw 32-byte public key.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Strict Ed25519 verification: what `verify_strict` accepts (canonical S, no
    /// small-order R or A), computed without decompressing R (see the crate's private
    /// `ed25519` module).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
        if self.strict.verify(message, signature) {
            Ok(())
        } else {
            Err(KeyError::BadSignature)
        }
    }

    /// [`PinnedKey::verify`] for each `(message, signature)` pair, in order. Each is checked
    /// on its own (this is not batch verification, which would not be strict); the pairs only
    /// share the final point encoding, which makes this faster per signature in bulk.
    pub fn verify_each<'a, I>(&self, pairs: I) -> Vec<Result<(), KeyError>>
    where
        I: IntoIterator<Item = (&'a [u8], &'a Signature)>,
    {
        self.strict
            .verify_each(pairs)
            .into_iter()
            .map(|ok| {
                if ok {
                    Ok(())
                } else {
                    Err(KeyError::BadSignature)
                }
            })
            .collect()
    }

    /// The C2SP verifier key string `name+keyid+base64(0x01‖key)`.
    pub fn to_vkey(&self) -> String {
        let mut typed = Vec::with_capacity(33);
        typed.push(ED25519_SIG_TYPE);
        typed.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            BASE64.encode(typed)
        )
    }

    /// Parses a verifier key string, checking its key id against the name and key.
    pub fn from_vkey(text: &str) -> Result<PinnedKey, KeyError> {
        let bad = |reason| KeyError::BadVerifierKey { reason };
        if text.len() > MAX_KEY_NAME_LEN + 64 {
            return Err(bad("too long"));
        }
        // The key is base64, which may itself contain '+': split at the first two only.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected name+keyid+key"));
        };
        let typed = BASE64.decode(b64).map_err(|_| bad("key is not base64"))?;
        let (Some(&ED25519_SIG_TYPE), Ok(public)) = (
            typed.first(),
            <[u8; 32]>::try_from(&typed[1.min(typed.len())..]),
        ) else {
            return Err(bad("key is not 0x01 followed by 32 bytes"));
        };
        let key = PinnedKey::new(name, &public)?;
        if id_hex != hex::encode(key.key_id) {
            return Err(bad("key id does not match name and key"));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn generated_file_is_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        let key = LogKey::generate_to_file(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = LogKey::load(&path).unwrap();
        assert_eq!(loaded.public_key_bytes(), key.public_key_bytes());
        // Never overwrite an existing key.
        assert!(matches!(
            LogKey::generate_to_file(&path),
            Err(KeyError::Io { .. })
        ));
    }

    #[test]
    fn world_or_group_readable_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        LogKey::generate_to_file(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            assert!(
                matches!(LogKey::load(&path), Err(KeyError::Permissive { .. })),
                "{mode:o}"
            );
        }
    }

    #[test]
    fn malformed_key_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        for (i, content) in [
            &b""[..],
            b"sworn-log-key-v1\n",
            b"sworn-log-key-v2 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            b"sworn-log-key-v1 AAAA\n",
            b"sworn-log-key-v1 not base64!\n",
            &[0xff, 0xfe, 0x00][..],
        ]
        .iter()
        .enumerate()
        {
            let path = dir.path().join(format!("k{i}"));
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap();
            f.write_all(content).unwrap();
            assert!(
                matches!(LogKey::load(&path), Err(KeyError::Malformed { .. })),
                "case {i}"
            );
        }
    }

    #[test]
    fn weak_public_keys_are_refused() {
        // The identity point (0, 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            PinnedKey::new("log", &identity),
            Err(KeyError::WeakOrInvalidPublicKey)
        ));
    }

    #[test]
    fn vkey_round_trips_and_checks_key_id() {
        let key = LogKey::from_seed([3; 32])
            .pinned("sworn.example/test")
            .unwrap();
        let text = key.to_vkey();
        assert_eq!(PinnedKey::from_vkey(&text).unwrap(), key);
        let other = text.replacen("sworn.example/test", "sworn.example/other", 1);
        assert!(matches!(
            PinnedKey::from_vkey(&other),
            Err(KeyError::BadVerifierKey { .. })
        ));
        assert!(PinnedKey::from_vkey("a+b").is_err());
        assert!(PinnedKey::from_vkey("a+00000000+").is_err());
    }
}
