//! The answer a receipt commits to: text, or (when tools were offered) the calls the model
//! made.
//!
//! A model with offered tools writes its calls in its template's syntax
//! ([`crate::api::tools`]): the generic JSON `{"tool_calls": [{"name", "arguments"}, …]}`
//! or `{"content": "…"}`; Hermes / Qwen2-style `<tool_call>\n{"name", "arguments"}\n
//! </tool_call>` blocks (text outside them is content); or Llama-3-style `{"name",
//! "parameters"}`. A whole answer in that syntax becomes `message.tool_calls` (each call
//! with an id and its `arguments` as compact JSON text, as OpenAI sends them) and
//! `message.content`; anything else (prose under `"auto"`, an answer cut by `max_tokens`,
//! a client gone, a failed constraint) stays the raw text.
//!
//! What the response commitment covers is what the client is given: an answer without
//! calls is its text, as always; an answer with calls is the canonical JSON (RFC 8785) of
//! `{"content": text or null, "tool_calls": [{"id", "type": "function", "function":
//! {"name", "arguments"}}, …]}` ([`Answer::committed`]). So the form is decided by the
//! answer a client holds, and a verifier rebuilds the same bytes from it.

use serde_json::{Value, json};

use crate::scheduler::request::ToolSyntax;

/// One call the model made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The call's id (`call_…`), unique within the answer.
    pub id: String,
    /// The function called.
    pub name: String,
    /// Its arguments: a JSON object as compact text.
    pub arguments: String,
}

/// A finished answer, as the client receives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    /// The text (`message.content`); `None` for an answer made only of calls.
    pub content: Option<String>,
    /// The calls, in order (empty for a text answer).
    pub tool_calls: Vec<ToolCall>,
}

impl Answer {
    /// A plain text answer.
    pub fn text(text: String) -> Self {
        Answer {
            content: Some(text),
            tool_calls: Vec::new(),
        }
    }

    /// Reads what a model with offered tools wrote, in its template's `syntax`; `call_id(i)`
    /// names the i-th call.
    pub fn from_tool_output(
        raw: String,
        syntax: ToolSyntax,
        call_id: impl Fn(usize) -> String,
    ) -> Self {
        match syntax {
            ToolSyntax::Generic => Self::from_tool_json(raw, call_id),
            ToolSyntax::Hermes => Self::from_tool_blocks(raw, call_id),
            ToolSyntax::Llama3 => Self::from_llama3(raw, call_id),
        }
    }

    /// Hermes / Qwen2-style: every `<tool_call>…</tool_call>` block holding `{"name",
    /// "arguments"}` is a call; the text around them, trimmed, is the content.
    fn from_tool_blocks(raw: String, call_id: impl Fn(usize) -> String) -> Self {
        const OPEN: &str = "<tool_call>";
        const CLOSE: &str = "</tool_call>";
        let mut calls = Vec::new();
        let mut content = String::new();
        let mut rest = raw.as_str();
        while let Some(start) = rest.find(OPEN) {
            let after = &rest[start + OPEN.len()..];
            let Some(end) = after.find(CLOSE) else {
                return Answer::text(raw);
            };
            let Some(call) = call_of(&after[..end], "arguments", calls.len(), &call_id) else {
                return Answer::text(raw);
            };
            content.push_str(&rest[..start]);
            calls.push(call);
            rest = &after[end + CLOSE.len()..];
        }
        if calls.is_empty() {
            return Answer::text(raw);
        }
        content.push_str(rest);
        let content = content.trim();
        Answer {
            content: (!content.is_empty()).then(|| content.to_owned()),
            tool_calls: calls,
        }
    }

    /// Llama-3-style: the whole answer (after an optional `<|python_tag|>`) is one
    /// `{"name", "parameters"}` object.
    fn from_llama3(raw: String, call_id: impl Fn(usize) -> String) -> Self {
        let body = raw.trim();
        let body = body.strip_prefix("<|python_tag|>").unwrap_or(body);
        match call_of(body, "parameters", 0, &call_id) {
            Some(call) => Answer {
                content: None,
                tool_calls: vec![call],
            },
            None => Answer::text(raw),
        }
    }

    /// Reads the constrained JSON a model with offered tools wrote; `call_id(i)` names the
    /// i-th call. Text that is not that JSON stays the answer's text.
    pub fn from_tool_json(raw: String, call_id: impl Fn(usize) -> String) -> Self {
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(&raw) else {
            return Answer::text(raw);
        };
        match (object.get("tool_calls"), object.get("content")) {
            (Some(Value::Array(calls)), None) if !calls.is_empty() => {
                let mut parsed = Vec::with_capacity(calls.len());
                for (i, call) in calls.iter().enumerate() {
                    let (Some(Value::String(name)), Some(arguments)) =
                        (call.get("name"), call.get("arguments"))
                    else {
                        return Answer::text(raw);
                    };
                    parsed.push(ToolCall {
                        id: call_id(i),
                        name: name.clone(),
                        arguments: arguments.to_string(),
                    });
                }
                Answer {
                    content: None,
                    tool_calls: parsed,
                }
            }
            (None, Some(Value::String(content))) if object.len() == 1 => {
                Answer::text(content.clone())
            }
            _ => Answer::text(raw),
        }
    }

