//! Chat templates: the model's own Jinja template (`tokenizer.chat_template` in a GGUF,
//! `chat_template` in `tokenizer_config.json`) turns a conversation into the prompt text,
//! rendered with minijinja configured like transformers' `apply_chat_template`.
//!
//! transformers renders with Jinja2 in a sandbox with `trim_blocks` and `lstrip_blocks`,
//! the `loopcontrols` extension, a `raise_exception` function, `strftime_now`, and the
//! special-token strings (`bos_token`, `eos_token`) as variables; Python string methods
//! (`.strip()`, `.startswith()`…) come from minijinja-contrib's pycompat layer. A template
//! that fails to parse, or raises, is an error naming why, never a panic.

use minijinja::{Environment, Error, ErrorKind, Value, context};
use serde::Serialize;

use crate::engine::gguf::{GgufError, GgufFile};
use crate::scheduler::request::ToolSyntax;

/// The name the template is stored under inside its environment.
const TEMPLATE_NAME: &str = "chat";

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (or whatever the template accepts).
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Why a chat template could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    /// The model file carries no chat template.
    #[error("the model has no chat template (`{key}`)")]
    Missing {
        /// The key the template was looked for under.
        key: &'static str,
    },
    /// GGUF metadata the template needs is malformed.
    #[error("chat template metadata: {source}")]
    Metadata {
        /// The lookup that failed.
        #[source]
        source: GgufError,
    },
    /// `tokenizer_config.json` is unreadable.
    #[error("tokenizer_config.json: {reason}")]
    Config {
        /// The JSON parse error.
        reason: String,
    },
    /// The template is not valid Jinja.
    #[error("chat template does not parse: {reason}")]
    Syntax {
        /// The template parser's message.
        reason: String,
    },
    /// Rendering failed, or the template called `raise_exception`.
    #[error("chat template failed to render: {reason}")]
    Render {
        /// The renderer's message, or the template's own `raise_exception` text.
        reason: String,
    },
}

/// A compiled chat template and the special-token strings it may refer to.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    /// How the template lets the model call tools.
    tool_syntax: ToolSyntax,
}

impl ChatTemplate {
    /// The template of a GGUF file, with its BOS/EOS token strings.
    pub fn from_gguf(file: &GgufFile) -> Result<ChatTemplate, ChatTemplateError> {
        const KEY: &str = "tokenizer.chat_template";
        if file.get(KEY).is_none() {
            return Err(ChatTemplateError::Missing { key: KEY });
        }
        let template = file
            .get_str(KEY)
            .map_err(|source| ChatTemplateError::Metadata { source })?;
        let token = |key: &str| -> Result<String, ChatTemplateError> {
            if file.get(key).is_none() {
                return Ok(String::new());
            }
            let meta = |source| ChatTemplateError::Metadata { source };
            let id = file.get_u32(key).map_err(meta)?;
            let tokens = file.get_array("tokenizer.ggml.tokens").map_err(meta)?;
            Ok(tokens
                .get(id as usize)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string())
        };
        Self::from_str(
            template,
            token("tokenizer.ggml.bos_token_id")?,
            token("tokenizer.ggml.eos_token_id")?,
        )
    }

    /// The template of a Hugging Face `tokenizer_config.json` (its `chat_template`, or the
    /// entry named `default` when it lists several), with its `bos_token`/`eos_token`.
    pub fn from_tokenizer_config(json: &[u8]) -> Result<ChatTemplate, ChatTemplateError> {
        let config: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| ChatTemplateError::Config {
                reason: e.to_string(),
            })?;
        let template = match config.get("chat_template") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template").and_then(|s| s.as_str()))
                .map(str::to_string)
                .ok_or(ChatTemplateError::Missing {
                    key: "chat_template[name=default]",
                })?,
            _ => {
                return Err(ChatTemplateError::Missing {
                    key: "chat_template",
                });
            }
        };
        // Special tokens are either strings or `{"content": ...}` objects.
        let token = |key: &str| -> String {
            match config.get(key) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v
                    .get("content")
                    .and_then(|c| c.as_str())
                    .unwrap_or_default()
                    .to_string(),
                None => String::new(),
            }
        };
        Self::from_str(&template, token("bos_token"), token("eos_token"))
    }

    /// Compiles `template`; `bos_token`/`eos_token` are the strings it sees under those names.
    pub fn from_str(
        template: &str,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<ChatTemplate, ChatTemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, template.to_string())
            .map_err(|e| ChatTemplateError::Syntax {
                reason: describe(&e),
            })?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            tool_syntax: tool_syntax_of(template),
        })
    }

    /// How the template lets the model call tools: Hermes / Qwen2-style when it renders
    /// `tools` and writes `<tool_call>` blocks, Llama-3-style when it renders `tools` for
    /// the `ipython` environment, and otherwise none of its own (generic).
    pub fn tool_syntax(&self) -> ToolSyntax {
        self.tool_syntax
    }

    /// The prompt text for `messages` given as JSON objects (`role`, `content`, and
    /// `tool_calls` / `tool_call_id` as templates with tool syntax read them), with the
    /// callable `tools` (OpenAI's `[{"type": "function", "function": {…}}]`) when offered.
    pub fn render_with_tools(
        &self,
        messages: &[serde_json::Value],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        let tools = tools.map_or(Value::from(()), Value::from_serialize);
        let messages = Value::from_serialize(messages);
        self.render_values(&messages, &tools, add_generation_prompt)
    }

    /// The prompt text for `messages`; `add_generation_prompt` appends the opening of an
    /// assistant turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        let messages = Value::from_serialize(messages);
        self.render_values(&messages, &Value::from(()), add_generation_prompt)
    }

    fn render_values(
        &self,
        messages: &Value,
        tools: &Value,
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        let render_error = |e: &Error| ChatTemplateError::Render {
            reason: describe(e),
        };
        let template = (self.env.get_template(TEMPLATE_NAME)).map_err(|e| render_error(&e))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
                tools => tools,
            })
            .map_err(|e| render_error(&e))
    }
}

