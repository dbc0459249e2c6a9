//! The receipt bundle as the auditor receives it, split into sections so that each
//! layer parses (and fails on) only its own section.
//!
//! Three shapes are accepted, all emitted by Sworn:
//! - the full bundle of `GET /v1/audit/receipts/{request_id}`:
//!   `{"receipt": {…}, "inclusion": {"index", "tree_size", "hashes"}, "checkpoint":
//!   {"size", "root_hash", "note"}, "anchor": <anchor record>, "erasure": {"entry",
//!   "inclusion"}}` (every section but `receipt` optional; `erasure` is the signed
//!   erasure event of an erased receipt with its own inclusion proof);
//! - a completion response with its top-level `"sworn"` receipt: then the answer
//!   (`choices[0].message.content` or `choices[0].text`; for a chat answer that called
//!   tools, the canonical JSON of its `content` and `tool_calls`, as the service commits
//!   it) is kept too, because the file holds both the salts and the answer and the answer
//!   must open the commitment. A response of `n` > 1 choices carries each choice's
//!   receipt in the choice (`choices[i].sworn`): one choice at a time is verified, as a
//!   response whose `choices` holds that choice alone
//!   (`jq '.choices |= [.[1]]' answer.json`);
//! - the bare receipt (`{"v":1,"log",…,"body","signature","salts"}`, ledger's
//!   `ReceiptJson`).
//!
//! Parsing here checks the outer shape, the size cap and that the whole document is
//! I-JSON (no duplicate member names at any depth: two `receipt` members must not mean
//! "the last one"); a malformed section is kept as raw JSON and reported by its own
//! layer.

use serde_json::{Map, Value};
use sworn_ledger::ijson;

/// Largest bundle read: a receipt (≤ 128 KiB), a checkpoint note (≤ 16 KiB), a 64-element
/// proof and an anchor record fit with room to spare; anything larger is hostile.
pub const MAX_BUNDLE_BYTES: usize = 512 * 1024;

/// Why a bundle could not even be split into sections.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Larger than [`MAX_BUNDLE_BYTES`].
    #[error("bundle is {len} bytes, over the cap of {max}")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Not an I-JSON object (duplicate member names included).
    #[error("bundle is not a JSON object: {reason}")]
    NotJson {
        /// The parser's message.
        reason: String,
    },
    /// A member this format does not have (a hybrid or extended proof is refused, not
    /// ignored).
    #[error("bundle has an unknown member {name:?}")]
    UnknownMember {
        /// Its name.
        name: String,
    },
    /// No receipt in it.
    #[error("bundle has no receipt (expected `receipt`, `sworn`, or a bare receipt)")]
    NoReceipt,
    /// A completion response whose answer text cannot be read (no single choice with a
    /// string `message.content` or `text`).
    #[error("completion response: {reason}")]
    BadCompletion {
        /// What is wrong with it.
        reason: String,
    },
}

/// A bundle split into its sections (each still raw JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The receipt (ledger's `ReceiptJson` shape).
    pub receipt: Value,
    /// The inclusion proof, if any.
    pub inclusion: Option<Value>,
    /// The checkpoint, if any.
    pub checkpoint: Option<Value>,
    /// The anchor record, if any.
    pub anchor: Option<Value>,
    /// The signed erasure event of this receipt with its inclusion proof, if erased.
    pub erasure: Option<Value>,
    /// The answer text, when the file is a completion response (which also carries the
    /// salts): the commitment layer must then open it.
    pub answer: Option<String>,
}

/// Members of the full bundle.
const FULL_MEMBERS: [&str; 5] = ["receipt", "inclusion", "checkpoint", "anchor", "erasure"];

