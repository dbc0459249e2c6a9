//! RFC 8785 (JSON Canonicalization Scheme) for the JSON subset Sworn emits: objects,
//! arrays, strings, integers, booleans and null. Floats are refused rather than
//! canonicalised, so receipt bodies never depend on number formatting.
//!
//! Canonical form: no whitespace; object members sorted by the UTF-16 code units of their
//! names; strings escaped as ECMAScript's `JSON.stringify` does (only `"`, `\\` and the
//! control characters, with the short forms `\b \f \n \r \t` and lowercase `\u00xx`);
//! integers in plain decimal, limited to ±(2^53 − 1) so every JCS implementation reads
//! the same value.

use serde_json::Value;

/// Largest integer magnitude accepted: ECMAScript's `Number.MAX_SAFE_INTEGER`. Beyond it
/// other JCS implementations (which go through IEEE doubles) would print other digits.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// Deepest nesting accepted. Receipt bodies nest three levels; the cap keeps recursion
/// bounded on hostile input.
pub const MAX_DEPTH: usize = 32;
/// Largest document accepted by [`parse_canonical`]: receipt bodies are well under 4 KiB.
pub const MAX_CANONICAL_BYTES: usize = 64 * 1024;

/// Why a value or document cannot be canonical.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    /// A non-integer number appeared.
    #[error("floating-point numbers are not allowed (found {value})")]
    FloatRefused {
        /// The number as serde_json printed it.
        value: String,
    },
    /// An integer beyond ±(2^53 − 1).
    #[error("integer {value} is outside ±(2^53 − 1)")]
    IntegerOutOfRange {
        /// The number as serde_json printed it.
        value: String,
    },
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {max} levels")]
    TooDeep {
        /// The cap.
        max: usize,
    },
    /// The document is larger than [`MAX_CANONICAL_BYTES`].
    #[error("document is {len} bytes, over the cap of {max}")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The bytes are not JSON.
    #[error("not JSON: {reason}")]
    NotJson {
        /// The parser's message.
        reason: String,
    },
    /// The bytes are JSON but not in canonical form (whitespace, member order, escapes,
    /// duplicate names, number spelling).
    #[error("JSON is not in RFC 8785 canonical form")]
    NotCanonical,
}

/// Canonical bytes of `value`.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::with_capacity(512);
    write_value(value, &mut out, 0)?;
    Ok(out)
}

/// Parses `bytes` as JSON and returns the value only if `bytes` are exactly its canonical
/// form (which also refuses duplicate member names: the canonical form of the parsed value
/// would have one member fewer).
pub fn parse_canonical(bytes: &[u8]) -> Result<Value, JcsError> {
    if bytes.len() > MAX_CANONICAL_BYTES {
        return Err(JcsError::TooLarge {
            len: bytes.len(),
            max: MAX_CANONICAL_BYTES,
        });
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| JcsError::NotJson {
        reason: e.to_string(),
    })?;
    if canonicalize(&value)? != bytes {
        return Err(JcsError::NotCanonical);
    }
    Ok(value)
}

/// The fast acceptance test for typed documents: one typed parse, one canonical
/// serialisation, one byte comparison. `to_canonical` emits only canonical JSON, so when
/// its output equals `bytes`, `bytes` are canonical and the parsed value is exactly what
/// they say (a duplicate member, a float, an unknown field or another spelling of any
/// value all make the parse fail or the bytes differ). `None` means "not accepted here":
/// callers fall back to [`parse_canonical`] and the schema checks for a precise error.
pub fn parse_typed_canonical<T, E>(
    bytes: &[u8],
    to_canonical: impl FnOnce(&T) -> Result<Vec<u8>, E>,
) -> Option<T>
where
    T: serde::de::DeserializeOwned,
{
    if bytes.len() > MAX_CANONICAL_BYTES {
        return None;
    }
    let value: T = serde_json::from_slice(bytes).ok()?;
    let again = to_canonical(&value).ok()?;
    (again == bytes).then_some(value)
}

