//! C2SP `signed-note`: a UTF-8 text ending in a newline, a blank line, then one signature
//! line per signer: `— <key name> <base64(key id₄ ‖ signature)>`.
//!
//! Verification follows the spec's rules: signatures from keys we do not pin are ignored;
//! a signature from the pinned key (same name and key id) that fails rejects the note; a
//! note that no pinned key verifies is rejected. The note must contain no control
//! characters other than newline.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::keys::{LogKey, PinnedKey, Signature, note_key_id, valid_key_name};

/// Largest note accepted. A checkpoint with a few cosignatures is well under 1 KiB.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;
/// Most signature lines accepted (the spec asks verifiers to accept at least 16).
pub const MAX_NOTE_SIGNATURES: usize = 64;
/// Marker that starts a signature line: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note could not be parsed, signed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The note is larger than [`MAX_NOTE_BYTES`].
    #[error("note is {len} bytes, over the cap of {max}")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The note contains a control character other than newline.
    #[error("note contains a control character")]
    ControlCharacter,
    /// The text is empty or does not end with a newline.
    #[error("note text must be non-empty and end with a newline")]
    BadText,
    /// There is no blank line separating text and signatures, or no signature.
    #[error("note has no signature block")]
    NoSignatures,
    /// More signature lines than [`MAX_NOTE_SIGNATURES`].
    #[error("note has more than {max} signatures")]
    TooManySignatures {
        /// The cap.
        max: usize,
    },
    /// A signature line is not `— name base64`.
    #[error("signature line {line} is malformed")]
    BadSignatureLine {
        /// 1-based position among the signature lines.
        line: usize,
    },
    /// The signing key's name is not a valid key name.
    #[error("key name is not valid in a signed note")]
    BadKeyName,
    /// The pinned key signed the note, but the signature does not verify.
    #[error("the pinned key's signature does not verify")]
    BadSignature,
    /// No signature from the pinned key.
    #[error("no signature from the pinned key {name}")]
    NotSignedByPinnedKey {
        /// Name of the pinned key.
        name: String,
    },
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name as written.
    pub name: String,
    /// Key id (first four bytes of the signature blob).
    pub key_id: [u8; 4],
    /// The signature bytes after the key id (64 for Ed25519, other lengths for other types).
    pub signature: Vec<u8>,
}

/// A note split into its text and signature lines; nothing is verified yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending with a newline.
    pub text: String,
    /// Every signature line, in order.
    pub signatures: Vec<NoteSignature>,
}

/// Signs `text` (which must end with a newline) as `name` with `key`, returning the
/// complete signed note.
pub fn sign_note(text: &str, name: &str, key: &LogKey) -> Result<String, NoteError> {
    check_text(text)?;
    if !valid_key_name(name) {
        return Err(NoteError::BadKeyName);
    }
    let key_id = note_key_id(name, &key.public_key_bytes());
    let signature = key.sign(text.as_bytes());
    let mut blob = Vec::with_capacity(68);
    blob.extend_from_slice(&key_id);
    blob.extend_from_slice(&signature.to_bytes());
    let note = format!("{text}\n{SIG_PREFIX}{name} {}\n", BASE64.encode(blob));
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge {
            len: note.len(),
            max: MAX_NOTE_BYTES,
        });
    }
    Ok(note)
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(NoteError::BadText);
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::ControlCharacter);
    }
    Ok(())
}

/// Splits a signed note into text and signature lines, checking its shape and caps.
pub fn parse_note(note: &str) -> Result<Note, NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge {
            len: note.len(),
            max: MAX_NOTE_BYTES,
        });
    }
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::ControlCharacter);
    }
    let split = note.rfind("\n\n").ok_or(NoteError::NoSignatures)?;
    let text = &note[..split + 1];
    let block = &note[split + 2..];
    check_text(text)?;
    let Some(block) = block.strip_suffix('\n') else {
        return Err(NoteError::NoSignatures);
    };
    if block.is_empty() {
        return Err(NoteError::NoSignatures);
    }
    let mut signatures = Vec::new();
    for (i, line) in block.split('\n').enumerate() {
        if signatures.len() == MAX_NOTE_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                max: MAX_NOTE_SIGNATURES,
            });
        }
        let bad = NoteError::BadSignatureLine { line: i + 1 };
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(bad.clone())?;
        let (name, b64) = rest.split_once(' ').ok_or(bad.clone())?;
        if !valid_key_name(name) {
            return Err(bad);
        }
        let blob = BASE64.decode(b64).map_err(|_| bad.clone())?;
        if blob.len() < 5 {
            return Err(bad);
        }
        let key_id = [blob[0], blob[1], blob[2], blob[3]];
        signatures.push(NoteSignature {
            name: name.to_string(),
            key_id,
            signature: blob[4..].to_vec(),
        });
    }
    Ok(Note {
        text: text.to_string(),
        signatures,
    })
}

/// Parses `note` and verifies it under `key`, returning the signed text.
pub fn verify_note(note: &str, key: &PinnedKey) -> Result<String, NoteError> {
    let parsed = parse_note(note)?;
    let mut verified = false;
    for sig in &parsed.signatures {
        if sig.name != key.name() || sig.key_id != key.key_id() {
            continue; // Unknown signers are ignored (C2SP signed-note).
        }
        let bytes: [u8; 64] = sig
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| NoteError::BadSignature)?;
        key.verify(parsed.text.as_bytes(), &Signature::from_bytes(&bytes))
            .map_err(|_| NoteError::BadSignature)?;
        verified = true;
    }
    if verified {
        Ok(parsed.text)
    } else {
        Err(NoteError::NotSignedByPinnedKey {
            name: key.name().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "sworn.example/test";

    fn key() -> LogKey {
        LogKey::from_seed([9; 32])
    }

    #[test]
    fn signed_note_verifies_and_ignores_unknown_signers() {
        let text = "hello\nworld\n";
        let note = sign_note(text, NAME, &key()).unwrap();
        let pinned = key().pinned(NAME).unwrap();
        assert_eq!(verify_note(&note, &pinned).unwrap(), text);
        // A second, unknown signer is ignored.
        let other = sign_note(text, "other.example", &LogKey::from_seed([1; 32])).unwrap();
        let other_line = other.rsplit_once("\n\n").unwrap().1;
        let cosigned = format!("{note}{other_line}");
        assert_eq!(verify_note(&cosigned, &pinned).unwrap(), text);
        // Only the unknown signer: rejected.
        let other_pinned = LogKey::from_seed([2; 32]).pinned(NAME).unwrap();
        assert!(matches!(
            verify_note(&note, &other_pinned),
            Err(NoteError::NotSignedByPinnedKey { .. })
        ));
    }

    #[test]
    fn tampered_text_or_signature_is_rejected() {
        let note = sign_note("a\n", NAME, &key()).unwrap();
        let pinned = key().pinned(NAME).unwrap();
        let tampered = note.replacen("a\n", "b\n", 1);
        assert_eq!(
            verify_note(&tampered, &pinned),
            Err(NoteError::BadSignature)
        );
        assert!(verify_note(&note.replace('\n', "\r\n"), &pinned).is_err());
        assert_eq!(parse_note("a\n"), Err(NoteError::NoSignatures));
        assert_eq!(parse_note("a\n\n"), Err(NoteError::NoSignatures));
        assert!(matches!(
            parse_note("a\n\n- x AAAAAAA=\n"),
            Err(NoteError::BadSignatureLine { line: 1 })
        ));
    }
}
