//! Chat templates: the default model's template against transformers'
//! `apply_chat_template` (`fixtures/tokenizer/smollm2_chat.json`), and the Jinja features
//! Hugging Face templates rely on.

use serde_json::Value;
use sworn_service::engine::chat_template::{ChatMessage, ChatTemplate, ChatTemplateError};
use sworn_service::engine::gguf::GgufFile;

use crate::tokenizer_goldens::smollm2;
use crate::{default_model, fixture};

fn messages(v: &Value) -> Vec<ChatMessage> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

#[test]
fn smollm2_template_renders_like_transformers() {
    let Some(path) = default_model() else { return };
    let file = GgufFile::open(&path).unwrap();
    let template = ChatTemplate::from_gguf(&file).unwrap();
    let tok = smollm2().unwrap();
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tokenizer/smollm2_chat.json")).unwrap(),
    )
    .unwrap();
    let renders = golden["renders"].as_array().unwrap();
    assert!(renders.len() >= 8);
    for r in renders {
        let add_gen = r["add_generation_prompt"].as_bool().unwrap();
        let text = template.render(&messages(&r["messages"]), add_gen).unwrap();
        assert_eq!(
            text,
            r["text"].as_str().unwrap(),
            "messages {}",
            r["messages"]
        );
        let want: Vec<u32> = r["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tok.encode(&text, false).unwrap(), want, "ids of {text:?}");
    }
}

/// A Llama 3-style template: whitespace control, `raise_exception`, loop variables,
/// Python string methods and `bos_token`.
const LLAMA3_LIKE: &str = "{{- bos_token }}\n\
{%- if messages[0]['role'] == 'system' %}\n\
    {%- set system = messages[0]['content'] | trim %}\n\
    {%- set messages = messages[1:] %}\n\
{%- else %}\n\
    {%- set system = '' %}\n\
{%- endif %}\n\
{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' + system + '<|eot_id|>' }}\n\
{%- for message in messages %}\n\
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}\n\
        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}\n\
    {%- endif %}\n\
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'].strip() + '<|eot_id|>' }}\n\
{%- endfor %}\n\
{%- if add_generation_prompt %}\n\
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n\
{%- endif %}\n";

#[test]
fn hf_style_template_features_work() {
    let t = ChatTemplate::from_str(LLAMA3_LIKE, "<|begin_of_text|>", "<|eot_id|>").unwrap();
    let out = t
        .render(
            &[
                ChatMessage::new("system", " Be brief. "),
                ChatMessage::new("user", "  Hi  "),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        out,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

#[test]
fn raise_exception_becomes_a_render_error_with_its_message() {
    let t = ChatTemplate::from_str(LLAMA3_LIKE, "", "").unwrap();
    let e = t
        .render(&[ChatMessage::new("assistant", "first")], false)
        .unwrap_err();
    assert!(
        matches!(&e, ChatTemplateError::Render { reason } if reason.contains("must alternate")),
        "{e}"
    );
}

#[test]
fn trim_and_lstrip_blocks_match_jinja2_as_transformers_configures_it() {
    // With trim_blocks the newline after a block tag goes; with lstrip_blocks the
    // indentation before it does.
    let t = ChatTemplate::from_str(
        "{% for m in messages %}\n  {% if true %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}",
        "",
        "",
    )
    .unwrap();
    let out = t
        .render(
            &[ChatMessage::new("user", "a"), ChatMessage::new("user", "b")],
            false,
        )
        .unwrap();
    assert_eq!(out, "[a]\n[b]\n");
}

#[test]
fn loop_controls_are_available() {
    let t = ChatTemplate::from_str(
        "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}{{ m.content }}{% if loop.index > 2 %}{% break %}{% endif %}{% endfor %}",
        "",
        "",
    )
    .unwrap();
    let msgs = ["system", "user", "user", "user"]
        .map(|r| ChatMessage::new(r, r.chars().next().unwrap().to_string()));
    assert_eq!(t.render(&msgs, false).unwrap(), "uu");
}

#[test]
fn syntax_errors_are_reported_at_load() {
    let e = ChatTemplate::from_str("{% for m in messages %}{{ m.content }", "", "").unwrap_err();
    assert!(matches!(e, ChatTemplateError::Syntax { .. }), "{e}");
}

#[test]
fn strftime_now_is_callable() {
    let t = ChatTemplate::from_str("{{ strftime_now('%Y') }}", "", "").unwrap();
    let year: u32 = t.render(&[], false).unwrap().parse().unwrap();
    assert!(year >= 2024);
}

#[test]
fn tokenizer_config_templates_and_token_objects_are_read() {
    let config = serde_json::json!({
        "bos_token": {"content": "<s>", "lstrip": false},
        "eos_token": "</s>",
        "chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}
        ]
    });
    let t = ChatTemplate::from_tokenizer_config(&serde_json::to_vec(&config).unwrap()).unwrap();
    assert_eq!(
        t.render(&[ChatMessage::new("user", "x")], false).unwrap(),
        "<s>x</s>"
    );
    let e = ChatTemplate::from_tokenizer_config(b"{}").unwrap_err();
    assert!(matches!(e, ChatTemplateError::Missing { .. }));
}

#[test]
fn gguf_without_a_template_says_so() {
    let f = GgufFile::from_bytes(crate::gguf_builder::valid_file()).unwrap();
    let e = ChatTemplate::from_gguf(&f).unwrap_err();
    assert!(matches!(
        e,
        ChatTemplateError::Missing {
            key: "tokenizer.chat_template"
        }
    ));
}
