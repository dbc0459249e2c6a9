//! `response_format`: the shape a chat answer must take, and what its receipt records.
//!
//! OpenAI's three forms are read from the member as received: `{"type": "text"}` (the
//! default, no constraint), `{"type": "json_object"}` (any JSON object) and
//! `{"type": "json_schema", "json_schema": {"name", "schema", "strict"?, "description"?}}`.
//! A JSON form is enforced while decoding (a token mask, [`crate::engine::constraint`]),
//! whatever `strict` says; a schema the engine cannot enforce is refused by name when it is
//! compiled, never ignored. The receipt binds the constraint: `params.response_format`
//! names the type and `params.response_format_sha256` is the SHA-256 of the member's
//! canonical (RFC 8785) bytes, so an auditor given the same member can show which
//! constraint an answer was produced under (`sworn-verify content --response-format`).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sworn_ledger::jcs;

use super::errors::ApiError;
use crate::engine::constraint::ConstraintSpec;

const PARAM: &str = "response_format";
/// Longest `json_schema.name` (OpenAI's limit).
const MAX_NAME_LEN: usize = 64;

/// What a JSON answer must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Any JSON object.
    JsonObject,
    /// A JSON value valid under this schema.
    JsonSchema(Value),
}

impl Shape {
    /// The engine's constraint for this shape.
    pub fn constraint(&self) -> ConstraintSpec {
        match self {
            Shape::JsonObject => ConstraintSpec::JsonObject,
            Shape::JsonSchema(schema) => ConstraintSpec::JsonSchema {
                schema: schema.clone(),
            },
        }
    }
}

/// A JSON `response_format`, checked, with its receipt binding.
#[derive(Debug, Clone, PartialEq)]
pub struct StructuredOutput {
    /// The constraint.
    pub shape: Shape,
    /// The canonical bytes' SHA-256, lowercase hex.
    pub sha256: String,
}

impl StructuredOutput {
    /// `json_object` or `json_schema`, as `params.response_format` records it.
    pub fn kind(&self) -> &'static str {
        match self.shape {
            Shape::JsonObject => "json_object",
            Shape::JsonSchema(_) => "json_schema",
        }
    }
}

/// Reads the `response_format` member: `None` when absent, null or `text`.
pub fn check(value: Option<&Value>) -> Result<Option<StructuredOutput>, ApiError> {
    let object = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(object)) => object,
        Some(_) => return Err(invalid("`response_format` must be an object.")),
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(_) => return Err(invalid("`response_format.type` must be a string.")),
        None => return Err(invalid("`response_format` must have a `type`.")),
    };
    let shape = match kind {
        "text" => {
            only(object, &["type"], "response_format")?;
            return Ok(None);
        }
        "json_object" => {
            only(object, &["type"], "response_format")?;
            Shape::JsonObject
        }
        "json_schema" => {
            only(object, &["type", "json_schema"], "response_format")?;
            json_schema(object.get("json_schema"))?
        }
        other => {
            return Err(invalid(format!(
                "`response_format.type` must be `text`, `json_object` or `json_schema`. Given: {}",
                Value::String(other.to_owned())
            )));
        }
    };
    let canonical = jcs::canonicalize(value.unwrap_or(&Value::Null)).map_err(|e| {
        invalid(format!(
            "`response_format` cannot be canonicalised for the receipt: {e}"
        ))
    })?;
    Ok(Some(StructuredOutput {
        shape,
        sha256: hex::encode(Sha256::digest(&canonical)),
    }))
}

