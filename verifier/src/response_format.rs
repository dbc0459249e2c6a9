//! A disclosed `response_format` against a receipt: was the answer produced under this
//! constraint, and does it satisfy it?
//!
//! The receipt records `params.response_format` (`json_object` or `json_schema`) and
//! `params.response_format_sha256`, the SHA-256 of the request's `response_format` member
//! in canonical (RFC 8785) form. As with prompts, the auditor is given those canonical
//! bytes and the verifier hashes them exactly as given, never re-canonicalising. Then,
//! independently of the server, a whole answer (finish reason `stop`) is checked to be
//! JSON of that shape: an object for `json_object`, valid under the schema for
//! `json_schema`. An answer cut short (`length`, `cancelled`, …) is not expected to be
//! whole JSON and is reported as not checked.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sworn_ledger::ijson;
use sworn_ledger::receipt::{ParamValue, ReceiptBody};

/// Checks `format` (the canonical bytes) against `body`, and `answer` (the opened answer
/// text, when disclosed) against `format`. `Ok` says what held; `Err` why not.
pub fn check(body: &ReceiptBody, format: &[u8], answer: Option<&[u8]>) -> Result<String, String> {
    let value =
        ijson::parse(format).map_err(|e| format!("the response_format file is refused: {e}"))?;
    let param = |name: &str| match body.params.get(name) {
        Some(ParamValue::Str(s)) => Some(s.as_str()),
        _ => None,
    };
    let Some(recorded) = param("response_format_sha256") else {
        return Err(
            "the receipt records no response_format: its answer was not produced \
                    under a constraint"
                .into(),
        );
    };
    if hex::encode(Sha256::digest(format)) != recorded {
        return Err("the response_format file does not hash to the receipt's \
                    response_format_sha256 (its canonical bytes, byte for byte)"
            .into());
    }
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
    if param("response_format") != Some(kind) {
        return Err(format!(
            "the response_format's type {kind:?} is not the receipt's {:?}",
            param("response_format").unwrap_or("")
        ));
    }
    let held = format!("response_format ({kind}) is the receipt's, by SHA-256");
    let Some(answer) = answer else {
        return Ok(format!("{held}; no answer disclosed to check against it"));
    };
    let finish = body.response.finish_reason.as_str();
    if finish != "stop" {
        return Ok(format!(
            "{held}; the answer ended with finish reason {finish:?}, cut before it was \
             whole: not checked against it"
        ));
    }
    let json: Value = serde_json::from_slice(answer)
        .map_err(|e| format!("the answer is not JSON, though sworn to {kind}: {e}"))?;
    match kind {
        "json_object" if json.is_object() => Ok(format!("{held}; the answer is a JSON object")),
        "json_object" => {
            Err("the answer is JSON but not an object, though sworn to json_object".into())
        }
        "json_schema" => {
            let schema = value
                .pointer("/json_schema/schema")
                .ok_or("the response_format has no json_schema.schema")?;
            let validator = jsonschema::validator_for(schema)
                .map_err(|e| format!("the sworn schema does not compile here: {e}"))?;
            match validator.iter_errors(&json).next() {
                None => Ok(format!("{held}; the answer is valid under its schema")),
                Some(e) => Err(format!(
                    "the answer violates the sworn schema at {:?}: {e}",
                    e.instance_path().to_string()
                )),
            }
        }
        other => Err(format!("unknown response_format type {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sworn_ledger::jcs;

    use super::*;

    const SCHEMA_FORMAT: &str = r#"{"json_schema":{"name":"t","schema":{"properties":{"side":{"enum":["buy","sell"]}},"required":["side"],"type":"object"},"strict":true},"type":"json_schema"}"#;

    fn body(format: Option<&str>, finish: &str) -> ReceiptBody {
        let mut params = serde_json::Map::new();
        if let Some(format) = format {
            let value: Value = serde_json::from_str(format).unwrap();
            params.insert("response_format".into(), value["type"].clone());
            params.insert(
                "response_format_sha256".into(),
                Value::String(hex::encode(Sha256::digest(format.as_bytes()))),
            );
        }
        let commitment = json!("00".repeat(32));
        let body = json!({
            "v": 1, "kind": "receipt", "log": "x", "index": 0,
            "time": "2026-01-01T00:00:00.000000Z", "request_id": "r", "tenant": "t",
            "model": {"id": "m", "sha256": "s", "dtype": "d", "device": "cpu", "engine": "e", "libtorch": "l"},
            "params": params,
            "prompt": {"commitment": commitment, "tokens": 1},
            "response": {"commitment": commitment, "tokens": 1, "finish_reason": finish},
        });
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn the_committed_format_and_a_valid_answer_hold() {
        assert_eq!(
            jcs::canonicalize(&serde_json::from_str(SCHEMA_FORMAT).unwrap()).unwrap(),
            SCHEMA_FORMAT.as_bytes()
        );
        let b = body(Some(SCHEMA_FORMAT), "stop");
        let ok = check(&b, SCHEMA_FORMAT.as_bytes(), Some(br#"{"side":"buy"}"#)).unwrap();
        assert!(ok.contains("valid under its schema"), "{ok}");
        let object = r#"{"type":"json_object"}"#;
        let ok = check(&body(Some(object), "stop"), object.as_bytes(), Some(b"{}")).unwrap();
        assert!(ok.contains("is a JSON object"), "{ok}");
    }

    #[test]
    fn another_format_an_unconstrained_receipt_or_a_violating_answer_fail() {
        let b = body(Some(SCHEMA_FORMAT), "stop");
        let other = SCHEMA_FORMAT.replace("sell", "short");
        let err = check(&b, other.as_bytes(), None).unwrap_err();
        assert!(err.contains("does not hash"), "{err}");
        // The same JSON, not canonical: refused, not re-canonicalised.
        let spaced = SCHEMA_FORMAT.replacen(':', ": ", 1);
        assert!(check(&b, spaced.as_bytes(), None).is_err());
        let err = check(&body(None, "stop"), SCHEMA_FORMAT.as_bytes(), None).unwrap_err();
        assert!(err.contains("records no response_format"), "{err}");
        let err = check(&b, SCHEMA_FORMAT.as_bytes(), Some(br#"{"side":"hold"}"#)).unwrap_err();
        assert!(err.contains("violates the sworn schema"), "{err}");
        let err = check(&b, SCHEMA_FORMAT.as_bytes(), Some(b"side: buy")).unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
        let object = r#"{"type":"json_object"}"#;
        let err = check(&body(Some(object), "stop"), object.as_bytes(), Some(b"[1]")).unwrap_err();
        assert!(err.contains("not an object"), "{err}");
    }

    #[test]
    fn a_cut_answer_is_not_held_to_the_schema() {
        let b = body(Some(SCHEMA_FORMAT), "length");
        let ok = check(&b, SCHEMA_FORMAT.as_bytes(), Some(br#"{"si"#)).unwrap();
        assert!(ok.contains("not checked"), "{ok}");
    }
}
