//! Disclosed tools against a receipt: was the answer produced with these tools offered,
//! and are the calls it made calls they allow?
//!
//! The receipt records `params.tool_choice` (`none`, `auto`, `required` or `function`) and
//! `params.tools_sha256`, the SHA-256 of the canonical (RFC 8785) JSON of
//! `{"parallel_tool_calls", "tool_choice", "tools"}` as the server applied them (the
//! request's `tools` as sent, `tool_choice` as sent or `"auto"`, `parallel_tool_calls` as
//! sent or `true`). The auditor is given those canonical bytes, hashed exactly as given.
//!
//! An answer that made calls is committed as the canonical JSON of `{"content",
//! "tool_calls"}` (docs/FORMATS.md). For a whole answer (finish reason `stop`) the
//! verifier then checks, independently of the server, that every call names an offered
//! function (the named one, under a named `tool_choice`), that its `arguments` are JSON
//! valid under that function's `parameters` schema, that there is at most one call unless
//! `parallel_tool_calls`, and that `required` or a named choice did get a call.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sworn_ledger::ijson;
use sworn_ledger::receipt::{ParamValue, ReceiptBody};

/// Checks `tools` (the canonical bytes) against `body`, and the opened `answer` (when
/// disclosed) against `tools`. `Ok` says what held; `Err` why not.
pub fn check(body: &ReceiptBody, tools: &[u8], answer: Option<&[u8]>) -> Result<String, String> {
    let offer = ijson::parse(tools).map_err(|e| format!("the tools file is refused: {e}"))?;
    let param = |name: &str| match body.params.get(name) {
        Some(ParamValue::Str(s)) => Some(s.as_str()),
        _ => None,
    };
    let Some(recorded) = param("tools_sha256") else {
        return Err("the receipt records no tools: none were offered with its request".into());
    };
    if hex::encode(Sha256::digest(tools)) != recorded {
        return Err(
            "the tools file does not hash to the receipt's tools_sha256 (the \
                    canonical {parallel_tool_calls, tool_choice, tools}, byte for byte)"
                .into(),
        );
    }
    let named = offer
        .pointer("/tool_choice/function/name")
        .and_then(Value::as_str);
    let choice = match (offer.get("tool_choice"), named) {
        (Some(Value::String(c)), _) => c.as_str(),
        (_, Some(_)) => "function",
        _ => return Err("the tools file has no valid tool_choice".into()),
    };
    if param("tool_choice") != Some(choice) {
        return Err(format!(
            "the tools file's tool_choice {choice:?} is not the receipt's {:?}",
            param("tool_choice").unwrap_or("")
        ));
    }
    let held = format!("tools (tool_choice {choice}) are the receipt's, by SHA-256");
    let Some(answer) = answer else {
        return Ok(format!("{held}; no answer disclosed to check against them"));
    };
    let finish = body.response.finish_reason.as_str();
    if finish != "stop" {
        return Ok(format!(
            "{held}; the answer ended with finish reason {finish:?}, cut before it was \
             whole: not checked against them"
        ));
    }
    let calls = match serde_json::from_slice::<Value>(answer) {
        Ok(Value::Object(message))
            if message.len() == 2
                && message.contains_key("content")
                && message.get("tool_calls").is_some_and(Value::is_array) =>
        {
            message["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    if calls.is_empty() {
        return match choice {
            "required" | "function" => Err(format!(
                "the answer made no tool call, though tool_choice was {choice}"
            )),
            _ => Ok(format!("{held}; the answer made no tool call")),
        };
    }
    if choice == "none" {
        return Err("the answer made tool calls, though tool_choice was none".into());
    }
    let parallel = offer.get("parallel_tool_calls") != Some(&Value::Bool(false));
    if calls.len() > 1 && (!parallel || choice == "function") {
        return Err(format!(
            "the answer made {} tool calls where one was allowed",
            calls.len()
        ));
    }
    let functions = offer
        .get("tools")
        .and_then(Value::as_array)
        .ok_or("the tools file has no tools array")?;
    for (i, call) in calls.iter().enumerate() {
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str);
        let (Some(name), Some(arguments)) = (name, arguments) else {
            return Err(format!("tool call {i} has no function name or arguments"));
        };
        if named.is_some_and(|n| n != name) {
            return Err(format!(
                "tool call {i} names {name:?}, though tool_choice named {:?}",
                named.unwrap_or("")
            ));
        }
        let function = functions
            .iter()
            .find(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| format!("tool call {i} names {name:?}, which was not offered"))?;
        let arguments: Value = serde_json::from_str(arguments)
            .map_err(|e| format!("tool call {i}'s arguments are not JSON: {e}"))?;
        let empty = serde_json::json!({"type": "object", "properties": {}});
        let schema = function.pointer("/function/parameters").unwrap_or(&empty);
        let validator = jsonschema::validator_for(schema)
            .map_err(|e| format!("{name}'s parameters schema does not compile here: {e}"))?;
        if let Some(e) = validator.iter_errors(&arguments).next() {
            return Err(format!(
                "tool call {i} ({name}) violates its parameters schema at {:?}: {e}",
                e.instance_path().to_string()
            ));
        }
    }
    Ok(format!(
        "{held}; {} tool call(s), each to an offered function with arguments valid under its \
         schema",
        calls.len()
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sworn_ledger::jcs;

    use super::*;

    fn offer(choice: &Value, parallel: bool) -> Vec<u8> {
        jcs::canonicalize(&json!({
            "parallel_tool_calls": parallel,
            "tool_choice": choice,
            "tools": [{"type": "function", "function": {"name": "get_position",
                "parameters": {"type": "object", "properties": {"account": {"type": "string"}},
                    "required": ["account"]}}},
                {"type": "function", "function": {"name": "now"}}],
        }))
        .unwrap()
    }

    fn body(tools: &[u8], choice: &str, finish: &str) -> ReceiptBody {
        let commitment = json!("00".repeat(32));
        serde_json::from_value(json!({
            "v": 1, "kind": "receipt", "log": "x", "index": 0,
            "time": "2026-01-01T00:00:00.000000Z", "request_id": "r", "tenant": "t",
            "model": {"id": "m", "sha256": "s", "dtype": "d", "device": "cpu", "engine": "e", "libtorch": "l"},
            "params": {"tool_choice": choice, "tools_sha256": hex::encode(Sha256::digest(tools))},
            "prompt": {"commitment": commitment, "tokens": 1},
            "response": {"commitment": commitment, "tokens": 1, "finish_reason": finish},
        }))
        .unwrap()
    }

    fn message(calls: &[(&str, &str)]) -> Vec<u8> {
        let calls: Vec<Value> = (calls.iter().enumerate())
            .map(|(i, (name, arguments))| {
                json!({"id": format!("call_{i}"), "type": "function",
                    "function": {"name": name, "arguments": arguments}})
            })
            .collect();
        jcs::canonicalize(&json!({"content": null, "tool_calls": calls})).unwrap()
    }

    #[test]
    fn offered_tools_and_calls_they_allow_hold() {
        let tools = offer(&json!("auto"), true);
        let b = body(&tools, "auto", "stop");
        let calls = message(&[("get_position", r#"{"account":"A-1"}"#), ("now", "{}")]);
        let ok = check(&b, &tools, Some(&calls)).unwrap();
        assert!(ok.contains("2 tool call(s)"), "{ok}");
        let ok = check(&b, &tools, Some(b"12 shares")).unwrap();
        assert!(ok.contains("no tool call"), "{ok}");
        let named = offer(
            &json!({"type": "function", "function": {"name": "now"}}),
            true,
        );
        let ok = check(
            &body(&named, "function", "stop"),
            &named,
            Some(&message(&[("now", "{}")])),
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn other_tools_or_calls_they_do_not_allow_fail() {
        let tools = offer(&json!("auto"), true);
        let b = body(&tools, "auto", "stop");
        let other = offer(&json!("required"), true);
        assert!(
            check(&b, &other, None)
                .unwrap_err()
                .contains("does not hash")
        );
        for (calls, needle) in [
            (
                message(&[("get_position", r#"{"acct":"A-1"}"#)]),
                "violates its parameters",
            ),
            (message(&[("transfer", "{}")]), "not offered"),
            (message(&[("now", "not json")]), "not JSON"),
        ] {
            let err = check(&b, &tools, Some(&calls)).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
        let single = offer(&json!("auto"), false);
        let two = message(&[("now", "{}"), ("now", "{}")]);
        let err = check(&body(&single, "auto", "stop"), &single, Some(&two)).unwrap_err();
        assert!(err.contains("where one was allowed"), "{err}");
        let required = offer(&json!("required"), true);
        let err = check(&body(&required, "required", "stop"), &required, Some(b"hi")).unwrap_err();
        assert!(err.contains("made no tool call"), "{err}");
        let named = offer(
            &json!({"type": "function", "function": {"name": "now"}}),
            true,
        );
        let wrong = message(&[("get_position", r#"{"account":"A"}"#)]);
        let err = check(&body(&named, "function", "stop"), &named, Some(&wrong)).unwrap_err();
        assert!(err.contains("tool_choice named"), "{err}");
        let err = check(&body(&tools, "none", "stop"), &tools, None).unwrap_err();
        assert!(err.contains("not the receipt's"), "{err}");
        let ok = check(&body(&tools, "auto", "length"), &tools, Some(b"{\"tool")).unwrap();
        assert!(ok.contains("not checked"), "{ok}");
    }
}