impl Bundle {
    /// Splits `bytes` into sections, checking only the outer shape.
    pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge {
                len: bytes.len(),
                max: MAX_BUNDLE_BYTES,
            });
        }
        let value = ijson::parse(bytes).map_err(|e| BundleError::NotJson {
            reason: e.to_string(),
        })?;
        let Value::Object(mut object) = value else {
            return Err(BundleError::NotJson {
                reason: "top level is not an object".into(),
            });
        };
        if object.contains_key("receipt") {
            return Self::full(object);
        }
        let in_choice = (object.get_mut("choices").and_then(Value::as_array_mut))
            .filter(|choices| choices.len() == 1)
            .and_then(|choices| choices[0].as_object_mut()?.remove("sworn"));
        if let Some(sworn) = object.remove("sworn").or(in_choice) {
            // A completion response: the rest is OpenAI's answer, of which only the answer
            // text matters here (the receipt commits to it).
            let answer = answer_text(&object)?;
            let mut bundle = match sworn {
                Value::Object(inner) if inner.contains_key("receipt") => Self::full(inner)?,
                other => Bundle::receipt_only(other),
            };
            bundle.answer = answer;
            return Ok(bundle);
        }
        if object.contains_key("body") && object.contains_key("signature") {
            return Ok(Bundle::receipt_only(Value::Object(object)));
        }
        Err(BundleError::NoReceipt)
    }

    fn receipt_only(receipt: Value) -> Bundle {
        Bundle {
            receipt,
            inclusion: None,
            checkpoint: None,
            anchor: None,
            erasure: None,
            answer: None,
        }
    }

    fn full(mut object: Map<String, Value>) -> Result<Bundle, BundleError> {
        if let Some(name) = object.keys().find(|k| !FULL_MEMBERS.contains(&k.as_str())) {
            return Err(BundleError::UnknownMember { name: name.clone() });
        }
        let receipt = object.remove("receipt").ok_or(BundleError::NoReceipt)?;
        // `null` sections are the same as absent ones.
        let mut take = |name: &str| object.remove(name).filter(|v| !v.is_null());
        Ok(Bundle {
            inclusion: take("inclusion"),
            checkpoint: take("checkpoint"),
            anchor: take("anchor"),
            erasure: take("erasure"),
            receipt,
            answer: None,
        })
    }

    /// The bundle as JSON again (sections in the full-bundle shape).
    pub fn to_value(&self) -> Value {
        let mut object = Map::new();
        object.insert("receipt".into(), self.receipt.clone());
        for (name, section) in [
            ("inclusion", &self.inclusion),
            ("checkpoint", &self.checkpoint),
            ("anchor", &self.anchor),
            ("erasure", &self.erasure),
        ] {
            if let Some(v) = section {
                object.insert(name.into(), v.clone());
            }
        }
        Value::Object(object)
    }
}

/// The answer text of a completion response (chat: `choices[0].message.content`;
/// completion: `choices[0].text`). `None` when the object has no `choices` at all (a
/// receipt wrapped in `{"sworn": …}` alone); an error when it has them but not exactly one
/// choice with a string text, since the receipt commits to one answer.
fn answer_text(response: &Map<String, Value>) -> Result<Option<String>, BundleError> {
    let Some(choices) = response.get("choices") else {
        return Ok(None);
    };
    let bad = |reason: &str| BundleError::BadCompletion {
        reason: reason.to_string(),
    };
    let [choice] = choices
        .as_array()
        .ok_or_else(|| bad("`choices` is not an array"))?
        .as_slice()
    else {
        return Err(bad(
            "a sworn answer has exactly one choice (each choice of an `n` > 1 answer is \
             sworn on its own: keep the one to verify, e.g. `jq '.choices |= [.[1]]'`)",
        ));
    };
    let calls = (choice.get("message"))
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .filter(|calls| !calls.is_empty());
    if let Some(calls) = calls {
        return tool_message(choice.get("message"), calls).map(Some);
    }
    let text = choice
        .get("message")
        .map(|m| m.get("content"))
        .unwrap_or_else(|| choice.get("text"));
    match text {
        Some(Value::String(t)) => Ok(Some(t.clone())),
        _ => Err(bad(
            "the choice has no string `message.content` (chat) or `text` (completion)",
        )),
    }
}

