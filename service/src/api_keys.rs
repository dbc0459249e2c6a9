//! The API-keys file: a TOML list of `[[key]]` entries, each the SHA-256 of a bearer key with
//! its tenant id, role and per-minute limits. The keys themselves are never stored: `sworn
//! keys add` prints a new key once and keeps only its hash.
//!
//! ```toml
//! [[key]]
//! id = "team-a"                 # the tenant, recorded in every receipt
//! sha256 = "…64 hex…"           # SHA-256 of the bearer key
//! role = "user"                 # or "admin" (audit export and erasure)
//! requests_per_minute = 600
//! tokens_per_minute = 200000
//! ```

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sworn_ledger::small_file::{CappedReadError, OpenedFile};

/// Every key starts with this, so leaked keys are easy to scan for.
pub const API_KEY_PREFIX: &str = "sk-sworn-";
/// Random bytes in a key (256 bits).
const KEY_RANDOM_BYTES: usize = 32;
/// Largest keys file read: thousands of entries fit; a bigger file is a mistake.
pub const MAX_KEYS_FILE_BYTES: u64 = 1024 * 1024;
/// Longest key id; ids are recorded in receipts (whose text fields allow 256 bytes).
pub const MAX_KEY_ID_LEN: usize = 64;
/// Default requests per minute for a new key.
pub const DEFAULT_REQUESTS_PER_MINUTE: u64 = 600;
/// Default tokens (prompt + completion budget) per minute for a new key.
pub const DEFAULT_TOKENS_PER_MINUTE: u64 = 1_000_000;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Completions and read-only audit routes.
    User,
    /// Also the log export and erasure.
    Admin,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

/// One `[[key]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The tenant id.
    pub id: String,
    /// SHA-256 of the bearer key, lowercase hex.
    pub sha256: String,
    /// The key's role.
    pub role: Role,
    /// Request budget per minute.
    pub requests_per_minute: u64,
    /// Token budget per minute (prompt tokens plus the completion budget asked for).
    pub tokens_per_minute: u64,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// The entries.
    #[serde(default)]
    pub key: Vec<KeyEntry>,
}

/// Why the keys file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_KEYS_FILE_BYTES`].
    #[error("{path}: {len} bytes, over the cap of {MAX_KEYS_FILE_BYTES}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// An entry breaks a rule (id syntax, duplicate, hash syntax, zero limit).
    #[error("{path}: key `{id}`: {reason}")]
    Entry {
        /// The file.
        path: PathBuf,
        /// The entry's id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// SHA-256 of a bearer key, as stored in the file.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl KeysFile {
    /// Reads and checks a keys file.
    pub fn load(path: &Path) -> Result<KeysFile, KeysError> {
        let io = |source| KeysError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Size and mode come from the handle that is read (see `sworn_ledger::small_file`).
        let file = OpenedFile::open(path).map_err(|e| io(e.into_io_error()))?;
        let mode = file.metadata().permissions().mode();
        let bytes = file.read_capped(MAX_KEYS_FILE_BYTES).map_err(|e| match e {
            CappedReadError::TooLarge { size, .. } => KeysError::TooLarge {
                path: path.to_path_buf(),
                len: size,
            },
            other => io(other.into_io_error()),
        })?;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "API keys file is readable by group or others; chmod 600 it");
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            ))
        })?;
        let file: KeysFile = toml::from_str(&text).map_err(|e| KeysError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        file.check(path)?;
        Ok(file)
    }

    fn check(&self, path: &Path) -> Result<(), KeysError> {
        let mut ids = HashSet::new();
        let mut hashes = HashSet::new();
        for entry in &self.key {
            let hex_ok = entry.sha256.len() == 64
                && entry
                    .sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            let reason = if !valid_id(&entry.id) {
                "id must be 1-64 characters of [A-Za-z0-9._-]"
            } else if !ids.insert(entry.id.as_str()) {
                "duplicate id"
            } else if !hex_ok {
                "sha256 must be 64 lowercase hex characters"
            } else if !hashes.insert(entry.sha256.as_str()) {
                "duplicate sha256 (the same key twice)"
            } else if entry.requests_per_minute == 0 || entry.tokens_per_minute == 0 {
                "limits must be at least 1 per minute"
            } else {
                continue;
            };
            return Err(KeysError::Entry {
                path: path.to_path_buf(),
                id: entry.id.chars().take(MAX_KEY_ID_LEN).collect(),
                reason: reason.to_string(),
            });
        }
        Ok(())
    }
}

/// What `sworn keys add` needs.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The tenant id.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// Requests per minute.
    pub requests_per_minute: u64,
    /// Tokens per minute.
    pub tokens_per_minute: u64,
}

