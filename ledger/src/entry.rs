//! Log entries: signed canonical bodies of two kinds — receipts and erasure events — and
//! the receipt bundle handed to clients.
//!
//! An entry's identity is its leaf hash `SHA-256(0x00 ‖ body bytes)`, never its signature
//! (Ed25519 signatures are malleable across implementations). Verification recomputes the
//! leaf hash from the body, parses the body strictly, checks its index and origin against
//! what the verifier expects, and checks the signature with `verify_strict` under a pinned
//! key only.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::commitment::Salt;
use crate::jcs::{self, JcsError};
use crate::keys::{KeyError, PinnedKey, Signature};
use crate::merkle::{Hash, hash_leaf};
use crate::receipt::{BodyError, ReceiptBody, check_common};

/// Largest receipt bundle JSON accepted from outside.
pub const MAX_RECEIPT_JSON_BYTES: usize = 128 * 1024;

/// Marker for the `kind` member of an erasure event: always `"erasure"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErasureKind {
    /// An erasure event.
    Erasure,
}

/// Which entry an erasure event erased the content of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasedRef {
    /// Index of the erased entry.
    pub index: u64,
    /// Its leaf hash (unchanged by erasure).
    pub leaf_hash: Hash,
}

/// The body of an erasure event: the log's signed statement that the content and salts
/// of one entry were deleted. The erased entry itself stays in the log unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasureBody {
    /// Format version, always 1.
    pub v: u64,
    /// Always `"erasure"`.
    pub kind: ErasureKind,
    /// The log's origin.
    pub log: String,
    /// Position of this event in the log.
    pub index: u64,
    /// When the erasure happened (RFC 3339, UTC, µs).
    pub time: String,
    /// The entry whose content was erased.
    pub erased: ErasedRef,
}

impl ErasureBody {
    /// The canonical bytes (validated first).
    pub fn to_canonical_bytes(&self) -> Result<Vec<u8>, BodyError> {
        check_common(self.v, &self.log, &self.time)?;
        if self.erased.index >= self.index {
            return Err(BodyError::Field {
                field: "erased.index",
                reason: "must be before the erasure event",
            });
        }
        let value = serde_json::to_value(self).map_err(|e| BodyError::Schema {
            reason: e.to_string(),
        })?;
        Ok(jcs::canonicalize(&value)?)
    }
}

/// A parsed entry body of either kind.
// Bodies are parsed one at a time and moved rarely; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryBody {
    /// A prompt/response receipt.
    Receipt(ReceiptBody),
    /// An erasure event.
    Erasure(ErasureBody),
}

impl EntryBody {
    /// Parses canonical body bytes of either kind, refusing any other spelling.
    pub fn parse_canonical(bytes: &[u8]) -> Result<Self, BodyError> {
        if let Some(body) = jcs::parse_typed_canonical(bytes, ReceiptBody::to_canonical_bytes) {
            return Ok(EntryBody::Receipt(body));
        }
        if let Some(body) = jcs::parse_typed_canonical(bytes, ErasureBody::to_canonical_bytes) {
            return Ok(EntryBody::Erasure(body));
        }
        // Neither fast path accepted the bytes: the strict path below names what is wrong.
        let value = jcs::parse_canonical(bytes)?;
        let schema = |e: serde_json::Error| BodyError::Schema {
            reason: e.to_string(),
        };
        let body = match value.get("kind").and_then(|k| k.as_str()) {
            Some("receipt") => EntryBody::Receipt(serde_json::from_value(value).map_err(schema)?),
            Some("erasure") => EntryBody::Erasure(serde_json::from_value(value).map_err(schema)?),
            _ => {
                return Err(BodyError::Field {
                    field: "kind",
                    reason: "must be \"receipt\" or \"erasure\"",
                });
            }
        };
        if body.to_canonical_bytes()? != bytes {
            return Err(BodyError::Jcs(JcsError::NotCanonical));
        }
        Ok(body)
    }

    /// The canonical bytes.
    pub fn to_canonical_bytes(&self) -> Result<Vec<u8>, BodyError> {
        match self {
            EntryBody::Receipt(b) => b.to_canonical_bytes(),
            EntryBody::Erasure(b) => b.to_canonical_bytes(),
        }
    }

    /// The entry's index as the body states it.
    pub fn index(&self) -> u64 {
        match self {
            EntryBody::Receipt(b) => b.index,
            EntryBody::Erasure(b) => b.index,
        }
    }

    /// The origin the body names.
    pub fn log(&self) -> &str {
        match self {
            EntryBody::Receipt(b) => &b.log,
            EntryBody::Erasure(b) => &b.log,
        }
    }
}

