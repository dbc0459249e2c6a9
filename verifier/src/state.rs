//! The auditor's memory: the last checkpoint it accepted for each origin, one small JSON
//! file per origin, so the next checkpoint can be required to extend it.
//!
//! The file is named by SHA-256 of the origin (origins contain `/`), holds the complete
//! signed note (evidence if the log later equivocates), and is replaced atomically
//! (write to a temporary file in the same directory, then rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sworn_ledger::small_file::{CappedReadError, read_capped};

/// Largest state file read (a note is at most 16 KiB).
const MAX_STATE_FILE_BYTES: u64 = 64 * 1024;

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
    /// The file exists but is not a state file for this origin.
    #[error("state file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// The last accepted checkpoint of one origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenCheckpoint {
    /// The origin.
    pub origin: String,
    /// Its size.
    pub size: u64,
    /// Its root, hex.
    pub root_hash: String,
    /// The complete signed note.
    pub note: String,
}

/// Per-origin state files under one directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// State kept under `dir` (created on first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateDir { dir: dir.into() }
    }

    /// The default directory: `$XDG_STATE_HOME/sworn-verify`, else
    /// `$HOME/.local/state/sworn-verify`, else `./.sworn-verify`.
    pub fn default_dir() -> PathBuf {
        if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            return Path::new(&x).join("sworn-verify");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return Path::new(&home).join(".local/state/sworn-verify");
        }
        PathBuf::from(".sworn-verify")
    }

    /// The file for `origin`.
    pub fn path_for(&self, origin: &str) -> PathBuf {
        self.dir.join(format!(
            "{}.json",
            hex::encode(Sha256::digest(origin.as_bytes()))
        ))
    }

    /// The last accepted checkpoint of `origin`, if any.
    pub fn load(&self, origin: &str) -> Result<Option<SeenCheckpoint>, StateError> {
        let path = self.path_for(origin);
        let io = |reason: String| StateError::Io {
            path: path.clone(),
            reason,
        };
        let corrupt = |reason: String| StateError::Corrupt {
            path: path.clone(),
            reason,
        };
        let bytes = match read_capped(&path, MAX_STATE_FILE_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e @ (CappedReadError::TooLarge { .. } | CappedReadError::GrewPastCap { .. })) => {
                return Err(corrupt(e.reason()));
            }
            Err(e) => return Err(io(e.reason())),
        };
        let seen: SeenCheckpoint =
            sworn_ledger::ijson::parse_as(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if seen.origin != origin {
            return Err(corrupt(format!("it is for origin {:?}", seen.origin)));
        }
        Ok(Some(seen))
    }

    /// Replaces the state of `seen.origin` atomically.
    pub fn save(&self, seen: &SeenCheckpoint) -> Result<(), StateError> {
        let path = self.path_for(&seen.origin);
        let io = |reason: String| StateError::Io {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| io(e.to_string()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| io(e.to_string()))?;
        let bytes = serde_json::to_vec_pretty(seen).map_err(|e| io(e.to_string()))?;
        tmp.write_all(&bytes).map_err(|e| io(e.to_string()))?;
        tmp.as_file().sync_all().map_err(|e| io(e.to_string()))?;
        tmp.persist(&path).map_err(|e| io(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_per_origin() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("s"));
        assert_eq!(state.load("a/b").unwrap(), None);
        let seen = SeenCheckpoint {
            origin: "a/b".into(),
            size: 3,
            root_hash: "00".repeat(32),
            note: "n".into(),
        };
        state.save(&seen).unwrap();
        assert_eq!(state.load("a/b").unwrap(), Some(seen.clone()));
        assert_eq!(state.load("a/c").unwrap(), None);
        std::fs::write(state.path_for("a/c"), serde_json::to_vec(&seen).unwrap()).unwrap();
        assert!(matches!(state.load("a/c"), Err(StateError::Corrupt { .. })));
    }
}