/// Appends a new key to `path` (creating it, mode 0600) and returns the key, which exists
/// nowhere else: the file keeps only its hash. The file is replaced atomically.
pub fn add_key(path: &Path, new: &NewKey) -> Result<String, KeysError> {
    let mut file = if path.exists() {
        KeysFile::load(path)?
    } else {
        KeysFile::default()
    };
    let mut random = [0u8; KEY_RANDOM_BYTES];
    OsRng.fill_bytes(&mut random);
    let key = format!(
        "{API_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    );
    file.key.push(KeyEntry {
        id: new.id.clone(),
        sha256: hex::encode(key_digest(&key)),
        role: new.role,
        requests_per_minute: new.requests_per_minute,
        tokens_per_minute: new.tokens_per_minute,
    });
    save(path, &file)?;
    Ok(key)
}

/// Removes tenant `id`'s key from the file. A running `sworn serve` stops accepting it
/// when it rereads the file (SIGHUP); answers already given keep their receipts.
pub fn revoke_key(path: &Path, id: &str) -> Result<String, KeysError> {
    let mut file = KeysFile::load(path)?;
    let before = file.key.len();
    file.key.retain(|entry| entry.id != id);
    if file.key.len() == before {
        return Err(KeysError::Entry {
            path: path.to_path_buf(),
            id: id.to_string(),
            reason: "no key with this id in the file".to_string(),
        });
    }
    save(path, &file)?;
    Ok(format!(
        "revoked `{id}`; send SIGHUP to a running sworn serve to drop it"
    ))
}

/// Checks `file` and writes it over `path`, atomically and mode 0600.
fn save(path: &Path, file: &KeysFile) -> Result<(), KeysError> {
    file.check(path)?;
    let text = toml::to_string(file).map_err(|e| KeysError::Parse {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_private(path, text.as_bytes())
}

/// `sworn keys …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Append a new key to an API-keys file and print the key (shown only this once).
    Add(KeysAddArgs),
    /// Remove a tenant's key from an API-keys file (SIGHUP makes a running server reread it).
    Revoke(KeysRevokeArgs),
}

/// `sworn keys revoke` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct KeysRevokeArgs {
    /// The API-keys TOML file.
    #[arg(long)]
    pub file: PathBuf,
    /// The tenant id whose key is removed.
    #[arg(long)]
    pub id: String,
}

/// `sworn keys add` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct KeysAddArgs {
    /// The API-keys TOML file (created, mode 0600, if missing).
    #[arg(long)]
    pub file: PathBuf,
    /// The tenant id, recorded in every receipt of this key.
    #[arg(long)]
    pub id: String,
    /// The key's role.
    #[arg(long, value_enum, default_value = "user")]
    pub role: Role,
    /// Requests per minute.
    #[arg(long, default_value_t = DEFAULT_REQUESTS_PER_MINUTE)]
    pub requests_per_minute: u64,
    /// Tokens (prompt + completion budget) per minute.
    #[arg(long, default_value_t = DEFAULT_TOKENS_PER_MINUTE)]
    pub tokens_per_minute: u64,
}

/// Runs a `sworn keys` command; returns what to print.
pub fn run(command: &KeysCommand) -> Result<String, KeysError> {
    match command {
        KeysCommand::Add(args) => add_key(
            &args.file,
            &NewKey {
                id: args.id.clone(),
                role: args.role,
                requests_per_minute: args.requests_per_minute,
                tokens_per_minute: args.tokens_per_minute,
            },
        ),
        KeysCommand::Revoke(args) => revoke_key(&args.file, &args.id),
    }
}

/// Writes `bytes` to a 0600 temporary file beside `path`, syncs it, and renames it over.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeysError> {
    let io = |source| KeysError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let _ = fs::remove_file(&tmp);
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    out.write_all(bytes).map_err(io)?;
    out.sync_all().map_err(io)?;
    drop(out);
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: &str, role: Role) -> NewKey {
        NewKey {
            id: id.into(),
            role,
            requests_per_minute: 10,
            tokens_per_minute: 1000,
        }
    }

    #[test]
    fn revoke_removes_exactly_that_tenants_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        add_key(&path, &new("team-a", Role::User)).unwrap();
        add_key(&path, &new("team-b", Role::User)).unwrap();
        revoke_key(&path, "team-a").unwrap();
        let ids: Vec<String> = KeysFile::load(&path)
            .unwrap()
            .key
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(ids, ["team-b"]);
        let again = revoke_key(&path, "team-a").unwrap_err();
        assert!(again.to_string().contains("no key with this id"), "{again}");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn add_key_appends_hash_only_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let a = add_key(&path, &new("team-a", Role::User)).unwrap();
        let b = add_key(&path, &new("root", Role::Admin)).unwrap();
        assert!(a.starts_with(API_KEY_PREFIX) && b.starts_with(API_KEY_PREFIX));
        assert_ne!(a, b);
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&a) && !text.contains(&b),
            "the key itself must not be stored"
        );
        let file = KeysFile::load(&path).unwrap();
        assert_eq!(file.key.len(), 2);
        assert_eq!(file.key[0].sha256, hex::encode(key_digest(&a)));
        assert_eq!(file.key[1].role, Role::Admin);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn duplicate_ids_and_bad_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        add_key(&path, &new("team-a", Role::User)).unwrap();
        for id in ["team-a", "has space"] {
            let refused = add_key(&path, &new(id, Role::User));
            assert!(matches!(refused, Err(KeysError::Entry { .. })), "{id}");
        }
        // A refused add leaves the file as it was.
        assert_eq!(KeysFile::load(&path).unwrap().key.len(), 1);
    }

    #[test]
    fn malformed_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        fs::write(&path, "[[key]]\nid = \"a\"\n").unwrap();
        assert!(matches!(
            KeysFile::load(&path),
            Err(KeysError::Parse { .. })
        ));
        fs::write(
            &path,
            format!(
                "[[key]]\nid = \"a\"\nsha256 = \"{}\"\nrole = \"user\"\nrequests_per_minute = 0\ntokens_per_minute = 5\n",
                "ab".repeat(32)
            ),
        )
        .unwrap();
        assert!(matches!(
            KeysFile::load(&path),
            Err(KeysError::Entry { .. })
        ));
    }
}