/// Why an entry or receipt did not verify.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The body is not a valid canonical v1 body.
    #[error("entry body: {0}")]
    Body(#[from] BodyError),
    /// The body's index differs from the index it is presented at.
    #[error("body says index {body_index}, presented as index {index}")]
    IndexMismatch {
        /// Index in the body.
        body_index: u64,
        /// Index presented.
        index: u64,
    },
    /// The body names another log than the pinned key's.
    #[error("body names log {found:?}, expected {expected:?}")]
    OriginMismatch {
        /// Origin in the body.
        found: String,
        /// Origin of the pinned key.
        expected: String,
    },
    /// The signature does not verify under the pinned key.
    #[error("signature: {0}")]
    Signature(#[from] KeyError),
    /// The leaf hash given does not match the body.
    #[error("leaf hash given does not match the body")]
    LeafHashMismatch,
    /// A receipt was expected but the entry is an erasure event.
    #[error("entry is not a receipt")]
    NotAReceipt,
    /// The receipt JSON is malformed (shape, encodings, size).
    #[error("malformed receipt JSON: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
}

/// An entry as stored: its index, canonical body bytes and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEntry {
    /// Position in the log.
    pub index: u64,
    /// Canonical body bytes.
    pub body: Vec<u8>,
    /// Ed25519 signature over `body` by the log key.
    pub signature: Signature,
}

impl SignedEntry {
    /// `SHA-256(0x00 ‖ body)`.
    pub fn leaf_hash(&self) -> Hash {
        hash_leaf(&self.body)
    }

    /// Verifies the entry under `key` (whose name is the log origin): strict canonical
    /// parse, index and origin match, strict signature. Returns the parsed body.
    pub fn verify(&self, key: &PinnedKey) -> Result<EntryBody, EntryError> {
        let body = self.check_body(key)?;
        key.verify(&self.body, &self.signature)?;
        Ok(body)
    }

    /// [`SignedEntry::verify`] for each entry, in order: the same checks and verdicts, with
    /// the signatures' last step shared (see [`PinnedKey::verify_each`]).
    pub fn verify_each(
        entries: &[SignedEntry],
        key: &PinnedKey,
    ) -> Vec<Result<EntryBody, EntryError>> {
        let mut verdicts: Vec<_> = entries.iter().map(|e| e.check_body(key)).collect();
        let signed = entries
            .iter()
            .zip(&verdicts)
            .filter(|(_, verdict)| verdict.is_ok())
            .map(|(e, _)| (e.body.as_slice(), &e.signature));
        let mut signatures = key.verify_each(signed).into_iter();
        for verdict in verdicts.iter_mut().filter(|v| v.is_ok()) {
            if let Some(Err(e)) = signatures.next() {
                *verdict = Err(e.into());
            }
        }
        verdicts
    }

    /// Everything but the signature: strict canonical parse, index and origin match.
    fn check_body(&self, key: &PinnedKey) -> Result<EntryBody, EntryError> {
        let body = EntryBody::parse_canonical(&self.body)?;
        if body.index() != self.index {
            return Err(EntryError::IndexMismatch {
                body_index: body.index(),
                index: self.index,
            });
        }
        if body.log() != key.name() {
            return Err(EntryError::OriginMismatch {
                found: body.log().to_string(),
                expected: key.name().to_string(),
            });
        }
        Ok(body)
    }
}

/// The salts of a receipt's two commitments (absent once erased).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptSalts {
    /// Salt of the prompt commitment.
    pub prompt: Salt,
    /// Salt of the response commitment.
    pub response: Salt,
}

/// What a client receives for one request: the signed entry, its parsed body, its leaf
/// hash and, unless erased, the salts that open its commitments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The signed entry.
    pub entry: SignedEntry,
    /// The parsed body.
    pub body: ReceiptBody,
    /// `SHA-256(0x00 ‖ body)`.
    pub leaf_hash: Hash,
    /// The commitment salts, `None` after erasure.
    pub salts: Option<ReceiptSalts>,
}

/// JSON form of a [`Receipt`] (the `"sworn"` field of API responses). Hashes are lowercase
/// hex, the signature standard base64, and `body` the canonical body as a JSON string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptJson {
    /// Bundle format version, 1.
    pub v: u64,
    /// Log origin.
    pub log: String,
    /// Position in the log.
    pub index: u64,
    /// Leaf hash, hex.
    pub leaf_hash: Hash,
    /// Canonical body text.
    pub body: String,
    /// Signature over the body bytes, base64.
    pub signature: String,
    /// Commitment salts, `null` after erasure.
    pub salts: Option<ReceiptSalts>,
}

