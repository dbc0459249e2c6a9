//! C2SP `tlog-checkpoint`: the signed statement "the log named *origin* has *size* entries
//! and this root", as the text of a signed note:
//!
//! ```text
//! <origin>\n<size, decimal, no leading zeros>\n<base64 root>\n
//! ```
//!
//! The note is signed with the log key under the key name = origin. C2SP allows extension
//! lines after the root, but no monitor can audit what they say, so Sworn's format has
//! none: a checkpoint text with a fourth line is refused, never carried along unread.

use crate::keys::{LogKey, PinnedKey};
use crate::merkle::Hash;
use crate::note::{NoteError, sign_note, verify_note};

/// Why a checkpoint could not be parsed, signed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The signed-note layer failed (shape, caps, signature).
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
    /// The text has fewer than three lines, or an empty line.
    #[error("checkpoint text must have origin, size and root lines")]
    MissingLines,
    /// The size line is not a decimal u64 without leading zeros.
    #[error("checkpoint size {text:?} is not a decimal number without leading zeros")]
    BadSize {
        /// The size line.
        text: String,
    },
    /// The root line is not base64 of 32 bytes.
    #[error("checkpoint root is not base64 of 32 bytes")]
    BadRoot,
    /// A line after the root line: Sworn's checkpoints have no extension lines.
    #[error(
        "checkpoint has {count} line(s) after the root line; Sworn checkpoints have no extension lines"
    )]
    ExtensionLines {
        /// How many lines followed the root line.
        count: usize,
    },
    /// The origin line differs from the origin the verifier expects.
    #[error("checkpoint origin {found:?} is not the expected {expected:?}")]
    WrongOrigin {
        /// Origin in the checkpoint.
        found: String,
        /// Origin the verifier pinned.
        expected: String,
    },
    /// The note is signed by a key of the log's history whose range does not cover the
    /// checkpoint's size: a retired key past its rotation, or a key before it took over.
    #[error(
        "checkpoint of size {size} is signed by key id {key_id}, which signs checkpoints of sizes {from_size}..={} only{}",
        until_size.map_or("∞".to_string(), |u| u.to_string()),
        if until_size.is_some() { " (a key retired by a rotation)" } else { "" }
    )]
    KeyNotForSize {
        /// The signing key's note key id, hex.
        key_id: String,
        /// The checkpoint's size.
        size: u64,
        /// The first size the key signs.
        from_size: u64,
        /// The last size the key signs (`None`: the current key).
        until_size: Option<u64>,
    },
}

/// An unsigned checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin (its unique name).
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// RFC 9162 root of the first `size` entries.
    pub root: Hash,
}

impl Checkpoint {
    /// A checkpoint of `origin` at `size` with `root`.
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        }
    }

    /// The note text: origin, size and base64 root, each ending in `\n`.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        )
    }

    /// Parses checkpoint text (the signed part of the note).
    pub fn parse_text(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingLines)?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size_line), Some(root_line)) =
            (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::MissingLines);
        };
        if origin.is_empty() {
            return Err(CheckpointError::MissingLines);
        }
        let canonical_decimal = size_line == "0"
            || (!size_line.is_empty()
                && !size_line.starts_with('0')
                && size_line.bytes().all(|b| b.is_ascii_digit()));
        let size = canonical_decimal
            .then(|| size_line.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| CheckpointError::BadSize {
                text: size_line.to_string(),
            })?;
        let root = Hash::from_base64(root_line).map_err(|_| CheckpointError::BadRoot)?;
        let count = lines.count();
        if count > 0 {
            return Err(CheckpointError::ExtensionLines { count });
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

/// A checkpoint with its complete signed note, as stored, exported and anchored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed checkpoint.
    pub checkpoint: Checkpoint,
    /// The complete signed note text.
    pub note: String,
}

impl SignedCheckpoint {
    /// Signs `checkpoint` with the log key under the key name = origin.
    pub fn sign(checkpoint: Checkpoint, key: &LogKey) -> Result<Self, CheckpointError> {
        let note = sign_note(&checkpoint.to_text(), &checkpoint.origin, key)?;
        Ok(SignedCheckpoint { checkpoint, note })
    }

    /// Parses `note` and verifies its signature under `key`, and that its origin is
    /// `origin` (never trusting the origin the note claims).
    pub fn verify(note: &str, key: &PinnedKey, origin: &str) -> Result<Self, CheckpointError> {
        let text = verify_note(note, key)?;
        let checkpoint = Checkpoint::parse_text(&text)?;
        if checkpoint.origin != origin {
            return Err(CheckpointError::WrongOrigin {
                found: checkpoint.origin,
                expected: origin.to_string(),
            });
        }
        Ok(SignedCheckpoint {
            checkpoint,
            note: note.to_string(),
        })
    }

    /// SHA-256 of the complete note: the value anchored on chain.
    pub fn note_hash(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.note.as_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::hash_leaf;

    const ORIGIN: &str = "sworn.example/test";

    #[test]
    fn signed_checkpoint_round_trips_and_pins_origin() {
        let key = LogKey::from_seed([4; 32]);
        let cp = Checkpoint::new(ORIGIN, 12, hash_leaf(b"x"));
        let signed = SignedCheckpoint::sign(cp, &key).unwrap();
        let pinned = key.pinned(ORIGIN).unwrap();
        assert_eq!(
            SignedCheckpoint::verify(&signed.note, &pinned, ORIGIN).unwrap(),
            signed
        );
        assert!(matches!(
            SignedCheckpoint::verify(&signed.note, &pinned, "sworn.example/other"),
            Err(CheckpointError::WrongOrigin { .. })
        ));
    }

    #[test]
    fn malformed_text_is_refused() {
        let root = hash_leaf(b"x").to_base64();
        for bad in [
            String::new(),
            "o\n1\n".to_string(),
            format!("o\n01\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n1\nAAAA\n".to_string(),
            format!("\n1\n{root}\n"),
            format!("o\n1\n{root}"),
            format!("o\n1\n{root}\n\n"),
        ] {
            assert!(Checkpoint::parse_text(&bad).is_err(), "{bad:?}");
        }
        assert!(Checkpoint::parse_text(&format!("o\n0\n{root}\n")).is_ok());
    }

    /// An operator could hide a claim no monitor audits in an extension line; the strict
    /// format has none, so a fourth line is refused, however harmless it looks.
    #[test]
    fn extension_lines_are_refused() {
        let root = hash_leaf(b"x").to_base64();
        for (text, count) in [
            (format!("o\n0\n{root}\next\n"), 1),
            (format!("o\n5\n{root}\nbatch 7\nwitness x\n"), 2),
        ] {
            assert_eq!(
                Checkpoint::parse_text(&text),
                Err(CheckpointError::ExtensionLines { count })
            );
        }
    }
}
