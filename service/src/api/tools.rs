//! `tools`, `tool_choice` and `parallel_tool_calls` (chat): what the model may call, how the
//! call is constrained, and what the receipt records.
//!
//! Only function tools are served, in the syntax of the model's chat template
//! ([`ToolSyntax`]):
//!
//! * **A template with tool syntax** (Hermes / Qwen2-style `<tool_call>` blocks, or
//!   Llama-3-style `{"name", "parameters"}` JSON) renders the callable tools itself, and
//!   a call is constrained ([`crate::engine::constraint`]) to that syntax with each
//!   call's arguments valid under its function's `parameters` schema. Under `"auto"` the
//!   model may also answer in prose, which no grammar can tell apart in advance, so it is
//!   not constrained and its output is read afterwards.
//! * **A template without** (the default SmolLM2 model's) gets them the generic way
//!   llama.cpp's server offers them to such models: the functions are described in a
//!   system message, and the answer is constrained to one JSON object,
//!   `{"tool_calls": [{"name": …, "arguments": {…}}, …]}` or, under `"auto"` only,
//!   `{"content": "…"}`.
//!
//! `"required"` allows calls only; a named function allows one call to it; one call
//! unless `parallel_tool_calls`; `"none"` offers nothing and constrains nothing. The
//! swearing step reads the output into `message.tool_calls` or `message.content`
//! ([`crate::swear::answer`]).
//!
//! The receipt binds the offer: `params.tool_choice` names the choice and
//! `params.tools_sha256` is the SHA-256 of the canonical (RFC 8785) JSON of
//! `{"parallel_tool_calls", "tool_choice", "tools"}` as applied — the request's `tools`
//! array as sent, `tool_choice` as sent or `"auto"`, `parallel_tool_calls` as sent or
//! `true` — so an auditor given the same three can show which tools an answer was produced
//! under (`sworn-verify content --tools`).

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use sworn_ledger::jcs;

use super::errors::ApiError;
use crate::engine::constraint::ConstraintSpec;
use crate::scheduler::request::{ToolOffer, ToolSyntax};

/// Most tools per request (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;
/// Longest function name (OpenAI's limit).
const MAX_NAME_LEN: usize = 64;

/// Which calls the model may make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// No calls; the tools are not offered.
    None,
    /// Calls or a plain answer, as the model decides.
    Auto,
    /// At least one call.
    Required,
    /// Exactly one call, to this function.
    Function(String),
}

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    /// Its name.
    pub name: String,
    /// What it does, if said.
    pub description: Option<String>,
    /// The JSON Schema of its arguments (an object with no properties when not given).
    pub parameters: Value,
}

/// The request's tools, checked, with their receipt binding.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolUse {
    /// The functions, in the request's order.
    pub functions: Vec<Function>,
    /// Which calls are allowed.
    pub choice: ToolChoice,
    /// Whether one answer may make several calls.
    pub parallel: bool,
    /// SHA-256 (hex) of the canonical applied `{parallel_tool_calls, tool_choice, tools}`.
    pub sha256: String,
}