impl Receipt {
    /// The JSON bundle form.
    pub fn to_json(&self) -> ReceiptJson {
        ReceiptJson {
            v: 1,
            log: self.body.log.clone(),
            index: self.entry.index,
            leaf_hash: self.leaf_hash,
            body: String::from_utf8_lossy(&self.entry.body).into_owned(),
            signature: BASE64.encode(self.entry.signature.to_bytes()),
            salts: self.salts,
        }
    }

    /// Parses a JSON bundle and verifies it under `key`: the body strictly, the leaf hash
    /// recomputed, the index and origin, and the signature.
    pub fn verify_json(bytes: &[u8], key: &PinnedKey) -> Result<Receipt, EntryError> {
        Self::verify_bundle(&Self::parse_json(bytes)?, key)
    }

    /// Verifies an already-parsed JSON bundle under `key`.
    pub fn verify_bundle(json: &ReceiptJson, key: &PinnedKey) -> Result<Receipt, EntryError> {
        let (entry, leaf_hash) = Self::unpack(json)?;
        let body = entry.verify(key)?;
        Self::assemble(json, entry, leaf_hash, body)
    }

    /// [`Receipt::verify_json`] for each bundle, in order: the same checks and verdicts, with
    /// the signatures' last step shared (see [`PinnedKey::verify_each`]). For verifying
    /// receipts in bulk.
    pub fn verify_json_each<'a, I>(bundles: I, key: &PinnedKey) -> Vec<Result<Receipt, EntryError>>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut entries = Vec::new();
        let unpacked: Vec<Result<(ReceiptJson, Hash), EntryError>> = bundles
            .into_iter()
            .map(|bytes| {
                let json = Self::parse_json(bytes)?;
                let (entry, leaf_hash) = Self::unpack(&json)?;
                entries.push(entry);
                Ok((json, leaf_hash))
            })
            .collect();
        let verdicts = SignedEntry::verify_each(&entries, key);
        let mut verified = entries.into_iter().zip(verdicts);
        unpacked
            .into_iter()
            .map(|u| {
                let (json, leaf_hash) = u?;
                let (entry, verdict) = verified.next().ok_or_else(|| EntryError::Malformed {
                    reason: "internal: an entry without a verdict".into(),
                })?;
                Self::assemble(&json, entry, leaf_hash, verdict?)
            })
            .collect()
    }

    fn parse_json(bytes: &[u8]) -> Result<ReceiptJson, EntryError> {
        if bytes.len() > MAX_RECEIPT_JSON_BYTES {
            return Err(EntryError::Malformed {
                reason: format!(
                    "{} bytes, over the cap of {MAX_RECEIPT_JSON_BYTES}",
                    bytes.len()
                ),
            });
        }
        serde_json::from_slice(bytes).map_err(|e| EntryError::Malformed {
            reason: e.to_string(),
        })
    }

    /// The bundle's signed entry and its recomputed leaf hash, checked against the claimed one.
    fn unpack(json: &ReceiptJson) -> Result<(SignedEntry, Hash), EntryError> {
        let malformed = |reason: &str| EntryError::Malformed {
            reason: reason.to_string(),
        };
        if json.v != 1 {
            return Err(malformed("unsupported bundle version"));
        }
        let sig_bytes: [u8; 64] = BASE64
            .decode(&json.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("signature is not base64 of 64 bytes"))?;
        let entry = SignedEntry {
            index: json.index,
            body: json.body.as_bytes().to_vec(),
            signature: Signature::from_bytes(&sig_bytes),
        };
        let leaf_hash = entry.leaf_hash();
        if leaf_hash != json.leaf_hash {
            return Err(EntryError::LeafHashMismatch);
        }
        Ok((entry, leaf_hash))
    }

    /// The receipt from a verified entry, once its body is a receipt of the bundle's log.
    fn assemble(
        json: &ReceiptJson,
        entry: SignedEntry,
        leaf_hash: Hash,
        body: EntryBody,
    ) -> Result<Receipt, EntryError> {
        let EntryBody::Receipt(body) = body else {
            return Err(EntryError::NotAReceipt);
        };
        if body.log != json.log {
            return Err(EntryError::OriginMismatch {
                found: json.log.clone(),
                expected: body.log,
            });
        }
        Ok(Receipt {
            entry,
            body,
            leaf_hash,
            salts: json.salts,
        })
    }
}
