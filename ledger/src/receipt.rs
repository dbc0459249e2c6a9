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

/// Appends the compact JSON of `value` (for strings: RFC 8785's escaping).
fn put<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Option<()> {
    serde_json::to_writer(out, value).ok()
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

/// A receipt time as microseconds since the Unix epoch, if `text` is one in its canonical
/// spelling (what [`time_from_micros`] gives back).
pub(crate) fn time_micros(text: &str) -> Option<i64> {
    let t = time::PrimitiveDateTime::parse(text, TIME_FORMAT)
        .ok()?
        .assume_utc();
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

/// The receipt time `micros` after the Unix epoch.
pub(crate) fn time_from_micros(micros: i64) -> Option<String> {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).ok()?;
    format_time(t)
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
        if let Some(bytes) = self.write_canonical_direct() {
            return Ok(bytes);
        }
        let value = serde_json::to_value(self).map_err(|e| BodyError::Schema {
            reason: e.to_string(),
        })?;
        Ok(jcs::canonicalize(&value)?)
    }

    /// The canonical bytes written member by member in canonical order, without building
    /// a JSON value: the common case, on every append and every verification. `None` when
    /// the general path must decide (an integer past ±(2^53 − 1), which it refuses, or a
    /// non-ASCII parameter name, whose UTF-16 order it computes). serde_json escapes strings
    /// exactly as RFC 8785 does; a property test holds this writer to the general path.
    fn write_canonical_direct(&self) -> Option<Vec<u8>> {
        let safe = |n: u64| n <= jcs::MAX_SAFE_INTEGER;
        let params_plain = self.params.iter().all(|(name, value)| {
            name.is_ascii()
                && match value {
                    ParamValue::Int(i) => safe(i.unsigned_abs()),
                    ParamValue::Bool(_) | ParamValue::Str(_) => true,
                }
        });
        if !(params_plain
            && safe(self.v)
            && safe(self.index)
            && safe(self.prompt.tokens)
            && safe(self.response.tokens))
        {
            return None;
        }
        let mut out = Vec::with_capacity(1024);
        let m = &self.model;
        out.extend_from_slice(b"{\"index\":");
        out.extend_from_slice(self.index.to_string().as_bytes());
        out.extend_from_slice(b",\"kind\":\"receipt\",\"log\":");
        put(&mut out, &self.log)?;
        out.extend_from_slice(b",\"model\":{\"device\":");
        put(&mut out, &m.device)?;
        out.extend_from_slice(b",\"dtype\":");
        put(&mut out, &m.dtype)?;
        out.extend_from_slice(b",\"engine\":");
        put(&mut out, &m.engine)?;
        out.extend_from_slice(b",\"id\":");
        put(&mut out, &m.id)?;
        out.extend_from_slice(b",\"libtorch\":");
        put(&mut out, &m.libtorch)?;
        out.extend_from_slice(b",\"sha256\":");
        put(&mut out, &m.sha256)?;
        out.extend_from_slice(b"},\"params\":{");
        // ASCII names: byte order is UTF-16 order, and BTreeMap iterates in byte order.
        for (i, (name, value)) in self.params.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put(&mut out, name)?;
            out.push(b':');
            put(&mut out, value)?;
        }
        out.extend_from_slice(b"},\"prompt\":{\"commitment\":");
        put(&mut out, &self.prompt.commitment)?;
        out.extend_from_slice(b",\"tokens\":");
        out.extend_from_slice(self.prompt.tokens.to_string().as_bytes());
        out.extend_from_slice(b"},\"request_id\":");
        put(&mut out, &self.request_id)?;
        out.extend_from_slice(b",\"response\":{\"commitment\":");
        put(&mut out, &self.response.commitment)?;
        out.extend_from_slice(b",\"finish_reason\":");
        put(&mut out, &self.response.finish_reason)?;
        out.extend_from_slice(b",\"tokens\":");
        out.extend_from_slice(self.response.tokens.to_string().as_bytes());
        out.extend_from_slice(b"},\"tenant\":");
        put(&mut out, &self.tenant)?;
        out.extend_from_slice(b",\"time\":");
        put(&mut out, &self.time)?;
        out.extend_from_slice(b",\"v\":");
        out.extend_from_slice(self.v.to_string().as_bytes());
        out.push(b'}');
        Some(out)
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
pub(crate) mod tests {
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

    /// The general path: a JSON value, canonicalised by [`jcs::canonicalize`].
    fn via_value(body: &ReceiptBody) -> Result<Vec<u8>, JcsError> {
        jcs::canonicalize(&serde_json::to_value(body).unwrap())
    }

    #[test]
    fn the_general_path_decides_big_integers_and_non_ascii_names() {
        let mut body = sample();
        body.response.tokens = crate::jcs::MAX_SAFE_INTEGER + 1;
        assert!(body.write_canonical_direct().is_none());
        assert!(matches!(
            body.to_canonical_bytes(),
            Err(BodyError::Jcs(JcsError::IntegerOutOfRange { .. }))
        ));
        let mut body = sample();
        // U+FF61 sorts before U+1F600 in UTF-8 but after it (a surrogate pair) in UTF-16.
        body.params.insert("\u{1F600}".into(), ParamValue::Int(1));
        body.params.insert("\u{FF61}".into(), ParamValue::Int(2));
        assert!(body.write_canonical_direct().is_none());
        let bytes = body.to_canonical_bytes().unwrap();
        assert_eq!(bytes, via_value(&body).unwrap());
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.find('\u{1F600}') < text.find('\u{FF61}'));
    }

    use proptest::prelude::Strategy as _;

    proptest::proptest! {
        #[test]
        fn the_direct_writer_equals_the_general_path(
            texts in proptest::collection::vec("\\PC{0,12}|[\"\\\\/\u{7f}-\u{a0}\u{2028}\u{2029}]{0,4}", 6),
            params in proptest::collection::btree_map(
                "[ -~]{1,10}",
                proptest::prop_oneof![
                    proptest::prelude::any::<i64>().prop_map(|i| ParamValue::Int(i % (1 << 53))),
                    proptest::prelude::any::<bool>().prop_map(ParamValue::Bool),
                    "\\PC{0,8}".prop_map(ParamValue::Str),
                ],
                0..6,
            ),
            numbers in proptest::array::uniform3(0u64..=crate::jcs::MAX_SAFE_INTEGER),
        ) {
            let mut body = sample();
            body.tenant = format!("t{}", texts[0]);
            body.model.id = format!("m{}", texts[1]);
            body.model.dtype = format!("d{}", texts[2]);
            body.model.engine = format!("e{}", texts[3]);
            body.model.libtorch = texts[4].clone();
            body.response.finish_reason = format!("f{}", texts[5]);
            body.params = params;
            body.index = numbers[0];
            body.prompt.tokens = numbers[1];
            body.response.tokens = numbers[2];
            if body.validate().is_ok() {
                let direct = body.write_canonical_direct();
                proptest::prop_assert!(direct.is_some());
                proptest::prop_assert_eq!(direct.unwrap(), via_value(&body).unwrap());
            }
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
