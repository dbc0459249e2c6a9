//! Salted, domain-separated commitments to prompt and response content.
//!
//! `commitment = SHA-256(domain ‖ 0x00 ‖ salt₃₂ ‖ canonical content)` with domain
//! `sworn/v1/prompt` or `sworn/v1/response`. The receipt carries only the commitment; the
//! salt (32 random bytes per record) is kept with the content and given to the client.
//! Without the salt a low-entropy prompt cannot be confirmed by guessing; erasing content
//! and salt leaves the log and every proof intact.
//!
//! "Canonical content" is decided by the caller (the service passes the RFC 8785 bytes of
//! the chat messages array, or of the prompt string); this module only hashes bytes.

use std::fmt;

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::merkle::HashDecodeError;

/// Length of a salt in bytes.
pub const SALT_LEN: usize = 32;

/// What a commitment commits to; each domain has its own hash prefix so a prompt
/// commitment can never be presented as a response commitment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// The request's prompt (the canonical messages array or prompt string).
    Prompt,
    /// The generated response text.
    Response,
}

impl Domain {
    /// The domain label hashed before the separator byte.
    pub fn label(self) -> &'static [u8] {
        match self {
            Domain::Prompt => b"sworn/v1/prompt",
            Domain::Response => b"sworn/v1/response",
        }
    }
}

/// A per-record random salt. Its `Debug` form is redacted: it unlocks the commitment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Salt(pub [u8; SALT_LEN]);

impl Salt {
    /// A fresh salt from the operating system's generator.
    pub fn random() -> Self {
        let mut bytes = [0u8; SALT_LEN];
        OsRng.fill_bytes(&mut bytes);
        Salt(bytes)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lowercase hex characters.
    pub fn from_hex(text: &str) -> Result<Self, HashDecodeError> {
        crate::merkle::Hash::from_hex(text).map(|h| Salt(h.0))
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Salt(<redacted>)")
    }
}

impl Serialize for Salt {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Salt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Salt::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// A 32-byte commitment, written as lowercase hex in receipt bodies.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Commitment(pub [u8; 32]);

impl Commitment {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lowercase hex characters.
    pub fn from_hex(text: &str) -> Result<Self, HashDecodeError> {
        crate::merkle::Hash::from_hex(text).map(|h| Commitment(h.0))
    }
}

impl fmt::Debug for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Commitment({})", self.to_hex())
    }
}

impl Serialize for Commitment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Commitment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Commitment::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// `SHA-256(domain ‖ 0x00 ‖ salt ‖ content)`.
pub fn commit(domain: Domain, salt: &Salt, content: &[u8]) -> Commitment {
    let mut hasher = Sha256::new();
    hasher.update(domain.label());
    hasher.update([0u8]);
    hasher.update(salt.0);
    hasher.update(content);
    Commitment(hasher.finalize().into())
}

/// Whether `content` with `salt` opens `commitment` in `domain`.
pub fn opens(commitment: &Commitment, domain: Domain, salt: &Salt, content: &[u8]) -> bool {
    commit(domain, salt, content) == *commitment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_salts_and_content_all_change_the_commitment() {
        let salt = Salt([7; 32]);
        let c = commit(Domain::Prompt, &salt, b"hello");
        assert!(opens(&c, Domain::Prompt, &salt, b"hello"));
        assert!(!opens(&c, Domain::Response, &salt, b"hello"));
        assert!(!opens(&c, Domain::Prompt, &Salt([8; 32]), b"hello"));
        assert!(!opens(&c, Domain::Prompt, &salt, b"hellp"));
    }

    #[test]
    fn salt_debug_is_redacted_and_random_salts_differ() {
        assert_eq!(format!("{:?}", Salt([1; 32])), "Salt(<redacted>)");
        assert_ne!(Salt::random(), Salt::random());
    }
}