/// `value` with every object's members in code-point order, the order serde_json's
/// default map keeps. A build in which some dependency enables serde_json's
/// `preserve_order` (llguidance does, and features unify across a workspace) keeps
/// insertion order instead; JSON written for byte-exact files (test vectors) or for people
/// goes through this first so that its bytes do not depend on that feature. Canonical
/// bytes ([`canonicalize`]) never depend on it: they sort by UTF-16 themselves.
pub fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by_key(|(name, _)| *name);
            Value::Object(
                members
                    .into_iter()
                    .map(|(name, member)| (name.clone(), sorted(member)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Whether `bytes` are a JSON document in canonical form within the caps.
pub fn is_canonical(bytes: &[u8]) -> bool {
    parse_canonical(bytes).is_ok()
}

fn write_value(value: &Value, out: &mut Vec<u8>, depth: usize) -> Result<(), JcsError> {
    if depth > MAX_DEPTH {
        return Err(JcsError::TooDeep { max: MAX_DEPTH });
    }
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u > MAX_SAFE_INTEGER {
                    return Err(JcsError::IntegerOutOfRange {
                        value: n.to_string(),
                    });
                }
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(JcsError::IntegerOutOfRange {
                        value: n.to_string(),
                    });
                }
                out.extend_from_slice(i.to_string().as_bytes());
            } else {
                return Err(JcsError::FloatRefused {
                    value: n.to_string(),
                });
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            // RFC 8785 §3.2.3: sort by UTF-16 code units, which differs from UTF-8 byte
            // order for characters above U+FFFF versus U+E000..U+FFFF.
            members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, (name, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_value(member, out, depth + 1)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for ch in s.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(canonicalize(v).unwrap()).unwrap()
    }

    #[test]
    fn members_sort_by_utf16_not_utf8() {
        // U+1F600 (surrogates D83D DE00) sorts before U+FB01 in UTF-16, after it in UTF-8.
        let v = json!({"\u{fb01}": 1, "\u{1f600}": 2, "a": 3});
        assert_eq!(canon(&v), "{\"a\":3,\"\u{1f600}\":2,\"\u{fb01}\":1}");
    }

    #[test]
    fn strings_escape_like_json_stringify() {
        let v = json!("q\"b\\\u{1}\u{8}\u{c}\n\r\t\u{1f}é\u{2028}/");
        assert_eq!(
            canon(&v),
            "\"q\\\"b\\\\\\u0001\\b\\f\\n\\r\\t\\u001fé\u{2028}/\""
        );
    }

    #[test]
    fn floats_and_unsafe_integers_are_refused() {
        assert!(matches!(
            canonicalize(&json!(1.5)),
            Err(JcsError::FloatRefused { .. })
        ));
        assert!(matches!(
            canonicalize(&json!(MAX_SAFE_INTEGER + 1)),
            Err(JcsError::IntegerOutOfRange { .. })
        ));
        assert_eq!(
            canon(&json!(-(MAX_SAFE_INTEGER as i64))),
            "-9007199254740991"
        );
    }

    #[test]
    fn parse_canonical_refuses_every_other_spelling() {
        assert!(parse_canonical(br#"{"a":1,"b":[true,null]}"#).is_ok());
        for bad in [
            &br#"{"b":1,"a":2}"#[..],
            br#"{"a": 1}"#,
            br#"{"a":1,"a":1}"#,
            br#"{"a":1.0}"#,
            br#"{"a":1e2}"#,
            br#"{"a":"\u0061"}"#,
            br#"{"a":-0}"#,
            b"{\"a\":1}\n",
            br#"{"a":1"#,
        ] {
            assert!(
                parse_canonical(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn depth_is_capped() {
        let mut v = json!(0);
        for _ in 0..(MAX_DEPTH + 2) {
            v = json!([v]);
        }
        assert_eq!(canonicalize(&v), Err(JcsError::TooDeep { max: MAX_DEPTH }));
    }
}
