//! Chat templates (`ChatTemplate::from_str`, `from_tokenizer_config`) compiled from
//! arbitrary text and rendered. A model's template is as untrusted as its weights: it
//! must fail with an error naming why, never panic.
//!
//! Input: the template, optionally followed by NUL-separated message contents (roles
//! alternate user/assistant). Input starting with `{` is also read as a
//! `tokenizer_config.json`. Invariant: a template that renders once renders the same
//! text again (rendering is a pure function of template and conversation).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sworn_service::engine::chat_template::{ChatMessage, ChatTemplate};

fn conversation(parts: &[&str]) -> Vec<ChatMessage> {
    if parts.is_empty() {
        return vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "What is 2+2?"),
        ];
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, content)| ChatMessage::new(["user", "assistant"][i % 2], *content))
        .collect()
}

fn render_twice(template: &ChatTemplate, messages: &[ChatMessage]) {
    for add_generation_prompt in [false, true] {
        let first = template.render(messages, add_generation_prompt);
        if let Ok(text) = first {
            let again = template
                .render(messages, add_generation_prompt)
                .expect("a template that rendered once renders again");
            assert_eq!(text, again);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let source = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let messages = conversation(&rest);
    if let Ok(template) = ChatTemplate::from_str(source, "<s>", "</s>") {
        render_twice(&template, &messages);
    }
    if data.first() == Some(&b'{') {
        if let Ok(template) = ChatTemplate::from_tokenizer_config(data) {
            render_twice(&template, &messages);
        }
    }
});
