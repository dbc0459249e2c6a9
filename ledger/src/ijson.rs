//! The strict JSON reader every auditor-facing input goes through: RFC 7493 I-JSON.
//!
//! `serde_json` on its own keeps the *last* of two members with the same name. That is a
//! forger's gift: a bundle with two `receipt` members, or a prompt
//! `[{"content":"wire the money","role":"user","content":"2+2?"}]`, means one thing to
//! this verifier and another to a reader that keeps the first. I-JSON removes the
//! ambiguity by refusing such documents outright, and so does this reader, at any depth.
//! Lone surrogates (`"\udc00"`), which have no Unicode reading, are refused by
//! `serde_json` itself when it decodes a string; this reader relies on that and a test
//! holds it to it.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why bytes are not an I-JSON document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not I-JSON (RFC 7493): {reason}")]
pub struct IJsonError {
    /// The parser's message (a duplicate member names itself).
    pub reason: String,
}

/// Parses `bytes` as one I-JSON document: no duplicate member names at any depth, no
/// lone surrogates, nothing after the value but whitespace.
pub fn parse(bytes: &[u8]) -> Result<Value, IJsonError> {
    serde_json::from_slice::<Strict>(bytes)
        .map(|s| s.0)
        .map_err(|e| IJsonError {
            reason: e.to_string(),
        })
}

/// [`parse`] for a struct written as a JSON object: the document is checked as I-JSON
/// first, then read with [`object_as`].
pub fn parse_as<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, IJsonError> {
    object_as(&parse(bytes)?, &[])
}

/// Reads `value` into the struct `T` (whose own rules, such as `deny_unknown_fields`,
/// still apply), insisting on the object form. serde's derived readers also accept a JSON
/// array of the members in declaration order — `[6, 7, ["…"]]` for an inclusion proof —
/// which no Sworn format has, so an array is refused here, at the top and at each member
/// named in `nested` that holds a struct (`null` stays allowed there, for `Option`s).
pub fn object_as<T: serde::de::DeserializeOwned>(
    value: &Value,
    nested: &[&str],
) -> Result<T, IJsonError> {
    let Value::Object(object) = value else {
        return Err(IJsonError {
            reason: format!("expected an object, found {}", kind(value)),
        });
    };
    for name in nested {
        match object.get(*name) {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(other) => {
                return Err(IJsonError {
                    reason: format!("`{name}` must be an object, found {}", kind(other)),
                });
            }
        }
    }
    serde_json::from_value(value.clone()).map_err(|e| IJsonError {
        reason: e.to_string(),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON value read with duplicate member names refused.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if object.contains_key(&name) {
                return Err(de::Error::custom(format!("duplicate member name {name:?}")));
            }
            let Strict(v) = map.next_value()?;
            object.insert(name, v);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_members_are_refused_at_any_depth() {
        for doc in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"receipt":{},"receipt":{}}"#,
            br#"[{"content":"wire the money","role":"user","content":"2+2?"}]"#,
            br#"{"x":[1,{"y":{"z":0,"z":0}}]}"#,
        ] {
            let err = parse(doc).unwrap_err();
            assert!(err.reason.contains("duplicate member name"), "{err}");
        }
    }

    #[test]
    fn lone_surrogates_and_trailing_data_are_refused() {
        for doc in [
            &br#""\udc00""#[..],
            br#""\ud800""#,
            br#"{"a":"\ud800x"}"#,
            br#"{} {}"#,
            b"{\"a\":1",
        ] {
            assert!(parse(doc).is_err(), "{}", String::from_utf8_lossy(doc));
        }
        // A surrogate pair is one character and fine.
        assert_eq!(parse(br#""\ud83d\ude00""#).unwrap(), Value::from("😀"));
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Proof {
        index: u64,
        tree_size: u64,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        a: u64,
    }

    /// serde's derived readers take `[6, 7, null]` for a struct; a strict reader does not.
    #[test]
    fn structs_are_read_from_objects_only() {
        assert!(parse_as::<Proof>(br#"{"index":6,"tree_size":7}"#).is_ok());
        assert!(serde_json::from_slice::<Proof>(b"[6,7,null]").is_ok());
        assert!(parse_as::<Proof>(b"[6,7,null]").is_err());
        let nested = parse(br#"{"index":6,"tree_size":7,"inner":[1]}"#).unwrap();
        assert!(object_as::<Proof>(&nested, &[]).is_ok());
        assert!(object_as::<Proof>(&nested, &["inner"]).is_err());
    }

    #[test]
    fn ordinary_documents_read_as_serde_json_reads_them() {
        let doc = br#" {"a":[1,-2,3.5,true,null,"s"],"b":{"c":{}}} "#;
        assert_eq!(
            parse(doc).unwrap(),
            serde_json::from_slice::<Value>(doc).unwrap()
        );
    }
}
