//! The v1 receipt body: what the log swears to about one request.
//!
//! The body is JSON in RFC 8785 canonical form (see [`crate::jcs`]); its bytes are what the
//! log signs and what the leaf hash covers. No floats: sampling parameters are recorded as
//! the decimal strings that were applied. Parsing is strict — unknown fields, missing
//! fields, non-canonical bytes and out-of-bounds values are all typed errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

use crate::commitment::Commitment;
use crate::jcs::{self, JcsError};

/// The body format version this crate writes and reads.
pub const BODY_VERSION: u64 = 1;
/// Longest free-text field (origin, tenant, model fields, finish reason, parameter values).
pub const MAX_FIELD_LEN: usize = 256;
/// Longest request id; ids are `[A-Za-z0-9._:-]`, used as keys and in URLs.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// Most sampling parameters recorded in one body.
pub const MAX_PARAMS: usize = 64;
/// Longest parameter name.
pub const MAX_PARAM_NAME_LEN: usize = 64;

/// Receipt times: RFC 3339, UTC, microseconds, `Z` suffix.
const TIME_FORMAT: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Why a body is not a valid v1 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The bytes are not canonical JSON within the caps.
    #[error("body is not canonical JSON: {0}")]
    Jcs(#[from] JcsError),
    /// The JSON does not have the v1 shape (missing or unknown field, wrong type).
    #[error("body does not match the v1 schema: {reason}")]
    Schema {
        /// serde's message.
        reason: String,
    },
    /// A field has a value outside its bounds.
    #[error("body field `{field}` is invalid: {reason}")]
    Field {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Marker for the `kind` member of a receipt body: always `"receipt"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptKind {
    /// A prompt/response receipt.
    Receipt,
}

/// The model that produced the response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// Model id as served (e.g. `SmolLM2-135M-Instruct`).
    pub id: String,
    /// SHA-256 of the weights file, lowercase hex.
    pub sha256: String,
    /// Compute dtype (`bf16`, `f32`, …).
    pub dtype: String,
    /// Device (`cpu`, `cuda:0`, …).
    pub device: String,
    /// Sworn engine version.
    pub engine: String,
    /// libtorch version.
    pub libtorch: String,
}

/// One applied sampling parameter: an integer, a boolean, or a decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// An integer (within ±(2^53 − 1)).
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A string, e.g. a decimal such as `"0.7"`.
    Str(String),
}

/// The prompt side of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptInfo {
    /// Salted commitment to the canonical prompt content.
    pub commitment: Commitment,
    /// Prompt length in tokens.
    pub tokens: u64,
}

/// The response side of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseInfo {
    /// Salted commitment to the response content.
    pub commitment: Commitment,
    /// Generated tokens.
    pub tokens: u64,
    /// Why generation stopped (`stop`, `length`, …).
    pub finish_reason: String,
}

/// The v1 receipt body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    /// Format version, always 1.
    pub v: u64,
    /// Always `"receipt"`; erasure events carry `"erasure"`.
    pub kind: ReceiptKind,
    /// The log's origin.
    pub log: String,
    /// Position of this entry in the log.
    pub index: u64,
    /// When the entry was appended (RFC 3339, UTC, µs).
    pub time: String,
    /// The request id.
    pub request_id: String,
    /// The tenant (API key id, never the key).
    pub tenant: String,
    /// The model.
    pub model: ModelInfo,
    /// Sampling parameters as applied, after defaults.
    pub params: BTreeMap<String, ParamValue>,
    /// Prompt commitment and size.
    pub prompt: PromptInfo,
    /// Response commitment, size and finish reason.
    pub response: ResponseInfo,
}

/// Formats a time as receipts write it (UTC, microseconds). Times before year 0 or after
/// 9999 cannot be written and give `None`.
pub fn format_time(t: OffsetDateTime) -> Option<String> {
    let utc = t.to_offset(time::UtcOffset::UTC);
    let micros = utc.microsecond();
    let truncated = utc.replace_microsecond(micros).ok()?;
    if !(0..=9999).contains(&truncated.year()) {
        return None;
    }
    truncated.format(TIME_FORMAT).ok()
}

/// Whether `text` is a receipt time in its one canonical spelling.
pub fn is_valid_time(text: &str) -> bool {
    time::PrimitiveDateTime::parse(text, TIME_FORMAT)
        .ok()
        .and_then(|t| format_time(t.assume_utc()))
        .is_some_and(|again| again == text)
}

/// Request ids: 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

pub(crate) fn check_text(
    field: &'static str,
    value: &str,
    allow_empty: bool,
) -> Result<(), BodyError> {
    if value.len() > MAX_FIELD_LEN {
        return Err(BodyError::Field {
            field,
            reason: "longer than 256 bytes",
        });
    }
    if !allow_empty && value.is_empty() {
        return Err(BodyError::Field {
            field,
            reason: "empty",
        });
    }
    if value.chars().any(char::is_control) {
        return Err(BodyError::Field {
            field,
            reason: "contains a control character",
        });
    }
    Ok(())
}

pub(crate) fn check_common(v: u64, log: &str, time: &str) -> Result<(), BodyError> {
    if v != BODY_VERSION {
        return Err(BodyError::Field {
            field: "v",
            reason: "unsupported version",
        });
    }
    if !crate::keys::valid_key_name(log) {
        return Err(BodyError::Field {
            field: "log",
            reason: "not a valid origin",
        });
    }
    if !is_valid_time(time) {
        return Err(BodyError::Field {
            field: "time",
            reason: "not RFC 3339 UTC with 6 fractional digits and Z",
        });
    }
    Ok(())
}

impl ReceiptBody {
    /// Checks every field against its bounds.
    pub fn validate(&self) -> Result<(), BodyError> {
        check_common(self.v, &self.log, &self.time)?;
        if !is_valid_request_id(&self.request_id) {
            return Err(BodyError::Field {
                field: "request_id",
                reason: "must be 1-128 characters of [A-Za-z0-9._:-]",
            });
        }
        check_text("tenant", &self.tenant, false)?;
        check_text("model.id", &self.model.id, false)?;
        let sha_ok = self.model.sha256.len() == 64
            && self
                .model
                .sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !sha_ok {
            return Err(BodyError::Field {
                field: "model.sha256",
                reason: "must be 64 lowercase hex characters",
            });
        }
        check_text("model.dtype", &self.model.dtype, false)?;
        check_text("model.device", &self.model.device, false)?;
        check_text("model.engine", &self.model.engine, false)?;
        check_text("model.libtorch", &self.model.libtorch, true)?;
        check_text(
            "response.finish_reason",
            &self.response.finish_reason,
            false,
        )?;
        if self.params.len() > MAX_PARAMS {
            return Err(BodyError::Field {
                field: "params",
                reason: "more than 64 parameters",
            });
        }
        for (name, value) in &self.params {
            if name.is_empty()
                || name.len() > MAX_PARAM_NAME_LEN
                || name.chars().any(char::is_control)
            {
                return Err(BodyError::Field {
                    field: "params",
                    reason: "parameter name empty, longer than 64 bytes or with control characters",
                });
            }
            if let ParamValue::Str(s) = value {
                check_text("params", s, true)?;
            }
        }
        Ok(())
    }

    /// The canonical bytes (validated first): what is signed and leaf-hashed.
    pub fn to_canonical_bytes(&self) -> Result<Vec<u8>, BodyError> {
        self.validate()?;
        let value = serde_json::to_value(self).map_err(|e| BodyError::Schema {
            reason: e.to_string(),
        })?;
        Ok(jcs::canonicalize(&value)?)
    }

    /// The canonical bytes after the leading `{"index":N`, computed once so that the log
    /// writer only has to prepend the index it assigns ([`ReceiptBody::splice_index`]).
    /// `index` is the first member in canonical order, so this is exact.
    pub fn canonical_tail(&self) -> Result<Vec<u8>, BodyError> {
        let bytes = self.to_canonical_bytes()?;
        let prefix = format!("{{\"index\":{}", self.index);
        bytes
            .strip_prefix(prefix.as_bytes())
            .map(<[u8]>::to_vec)
            .ok_or(BodyError::Field {
                field: "index",
                reason: "is not the first member",
            })
    }

    /// Canonical bytes of the body with `index`, from a tail made by
    /// [`ReceiptBody::canonical_tail`] (same bytes as setting `index` and calling
    /// [`ReceiptBody::to_canonical_bytes`]).
    pub fn splice_index(index: u64, tail: &[u8]) -> Vec<u8> {
        let digits = index.to_string();
        let mut out = Vec::with_capacity(9 + digits.len() + tail.len());
        out.extend_from_slice(b"{\"index\":");
        out.extend_from_slice(digits.as_bytes());
        out.extend_from_slice(tail);
        out
    }

    /// Parses canonical bytes, refusing any other spelling of the same body.
    pub fn parse_canonical(bytes: &[u8]) -> Result<Self, BodyError> {
        if let Some(body) = jcs::parse_typed_canonical(bytes, Self::to_canonical_bytes) {
            return Ok(body);
        }
        // The fast path failed: the strict path below names what is wrong.
        let value = jcs::parse_canonical(bytes)?;
        let body: ReceiptBody = serde_json::from_value(value).map_err(|e| BodyError::Schema {
            reason: e.to_string(),
        })?;
        // Serialising again must give the same bytes (e.g. no integer spelled two ways).
        if body.to_canonical_bytes()? != bytes {
            return Err(BodyError::Jcs(JcsError::NotCanonical));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> ReceiptBody {
        let mut params = BTreeMap::new();
        params.insert("temperature".into(), ParamValue::Str("0.7".into()));
        params.insert("max_tokens".into(), ParamValue::Int(64));
        params.insert("stream".into(), ParamValue::Bool(false));
        ReceiptBody {
            v: 1,
            kind: ReceiptKind::Receipt,
            log: "sworn.example/test".into(),
            index: 5,
            time: "2026-01-02T03:04:05.123456Z".into(),
            request_id: "req-1".into(),
            tenant: "team-a".into(),
            model: ModelInfo {
                id: "SmolLM2-135M-Instruct".into(),
                sha256: "ab".repeat(32),
                dtype: "f32".into(),
                device: "cpu".into(),
                engine: "sworn 0.1.0".into(),
                libtorch: "2.11.0".into(),
            },
            params,
            prompt: PromptInfo {
                commitment: Commitment([1; 32]),
                tokens: 10,
            },
            response: ResponseInfo {
                commitment: Commitment([2; 32]),
                tokens: 20,
                finish_reason: "stop".into(),
            },
        }
    }

    #[test]
    fn canonical_round_trip() {
        let body = sample();
        let bytes = body.to_canonical_bytes().unwrap();
        assert!(bytes.starts_with(b"{\"index\":5,\"kind\":\"receipt\",\"log\":"));
        assert_eq!(ReceiptBody::parse_canonical(&bytes).unwrap(), body);
    }

    #[test]
    fn floats_unknown_fields_and_bad_values_are_refused() {
        let bytes = String::from_utf8(sample().to_canonical_bytes().unwrap()).unwrap();
        let float = bytes.replace("\"max_tokens\":64", "\"max_tokens\":64.5");
        assert!(matches!(
            ReceiptBody::parse_canonical(float.as_bytes()),
            Err(BodyError::Jcs(JcsError::FloatRefused { .. }))
        ));
        let extra = bytes.replacen("{\"index\"", "{\"extra\":1,\"index\"", 1);
        assert!(matches!(
            ReceiptBody::parse_canonical(extra.as_bytes()),
            Err(BodyError::Schema { .. })
        ));
        let mut bad = sample();
        bad.time = "2026-01-02T03:04:05Z".into();
        assert!(matches!(
            bad.to_canonical_bytes(),
            Err(BodyError::Field { field: "time", .. })
        ));
        let mut bad = sample();
        bad.request_id = "has space".into();
        assert!(matches!(
            bad.to_canonical_bytes(),
            Err(BodyError::Field {
                field: "request_id",
                ..
            })
        ));
        let mut bad = sample();
        bad.v = 2;
        assert!(bad.to_canonical_bytes().is_err());
    }

    #[test]
    fn spliced_index_gives_the_canonical_bytes() {
        let mut body = sample();
        let tail = body.canonical_tail().unwrap();
        for index in [0, 1, 9, 10, 12345, crate::jcs::MAX_SAFE_INTEGER] {
            body.index = index;
            assert_eq!(
                ReceiptBody::splice_index(index, &tail),
                body.to_canonical_bytes().unwrap()
            );
        }
    }

    #[test]
    fn time_has_one_spelling() {
        assert!(is_valid_time("2026-01-02T03:04:05.000000Z"));
        assert!(!is_valid_time("2026-01-02T03:04:05.000000+00:00"));
        assert!(!is_valid_time("2026-01-02t03:04:05.000000Z"));
        assert!(!is_valid_time("2026-02-30T03:04:05.000000Z"));
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        assert_eq!(format_time(t).unwrap(), "2023-11-14T22:13:20.123456Z");
    }
}