/// The canonical JSON the service commits for an answer that called tools:
/// `{"content": text or null, "tool_calls": [{"id", "type", "function": {"name",
/// "arguments"}}]}`, each call reduced to those members.
fn tool_message(message: Option<&Value>, calls: &[Value]) -> Result<String, BundleError> {
    let bad = |reason: &str| BundleError::BadCompletion {
        reason: reason.to_string(),
    };
    let content = match message.and_then(|m| m.get("content")) {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(text)) => Value::String(text.clone()),
        Some(_) => return Err(bad("the message's `content` is neither text nor null")),
    };
    let mut reduced = Vec::with_capacity(calls.len());
    for call in calls {
        let text = |pointer: &str| call.pointer(pointer).and_then(Value::as_str);
        let (Some(id), Some(kind), Some(name), Some(arguments)) = (
            text("/id"),
            text("/type"),
            text("/function/name"),
            text("/function/arguments"),
        ) else {
            return Err(bad(
                "a tool call lacks its `id`, `type`, `function.name` or `function.arguments`",
            ));
        };
        reduced.push(serde_json::json!({
            "id": id, "type": kind, "function": {"name": name, "arguments": arguments},
        }));
    }
    let message = serde_json::json!({"content": content, "tool_calls": reduced});
    let canonical = sworn_ledger::jcs::canonicalize(&message)
        .map_err(|e| bad(&format!("the tool calls cannot be canonicalised: {e}")))?;
    String::from_utf8(canonical).map_err(|_| bad("the tool calls are not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_shapes_are_accepted() {
        let bare = br#"{"v":1,"body":"{}","signature":"x","log":"o","index":0}"#;
        let b = Bundle::parse(bare).unwrap();
        assert!(b.inclusion.is_none());
        let api = br#"{"id":"chatcmpl-1","choices":[{"message":{"content":"4"}}],"sworn":{"v":1,"body":"{}","signature":"x"}}"#;
        let b = Bundle::parse(api).unwrap();
        assert_eq!(b.receipt["v"], 1);
        assert_eq!(b.answer.as_deref(), Some("4"));
        let completion = br#"{"choices":[{"text":"Once"}],"sworn":{"v":1}}"#;
        assert_eq!(
            Bundle::parse(completion).unwrap().answer.as_deref(),
            Some("Once")
        );
        let no_choice = br#"{"choices":[],"sworn":{"v":1}}"#;
        assert!(matches!(
            Bundle::parse(no_choice),
            Err(BundleError::BadCompletion { .. })
        ));
        let full = br#"{"receipt":{"v":1},"inclusion":{"index":0},"checkpoint":null}"#;
        let b = Bundle::parse(full).unwrap();
        assert!(b.inclusion.is_some() && b.checkpoint.is_none());
    }

    #[test]
    fn tool_calls_and_a_choice_of_many_give_the_committed_answer() {
        let calls = br#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"type":"function","id":"call_1","function":{"arguments":"{\"a\":1}","name":"f"}}]},"finish_reason":"tool_calls"}],"sworn":{"v":1}}"#;
        assert_eq!(
            Bundle::parse(calls).unwrap().answer.as_deref(),
            Some(
                r#"{"content":null,"tool_calls":[{"function":{"arguments":"{\"a\":1}","name":"f"},"id":"call_1","type":"function"}]}"#
            )
        );
        let broken = br#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c"}]}}],"sworn":{"v":1}}"#;
        assert!(matches!(
            Bundle::parse(broken),
            Err(BundleError::BadCompletion { .. })
        ));
        // One choice of an `n` > 1 answer, its receipt inside it.
        let one =
            br#"{"choices":[{"index":1,"message":{"content":"b"},"sworn":{"v":1,"body":"{}"}}]}"#;
        let b = Bundle::parse(one).unwrap();
        assert_eq!(
            (b.answer.as_deref(), b.receipt["v"].clone()),
            (Some("b"), 1.into())
        );
        let many = br#"{"choices":[{"message":{"content":"a"},"sworn":{"v":1}},{"message":{"content":"b"},"sworn":{"v":1}}]}"#;
        assert_eq!(Bundle::parse(many), Err(BundleError::NoReceipt));
    }

    #[test]
    fn unknown_members_and_oversize_are_refused() {
        let hybrid = br#"{"receipt":{},"inclusion":{},"linear_proof":[]}"#;
        assert_eq!(
            Bundle::parse(hybrid),
            Err(BundleError::UnknownMember {
                name: "linear_proof".into()
            })
        );
        assert!(matches!(
            Bundle::parse(b"[1]"),
            Err(BundleError::NotJson { .. })
        ));
        assert_eq!(Bundle::parse(b"{}"), Err(BundleError::NoReceipt));
        // The last of two `receipt` members must not silently win.
        let twice = br#"{"receipt":{"v":1},"receipt":{"v":2}}"#;
        assert!(matches!(
            Bundle::parse(twice),
            Err(BundleError::NotJson { .. })
        ));
        let big = vec![b' '; MAX_BUNDLE_BYTES + 1];
        assert!(matches!(
            Bundle::parse(&big),
            Err(BundleError::TooLarge { .. })
        ));
    }
}