/// The tool syntax a template's source shows (see [`ChatTemplate::tool_syntax`]).
fn tool_syntax_of(source: &str) -> ToolSyntax {
    let renders_tools = source.contains("tools");
    if renders_tools && source.contains("<tool_call>") {
        ToolSyntax::Hermes
    } else if renders_tools && (source.contains("ipython") || source.contains("<|python_tag|>")) {
        ToolSyntax::Llama3
    } else {
        ToolSyntax::Generic
    }
}

/// A minijinja error with its chain of causes (the template line is in the detail).
fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// `raise_exception(message)`: templates use it to refuse a conversation shape.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current UTC date and time, for templates that print today's
/// date. Supports `%Y %y %m %d %e %b %B %a %A %H %M %S %j %%`; other directives are kept.
fn strftime_now(format: &str) -> Result<Value, Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Value::from(format_utc(format, secs)))
}

/// Formats `secs` since the Unix epoch (UTC) with a subset of `strftime` directives.
pub(crate) fn format_utc(format: &str, secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days);
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let weekday = DAYS[(days % 7) as usize];
    let month_name = MONTHS[(month - 1) as usize];
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('b') => out.push_str(&month_name[..3]),
            Some('B') => out.push_str(month_name),
            Some('a') => out.push_str(&weekday[..3]),
            Some('A') => out.push_str(weekday),
            Some('H') => out.push_str(&format!("{h:02}")),
            Some('M') => out.push_str(&format!("{m:02}")),
            Some('S') => out.push_str(&format!("{s:02}")),
            Some('j') => out.push_str(&format!("{day_of_year:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a date on or after it (inverse of [`civil_from_days`]).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y % 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template in the Hermes / Qwen2 style, written for this test: it lists `tools`,
    /// writes an answer's calls as `<tool_call>` blocks and a tool's result as its own turn.
    const HERMES_STYLE: &str = r#"{% if tools %}<|im_start|>system
You may call these functions:
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}Write each call as <tool_call>
{"name": ..., "arguments": ...}
</tool_call><|im_end|>
{% endif %}{% for message in messages %}{% if message.role == "tool" %}<|im_start|>user
<tool_response>{{ message.content }}</tool_response><|im_end|>
{% elif message.tool_calls %}<|im_start|>assistant
{% for call in message.tool_calls %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"#;

    #[test]
    fn tool_syntax_is_read_from_the_template() {
        let syntax = |source: &str| {
            ChatTemplate::from_str(source, "", "")
                .unwrap()
                .tool_syntax()
        };
        assert_eq!(syntax(HERMES_STYLE), ToolSyntax::Hermes);
        let llama = "{% if tools %}Environment: ipython\n{% for t in tools %}{{ t | tojson }}{% endfor %}{% endif %}";
        assert_eq!(syntax(llama), ToolSyntax::Llama3);
        assert_eq!(syntax("{{ messages[0].content }}"), ToolSyntax::Generic);
    }

    #[test]
    fn a_template_with_tool_syntax_renders_tools_calls_and_results() {
        let template = ChatTemplate::from_str(HERMES_STYLE, "", "").unwrap();
        let tools = serde_json::json!([{"type": "function", "function": {"name": "now"}}]);
        let messages = [
            serde_json::json!({"role": "user", "content": "Time?"}),
            serde_json::json!({"role": "assistant", "content": "", "tool_calls": [{"id": "c1",
                "type": "function", "function": {"name": "now", "arguments": {"tz": "UTC"}}}]}),
            serde_json::json!({"role": "tool", "content": "12:00", "tool_call_id": "c1"}),
        ];
        let text = template
            .render_with_tools(&messages, Some(&tools), true)
            .unwrap();
        assert!(
            text.starts_with("<|im_start|>system\nYou may call"),
            "{text}"
        );
        assert!(
            text.contains(r#""name":"now""#),
            "the tool is listed: {text}"
        );
        assert!(
            text.contains(
                "<tool_call>\n{\"name\": \"now\", \"arguments\": {\"tz\":\"UTC\"}}\n</tool_call>"
            ),
            "{text}"
        );
        assert!(
            text.contains("<tool_response>12:00</tool_response>"),
            "{text}"
        );
        assert!(text.ends_with("<|im_start|>assistant\n"), "{text}");
        // Without tools the template writes no offer.
        let plain = template
            .render_with_tools(&messages[..1], None, true)
            .unwrap();
        assert!(!plain.contains("You may call"), "{plain}");
    }

    #[test]
    fn strftime_subset_formats_known_instants() {
        assert_eq!(format_utc("%d %b %Y", 0), "01 Jan 1970");
        // 2024-02-29T13:05:09Z, a Thursday, day 60 of a leap year.
        assert_eq!(
            format_utc("%Y-%m-%d %H:%M:%S %A %j %B %%", 1_709_211_909),
            "2024-02-29 13:05:09 Thursday 060 February %"
        );
        assert_eq!(format_utc("%e|%y|%a|%Q", 1_709_211_909), "29|24|Thu|%Q");
    }
}