impl ToolUse {
    /// `none`, `auto`, `required` or `function`, as `params.tool_choice` records it.
    pub fn kind(&self) -> &'static str {
        match self.choice {
            ToolChoice::None => "none",
            ToolChoice::Auto => "auto",
            ToolChoice::Required => "required",
            ToolChoice::Function(_) => "function",
        }
    }

    /// Whether calls may be made at all (the answer is then constrained JSON).
    pub fn offered(&self) -> bool {
        self.choice != ToolChoice::None
    }

    /// The functions a call may name under the choice.
    fn callable(&self) -> impl Iterator<Item = &Function> {
        self.functions.iter().filter(|f| match &self.choice {
            ToolChoice::Function(name) => &f.name == name,
            ToolChoice::None => false,
            ToolChoice::Auto | ToolChoice::Required => true,
        })
    }

    /// Whether one answer may make several calls under the choice.
    fn several(&self) -> bool {
        self.parallel && !matches!(self.choice, ToolChoice::Function(_))
    }

    /// The schema of one call: the function's name and its arguments under
    /// `arguments_key`, any callable function.
    fn call_schema(&self, arguments_key: &str) -> Value {
        let calls: Vec<Value> = self
            .callable()
            .map(|f| {
                json!({
                    "type": "object",
                    "properties": {"name": {"const": f.name}, arguments_key: f.parameters},
                    "required": ["name", arguments_key],
                    "additionalProperties": false,
                })
            })
            .collect();
        match <[Value; 1]>::try_from(calls) {
            Ok([one]) => one,
            Err(many) => json!({"anyOf": many}),
        }
    }

    /// The constraint on the answer in the template's `syntax`: `None` under
    /// `tool_choice: "none"`, and under `"auto"` for a template with tool syntax.
    pub fn constraint(&self, syntax: ToolSyntax) -> Option<ConstraintSpec> {
        if !self.offered() {
            return None;
        }
        match (syntax, &self.choice) {
            (ToolSyntax::Generic, _) => Some(self.generic_constraint()),
            (_, ToolChoice::Auto) => None,
            (ToolSyntax::Hermes, _) => Some(ConstraintSpec::Tagged {
                open: "<tool_call>\n".into(),
                schema: self.call_schema("arguments"),
                close: "\n</tool_call>".into(),
                separator: self.several().then(|| "\n".to_string()),
            }),
            // Llama 3's syntax has one call per answer.
            (ToolSyntax::Llama3, _) => Some(ConstraintSpec::JsonSchema {
                schema: self.call_schema("parameters"),
            }),
        }
    }

    /// The tools as a template with tool syntax renders them (`None` under `"none"`), and
    /// the system text that offers them to one without.
    pub fn offer(&self) -> Option<ToolOffer> {
        let instructions = self.system_text()?;
        let tools = self
            .callable()
            .map(|f| {
                let mut function = Map::new();
                function.insert("name".into(), Value::String(f.name.clone()));
                if let Some(d) = &f.description {
                    function.insert("description".into(), Value::String(d.clone()));
                }
                function.insert("parameters".into(), f.parameters.clone());
                json!({"type": "function", "function": function})
            })
            .collect();
        Some(ToolOffer {
            tools: Value::Array(tools),
            instructions,
        })
    }

    /// The generic constraint: `{"tool_calls": […]}`, or `{"content"}` under `"auto"`.
    fn generic_constraint(&self) -> ConstraintSpec {
        let item = self.call_schema("arguments");
        let mut array = json!({"type": "array", "items": item, "minItems": 1});
        if !self.several() {
            array["maxItems"] = json!(1);
        }
        let calls = json!({
            "type": "object",
            "properties": {"tool_calls": array},
            "required": ["tool_calls"],
            "additionalProperties": false,
        });
        let schema = match self.choice {
            ToolChoice::Auto => json!({"anyOf": [calls, {
                "type": "object",
                "properties": {"content": {"type": "string"}},
                "required": ["content"],
                "additionalProperties": false,
            }]}),
            _ => calls,
        };
        ConstraintSpec::JsonSchema { schema }
    }

    /// The system message that offers the tools, `None` under `tool_choice: "none"`.
    pub fn system_text(&self) -> Option<String> {
        if !self.offered() {
            return None;
        }
        let listed: Vec<Value> = self
            .callable()
            .map(|f| {
                let mut entry = Map::new();
                entry.insert("name".into(), Value::String(f.name.clone()));
                if let Some(description) = &f.description {
                    entry.insert("description".into(), Value::String(description.clone()));
                }
                entry.insert("parameters".into(), f.parameters.clone());
                Value::Object(entry)
            })
            .collect();
        let tools = serde_json::to_string_pretty(&listed).unwrap_or_default();
        let how = match self.choice {
            ToolChoice::Auto => {
                "To call tools, answer with a JSON object {\"tool_calls\": [{\"name\": ..., \
                 \"arguments\": {...}}]}. To answer directly instead, answer with a JSON \
                 object {\"content\": \"your answer\"}."
            }
            _ => {
                "Answer by calling a tool, with a JSON object {\"tool_calls\": [{\"name\": \
                 ..., \"arguments\": {...}}]}."
            }
        };
        Some(format!("You can call these tools:\n{tools}\n{how}"))
    }
}