fn json_schema(value: Option<&Value>) -> Result<Shape, ApiError> {
    let Some(Value::Object(spec)) = value else {
        return Err(invalid(
            "`response_format.json_schema` must be an object with `name` and `schema`.",
        ));
    };
    only(
        spec,
        &["name", "schema", "strict", "description"],
        "response_format.json_schema",
    )?;
    match spec.get("name") {
        Some(Value::String(name))
            if (1..=MAX_NAME_LEN).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') => {}
        _ => {
            return Err(invalid(format!(
                "`response_format.json_schema.name` must be 1-{MAX_NAME_LEN} characters of \
                 a-z, A-Z, 0-9, `_` and `-`."
            )));
        }
    }
    if spec
        .get("strict")
        .is_some_and(|s| !s.is_boolean() && !s.is_null())
    {
        return Err(invalid(
            "`response_format.json_schema.strict` must be a boolean.",
        ));
    }
    if spec
        .get("description")
        .is_some_and(|d| !d.is_string() && !d.is_null())
    {
        return Err(invalid(
            "`response_format.json_schema.description` must be a string.",
        ));
    }
    match spec.get("schema") {
        Some(schema @ (Value::Object(_) | Value::Bool(true))) => {
            Ok(Shape::JsonSchema(schema.clone()))
        }
        Some(_) => Err(invalid(
            "`response_format.json_schema.schema` must be a JSON Schema object.",
        )),
        None => Err(invalid(
            "`response_format.json_schema.schema` is required: this server enforces the \
             schema while decoding.",
        )),
    }
}

/// Refuses members of `object` outside `allowed`, naming the first.
fn only(object: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), ApiError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => Err(invalid(format!(
            "`{at}` has an unknown member {}; allowed: {}.",
            Value::String(extra.clone()),
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid_value(PARAM, message)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(value: &Value) -> String {
        match check(Some(value)).unwrap_err() {
            ApiError::InvalidValue { message, param } => {
                assert_eq!(param, PARAM);
                message
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_and_absent_are_unconstrained() {
        assert_eq!(check(None).unwrap(), None);
        assert_eq!(check(Some(&Value::Null)).unwrap(), None);
        assert_eq!(check(Some(&json!({"type": "text"}))).unwrap(), None);
    }

    #[test]
    fn json_forms_carry_their_shape_and_the_canonical_hash() {
        let object = check(Some(&json!({"type": "json_object"})))
            .unwrap()
            .unwrap();
        assert_eq!(
            (object.shape.clone(), object.kind()),
            (Shape::JsonObject, "json_object")
        );
        // The hash covers the canonical bytes: member order and spacing do not matter.
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let a = json!({"type": "json_schema", "json_schema": {"name": "x", "strict": true, "schema": schema}});
        let b: Value = serde_json::from_str(
            r#"{ "json_schema" : {"schema": {"properties": {"a": {"type": "integer"}}, "type": "object"},
                "strict": true, "name": "x"}, "type": "json_schema" }"#,
        )
        .unwrap();
        let (a, b) = (
            check(Some(&a)).unwrap().unwrap(),
            check(Some(&b)).unwrap().unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a.shape, Shape::JsonSchema(schema));
        let canonical = jcs::canonicalize(
            &json!({"type": "json_schema", "json_schema": {"name": "x", "strict": true,
            "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}}),
        )
        .unwrap();
        assert_eq!(a.sha256, hex::encode(Sha256::digest(canonical)));
        // Any change to the constraint changes the hash.
        let c = json!({"type": "json_schema", "json_schema": {"name": "x", "strict": false, "schema": {"type": "object"}}});
        assert_ne!(check(Some(&c)).unwrap().unwrap().sha256, a.sha256);
    }

    #[test]
    fn malformed_forms_are_refused_by_name() {
        for (value, needle) in [
            (json!("json_object"), "must be an object"),
            (json!({}), "must have a `type`"),
            (json!({"type": 3}), "must be a string"),
            (json!({"type": "xml"}), "\"xml\""),
            (
                json!({"type": "json_object", "schema": {}}),
                "unknown member \"schema\"",
            ),
            (
                json!({"type": "json_schema"}),
                "must be an object with `name`",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"schema": {}}}),
                "name` must be",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}),
                "name` must be",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "a"}}),
                "schema` is required",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "a", "schema": []}}),
                "JSON Schema object",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "a", "schema": {}, "strict": "yes"}}),
                "boolean",
            ),
            (
                json!({"type": "json_schema", "json_schema": {"name": "a", "schema": {}, "extra": 1}}),
                "unknown member \"extra\"",
            ),
        ] {
            let got = message(&value);
            assert!(got.contains(needle), "{value}: {got}");
        }
    }
}
