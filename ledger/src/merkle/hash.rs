//! SHA-256 tree hashing with RFC 9162's domain separation: leaves and interior nodes are
//! hashed under different one-byte prefixes so that no interior node can be passed off as
//! a leaf (second-preimage resistance, RFC 6962 §2.1).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Prefix of a leaf hash: `SHA-256(0x00 ‖ leaf bytes)`.
pub const LEAF_PREFIX: u8 = 0x00;
/// Prefix of an interior node hash: `SHA-256(0x01 ‖ left ‖ right)`.
pub const NODE_PREFIX: u8 = 0x01;
/// Length in bytes of every hash in the tree.
pub const HASH_LEN: usize = 32;

/// A 32-byte SHA-256 value: a leaf hash, a node hash or a tree root.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; HASH_LEN]);

/// A byte string that was meant to be a hash but was not 32 bytes long, or not valid hex /
/// base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashDecodeError {
    /// The decoded value is not exactly 32 bytes.
    #[error("hash must be {HASH_LEN} bytes, got {len}")]
    WrongLength {
        /// Length received.
        len: usize,
    },
    /// The text is not lowercase hex of 64 characters.
    #[error("hash is not 64 lowercase hex characters")]
    BadHex,
    /// The text is not standard padded base64.
    #[error("hash is not standard base64")]
    BadBase64,
}

impl Hash {
    /// The hash as a byte array.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Builds a hash from a slice, refusing any length but 32.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, HashDecodeError> {
        let arr: [u8; HASH_LEN] = bytes
            .try_into()
            .map_err(|_| HashDecodeError::WrongLength { len: bytes.len() })?;
        Ok(Hash(arr))
    }

    /// Lowercase hex (64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 lowercase hex characters (uppercase is refused so that every hash
    /// has one spelling).
    pub fn from_hex(text: &str) -> Result<Self, HashDecodeError> {
        if text.len() != 2 * HASH_LEN || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(HashDecodeError::BadHex);
        }
        let bytes = hex::decode(text).map_err(|_| HashDecodeError::BadHex)?;
        Self::from_slice(&bytes)
    }

    /// Standard padded base64 (the encoding of checkpoint roots).
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// Parses standard padded base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, HashDecodeError> {
        let bytes = BASE64
            .decode(text)
            .map_err(|_| HashDecodeError::BadBase64)?;
        Self::from_slice(&bytes)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Hash::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// `SHA-256(0x00 ‖ data)`: the hash of one log entry.
pub fn hash_leaf(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(data);
    Hash(hasher.finalize().into())
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn hash_node(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash(hasher.finalize().into())
}

/// `SHA-256("")`: the root of the empty tree.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn leaf_and_node_prefixes_differ() {
        let a = hash_leaf(b"a");
        let b = hash_leaf(b"b");
        let mut concat = Vec::new();
        concat.extend_from_slice(&a.0);
        concat.extend_from_slice(&b.0);
        // The same 64 bytes hashed as a leaf must not equal the node over them.
        assert_ne!(hash_leaf(&concat), hash_node(&a, &b));
    }

    #[test]
    fn hex_refuses_uppercase_and_wrong_length() {
        let h = hash_leaf(b"x");
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        assert_eq!(
            Hash::from_hex(&h.to_hex().to_uppercase()),
            Err(HashDecodeError::BadHex)
        );
        assert_eq!(Hash::from_hex("00"), Err(HashDecodeError::BadHex));
        assert_eq!(
            Hash::from_base64("AAAA"),
            Err(HashDecodeError::WrongLength { len: 3 })
        );
    }
}