    /// The text the client is sent (empty for calls alone).
    pub fn content_text(&self) -> &str {
        self.content.as_deref().unwrap_or("")
    }

    /// The bytes the response commitment covers (see the module documentation).
    pub fn committed(&self) -> Vec<u8> {
        if self.tool_calls.is_empty() {
            return self.content_text().as_bytes().to_vec();
        }
        let calls: Vec<Value> = (self.tool_calls.iter())
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                })
            })
            .collect();
        let message = json!({"content": self.content, "tool_calls": calls});
        // Strings and arrays only: canonicalisation cannot fail.
        sworn_ledger::jcs::canonicalize(&message).unwrap_or_default()
    }
}

/// One call written as the JSON `{"name": …, arguments_key: {…}}`.
fn call_of(
    text: &str,
    arguments_key: &str,
    index: usize,
    call_id: &impl Fn(usize) -> String,
) -> Option<ToolCall> {
    let Value::Object(call) = serde_json::from_str::<Value>(text.trim()).ok()? else {
        return None;
    };
    let (Some(Value::String(name)), Some(arguments)) = (call.get("name"), call.get(arguments_key))
    else {
        return None;
    };
    Some(ToolCall {
        id: call_id(index),
        name: name.clone(),
        arguments: arguments.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: usize) -> String {
        format!("call_x_{i}")
    }

    #[test]
    fn calls_and_content_are_read_from_the_constrained_json() {
        let calls = Answer::from_tool_json(
            r#"{"tool_calls": [{"name": "get_position", "arguments": {"account": "A-1", "n": 2}}, {"name": "now", "arguments": {}}]}"#.into(),
            id,
        );
        assert_eq!(calls.content, None);
        assert_eq!(
            calls.tool_calls,
            [
                ToolCall {
                    id: "call_x_0".into(),
                    name: "get_position".into(),
                    arguments: r#"{"account":"A-1","n":2}"#.into()
                },
                ToolCall {
                    id: "call_x_1".into(),
                    name: "now".into(),
                    arguments: "{}".into()
                }
            ]
        );
        let committed = String::from_utf8(calls.committed()).unwrap();
        assert_eq!(
            committed,
            r#"{"content":null,"tool_calls":[{"function":{"arguments":"{\"account\":\"A-1\",\"n\":2}","name":"get_position"},"id":"call_x_0","type":"function"},{"function":{"arguments":"{}","name":"now"},"id":"call_x_1","type":"function"}]}"#
        );
        let content = Answer::from_tool_json(r#"{"content": "12 is the answer."}"#.into(), id);
        assert_eq!(content, Answer::text("12 is the answer.".into()));
        assert_eq!(content.committed(), b"12 is the answer.");
    }

    #[test]
    fn template_syntaxes_are_read_into_calls() {
        let hermes = "Let me look.\n<tool_call>\n{\"name\": \"get_position\", \"arguments\": {\"account\": \"A-1\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>";
        let read = Answer::from_tool_output(hermes.into(), ToolSyntax::Hermes, id);
        assert_eq!(read.content.as_deref(), Some("Let me look."));
        assert_eq!(
            read.tool_calls
                .iter()
                .map(|c| (c.name.as_str(), c.arguments.as_str()))
                .collect::<Vec<_>>(),
            [("get_position", r#"{"account":"A-1"}"#), ("now", "{}")]
        );
        let llama = r#"<|python_tag|>{"name": "now", "parameters": {"tz": "UTC"}}"#;
        let read = Answer::from_tool_output(llama.into(), ToolSyntax::Llama3, id);
        assert_eq!(read.tool_calls[0].arguments, r#"{"tz":"UTC"}"#);
        assert_eq!(read.content, None);
        // Prose, or a block that does not close or hold a call, stays text.
        for (raw, syntax) in [
            ("It is noon.", ToolSyntax::Hermes),
            ("<tool_call>\n{\"name\": \"now\"", ToolSyntax::Hermes),
            (
                "<tool_call>{\"name\": 3, \"arguments\": {}}</tool_call>",
                ToolSyntax::Hermes,
            ),
            ("It is noon.", ToolSyntax::Llama3),
            (r#"{"name": "now", "arguments": {}}"#, ToolSyntax::Llama3),
        ] {
            assert_eq!(
                Answer::from_tool_output(raw.into(), syntax, id),
                Answer::text(raw.into())
            );
        }
    }

    #[test]
    fn anything_else_stays_the_raw_text() {
        for raw in [
            r#"{"tool_calls": [{"name": "get_pos"#,
            r#"{"tool_calls": []}"#,
            r#"{"tool_calls": [{"arguments": {}}]}"#,
            r#"{"content": 3}"#,
            r#"{"content": "a", "tool_calls": []}"#,
            "[1]",
            "plain words",
        ] {
            assert_eq!(
                Answer::from_tool_json(raw.into(), id),
                Answer::text(raw.into())
            );
        }
    }
}