/// Reads `tools`, `tool_choice` and `parallel_tool_calls` from the request object: `None`
/// when there are no tools.
pub fn check(object: &Map<String, Value>) -> Result<Option<ToolUse>, ApiError> {
    let tools = object.get("tools").filter(|v| !v.is_null());
    let choice = object.get("tool_choice").filter(|v| !v.is_null());
    let parallel = object.get("parallel_tool_calls").filter(|v| !v.is_null());
    let Some(tools) = tools else {
        if choice.is_some() {
            return Err(ApiError::invalid_value(
                "tool_choice",
                "`tool_choice` is only allowed when `tools` are given.",
            ));
        }
        if parallel.is_some() {
            return Err(ApiError::invalid_value(
                "parallel_tool_calls",
                "`parallel_tool_calls` is only allowed when `tools` are given.",
            ));
        }
        return Ok(None);
    };
    let Value::Array(list) = tools else {
        return Err(invalid("tools", "`tools` must be an array."));
    };
    if list.is_empty() || list.len() > MAX_TOOLS {
        return Err(invalid(
            "tools",
            format!(
                "`tools` must hold 1 to {MAX_TOOLS} tools. Given: {}",
                list.len()
            ),
        ));
    }
    let mut functions = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let function = function(i, tool)?;
        if functions.iter().any(|f: &Function| f.name == function.name) {
            return Err(invalid(
                "tools",
                format!(
                    "`tools[{i}]`: the function name {} is given twice.",
                    Value::String(function.name)
                ),
            ));
        }
        functions.push(function);
    }
    let choice_value = choice.cloned().unwrap_or_else(|| json!("auto"));
    let choice = tool_choice(&choice_value, &functions)?;
    let parallel_value = parallel.cloned().unwrap_or(Value::Bool(true));
    let Value::Bool(parallel) = parallel_value else {
        return Err(invalid(
            "parallel_tool_calls",
            "`parallel_tool_calls` must be a boolean.",
        ));
    };
    let applied = json!({
        "parallel_tool_calls": parallel,
        "tool_choice": choice_value,
        "tools": tools,
    });
    let canonical = jcs::canonicalize(&applied).map_err(|e| {
        invalid(
            "tools",
            format!("`tools` cannot be canonicalised for the receipt: {e}"),
        )
    })?;
    Ok(Some(ToolUse {
        functions,
        choice,
        parallel,
        sha256: hex::encode(Sha256::digest(&canonical)),
    }))
}

fn function(i: usize, tool: &Value) -> Result<Function, ApiError> {
    let at = format!("tools[{i}]");
    let Value::Object(tool) = tool else {
        return Err(invalid("tools", format!("`{at}` must be an object.")));
    };
    match tool.get("type") {
        Some(Value::String(kind)) if kind == "function" => {}
        Some(Value::String(kind)) => {
            return Err(ApiError::unsupported(
                "tools",
                format!(
                    "`{at}.type`: only `function` tools are supported. Given: {}",
                    Value::String(kind.clone())
                ),
            ));
        }
        _ => {
            return Err(invalid(
                "tools",
                format!("`{at}.type` must be \"function\"."),
            ));
        }
    }
    only(tool, &["type", "function"], &at)?;
    let Some(Value::Object(spec)) = tool.get("function") else {
        return Err(invalid(
            "tools",
            format!("`{at}.function` must be an object with a `name`."),
        ));
    };
    let at = format!("{at}.function");
    only(spec, &["name", "description", "parameters", "strict"], &at)?;
    let name = match spec.get("name") {
        Some(Value::String(name)) if valid_name(name) => name.clone(),
        _ => {
            return Err(invalid(
                "tools",
                format!(
                    "`{at}.name` must be 1-{MAX_NAME_LEN} characters of a-z, A-Z, 0-9, `_` and `-`."
                ),
            ));
        }
    };
    let description = match spec.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => {
            return Err(invalid(
                "tools",
                format!("`{at}.description` must be a string."),
            ));
        }
    };
    if spec
        .get("strict")
        .is_some_and(|s| !s.is_boolean() && !s.is_null())
    {
        return Err(invalid(
            "tools",
            format!("`{at}.strict` must be a boolean."),
        ));
    }
    let parameters = match spec.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(schema @ Value::Object(_)) => schema.clone(),
        Some(_) => {
            return Err(invalid(
                "tools",
                format!("`{at}.parameters` must be a JSON Schema object."),
            ));
        }
    };
    Ok(Function {
        name,
        description,
        parameters,
    })
}

