//! Reading a request body into JSON: UTF-8, I-JSON (RFC 7493), one object, the sampling
//! ranges checked on the numbers as sent, then the OpenAI type with the failing field named.

use serde_json::{Map, Value};

use super::errors::ApiError;
use super::validation::SharedFields;
use crate::engine::sampling::MAX_TEMPERATURE;

/// UTF-8, I-JSON, an object; reads the fields both endpoints share (with the `top_k`
/// extension, which is not in OpenAI's schema).
pub(super) fn parse_object(body: &[u8]) -> Result<(Map<String, Value>, SharedFields), ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| ApiError::InvalidRequest {
        message: format!(
            "The request body is not valid UTF-8 (invalid byte at offset {}).",
            e.valid_up_to()
        ),
        param: None,
    })?;
    // I-JSON (RFC 7493): a member named twice (`"content"` twice in one message) would
    // otherwise silently mean its last value here and perhaps its first to the caller's
    // own records — and the receipt would commit to the one the caller did not mean.
    let value =
        sworn_ledger::ijson::parse(text.as_bytes()).map_err(|e| ApiError::InvalidRequest {
            message: format!("We could not parse the JSON body of your request: {e}."),
            param: None,
        })?;
    let Value::Object(object) = value else {
        return Err(ApiError::InvalidRequest {
            message: "The request body must be a JSON object.".to_string(),
            param: None,
        });
    };
    check_sent_ranges(&object)?;
    if let Some(v) = object.get("top_k").filter(|v| !v.is_null() && !v.is_u64()) {
        return Err(ApiError::invalid_value(
            "top_k",
            format!("`top_k` must be a non-negative integer. Given: {v}"),
        ));
    }
    let shared = SharedFields::NAMES
        .iter()
        .filter_map(|&name| Some((name.to_string(), object.get(name)?.clone())))
        .collect();
    Ok((object, from_object(shared)?))
}

/// The sampling ranges, checked on the numbers as sent. The OpenAI types hold `f32`, which
/// rounds `2.0000001` to `2.0` and `1.00000001` to `1.0`: checked after that rounding, a
/// value out of range would pass and be recorded as another one.
fn check_sent_ranges(object: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(t) = object.get("temperature").and_then(Value::as_f64) {
        if !(0.0..=MAX_TEMPERATURE).contains(&t) {
            return Err(ApiError::invalid_value(
                "temperature",
                format!("`temperature` must be >= 0 and <= {MAX_TEMPERATURE}. Given: {t}"),
            ));
        }
    }
    if let Some(p) = object.get("top_p").and_then(Value::as_f64) {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid_value(
                "top_p",
                format!("`top_p` must be > 0 and <= 1. Given: {p}"),
            ));
        }
    }
    Ok(())
}

/// Deserialises into an OpenAI type, naming the field that failed.
pub(super) fn from_object<T: serde::de::DeserializeOwned>(
    object: Map<String, Value>,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| {
        let path = e.path().to_string();
        let param = (path != ".").then(|| path.clone());
        let inner = e.into_inner();
        let message = match &param {
            Some(p) => format!("Invalid value for `{p}`: {inner}"),
            None => format!("Invalid request: {inner}"),
        };
        ApiError::InvalidRequest { message, param }
    })
}