fn tool_choice(value: &Value, functions: &[Function]) -> Result<ToolChoice, ApiError> {
    const PARAM: &str = "tool_choice";
    match value {
        Value::String(s) => match s.as_str() {
            "none" => Ok(ToolChoice::None),
            "auto" => Ok(ToolChoice::Auto),
            "required" => Ok(ToolChoice::Required),
            other => Err(invalid(
                PARAM,
                format!(
                    "`tool_choice` must be \"none\", \"auto\", \"required\" or a named function. Given: {}",
                    Value::String(other.to_owned())
                ),
            )),
        },
        Value::Object(object) => {
            only(object, &["type", "function"], PARAM)?;
            let name = match (object.get("type"), object.get("function")) {
                (Some(Value::String(t)), Some(Value::Object(f))) if t == "function" => {
                    only(f, &["name"], "tool_choice.function")?;
                    f.get("name").and_then(Value::as_str)
                }
                _ => None,
            };
            let Some(name) = name else {
                return Err(invalid(
                    PARAM,
                    "`tool_choice` must be {\"type\": \"function\", \"function\": {\"name\": …}}.",
                ));
            };
            if !functions.iter().any(|f| f.name == name) {
                return Err(invalid(
                    PARAM,
                    format!(
                        "`tool_choice` names the function {}, which is not in `tools`.",
                        Value::String(name.to_owned())
                    ),
                ));
            }
            Ok(ToolChoice::Function(name.to_owned()))
        }
        _ => Err(invalid(
            PARAM,
            "`tool_choice` must be a string or an object.",
        )),
    }
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Refuses members of `object` outside `allowed`, naming the first.
fn only(object: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), ApiError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => Err(invalid(
            if at.starts_with("tool_choice") {
                "tool_choice"
            } else {
                "tools"
            },
            format!(
                "`{at}` has an unknown member {}; allowed: {}.",
                Value::String(extra.clone()),
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_value(param, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn weather() -> Value {
        json!([{"type": "function", "function": {
            "name": "get_position",
            "description": "The position of an account.",
            "parameters": {"type": "object", "properties": {"account": {"type": "string"}},
                "required": ["account"]}
        }}, {"type": "function", "function": {"name": "now"}}])
    }

    fn refused(value: Value) -> (String, String) {
        match check(&object(value)).unwrap_err() {
            ApiError::InvalidValue { message, param } => (param, message),
            ApiError::UnsupportedParameter { message, param } => (param, message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_are_auto_and_parallel_and_the_hash_covers_what_was_applied() {
        let tools = check(&object(json!({"tools": weather()})))
            .unwrap()
            .unwrap();
        assert_eq!(tools.choice, ToolChoice::Auto);
        assert!(tools.parallel);
        assert_eq!(
            tools.functions[1].parameters,
            json!({"type": "object", "properties": {}})
        );
        let explicit = check(&object(json!({
            "tools": weather(), "tool_choice": "auto", "parallel_tool_calls": true
        })))
        .unwrap()
        .unwrap();
        assert_eq!(tools.sha256, explicit.sha256, "defaults hash as if sent");
        let canonical = jcs::canonicalize(&json!({
            "parallel_tool_calls": true, "tool_choice": "auto", "tools": weather()
        }))
        .unwrap();
        assert_eq!(tools.sha256, hex::encode(Sha256::digest(canonical)));
        for changed in [
            json!({"tools": weather(), "tool_choice": "required"}),
            json!({"tools": weather(), "parallel_tool_calls": false}),
            json!({"tools": [weather()[0]]}),
        ] {
            assert_ne!(
                check(&object(changed)).unwrap().unwrap().sha256,
                tools.sha256
            );
        }
        assert_eq!(check(&object(json!({}))).unwrap(), None);
    }

    #[test]
    fn each_choice_constrains_the_answer_it_allows() {
        let spec = |extra: Value| {
            let mut request = object(json!({"tools": weather()}));
            request.extend(object(extra));
            let tools = check(&request).unwrap().unwrap();
            match tools.constraint(ToolSyntax::Generic) {
                Some(ConstraintSpec::JsonSchema { schema }) => Some(schema),
                None => None,
                other => panic!("{other:?}"),
            }
        };
        let auto = spec(json!({})).unwrap();
        assert_eq!(auto["anyOf"].as_array().unwrap().len(), 2);
        assert_eq!(auto["anyOf"][1]["required"], json!(["content"]));
        let required =
            spec(json!({"tool_choice": "required", "parallel_tool_calls": false})).unwrap();
        let calls = &required["properties"]["tool_calls"];
        assert_eq!(
            (calls["minItems"].clone(), calls["maxItems"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(calls["items"]["anyOf"].as_array().unwrap().len(), 2);
        let named = spec(
            json!({"tool_choice": {"type": "function", "function": {"name": "get_position"}}}),
        )
        .unwrap();
        let item = &named["properties"]["tool_calls"]["items"];
        assert_eq!(item["properties"]["name"], json!({"const": "get_position"}));
        assert_eq!(
            item["properties"]["arguments"]["required"],
            json!(["account"])
        );
        assert_eq!(named["properties"]["tool_calls"]["maxItems"], json!(1));
        assert_eq!(spec(json!({"tool_choice": "none"})), None);
    }

    #[test]
    fn malformed_tools_are_refused_by_name() {
        for (request, param, needle) in [
            (
                json!({"tool_choice": "auto"}),
                "tool_choice",
                "only allowed when `tools`",
            ),
            (json!({"tools": {}}), "tools", "must be an array"),
            (json!({"tools": []}), "tools", "1 to 128"),
            (
                json!({"tools": [{"type": "custom", "custom": {}}]}),
                "tools",
                "only `function`",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "a b"}}]}),
                "tools",
                "name` must be",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}),
                "tools",
                "JSON Schema object",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "x": 1}}]}),
                "tools",
                "unknown member \"x\"",
            ),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}]}),
                "tools",
                "given twice",
            ),
            (
                json!({"tools": weather(), "tool_choice": "always"}),
                "tool_choice",
                "\"always\"",
            ),
            (
                json!({"tools": weather(), "tool_choice": {"type": "function", "function": {"name": "gone"}}}),
                "tool_choice",
                "not in `tools`",
            ),
            (
                json!({"tools": weather(), "parallel_tool_calls": "yes"}),
                "parallel_tool_calls",
                "boolean",
            ),
        ] {
            let (got_param, message) = refused(request.clone());
            assert_eq!(got_param, param, "{request}");
            assert!(message.contains(needle), "{request}: {message}");
        }
    }

    #[test]
    fn the_system_message_lists_only_callable_functions() {
        let named = check(&object(json!({"tools": weather(),
            "tool_choice": {"type": "function", "function": {"name": "now"}}})))
        .unwrap()
        .unwrap();
        let text = named.system_text().unwrap();
        assert!(
            text.contains("\"now\"") && !text.contains("get_position"),
            "{text}"
        );
        let none = check(&object(json!({"tools": weather(), "tool_choice": "none"})))
            .unwrap()
            .unwrap();
        assert_eq!(none.system_text(), None);
        assert!(!none.offered());
    }
}
