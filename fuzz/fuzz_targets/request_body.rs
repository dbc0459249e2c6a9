//! Request bodies of `/v1/chat/completions` and `/v1/completions` on arbitrary bytes:
//! `check_chat` / `check_completion` (UTF-8, I-JSON, the OpenAI types, every field's
//! bounds), then what the server does with an accepted one: the chat template
//! (SmolLM2's, from the fixtures), the tokenizer, and the context fit (`into_valid`).
//! A refused body's error is turned into its HTTP envelope, as the server would.
//!
//! Invariants: an accepted request has its sampling inside the documented ranges, at
//! most four non-empty stop strings of at most 256 bytes, and a prompt commitment over
//! canonical (RFC 8785) bytes.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sworn_ledger::jcs;
use sworn_service::api::validation::{CheckedRequest, Limits, check_chat, check_completion};
use sworn_service::engine::chat_template::{ChatMessage, ChatTemplate};
use sworn_service::engine::sampling::{
    MAX_STOP_BYTES, MAX_STOP_STRINGS, MAX_TEMPERATURE, MAX_TOP_K,
};
use sworn_service::engine::tokenizer::Tokenizer;
use sworn_service::scheduler::request::PromptInput;

const MODEL: &str = "sworn-fuzz";
const CONTEXT_LENGTH: usize = 2048;
const TOKENIZER: &[u8] =
    include_bytes!("../../service/tests/fixtures/tokenizer/tiny_bytelevel.json");
const CHAT_GOLDENS: &str = include_str!("../../service/tests/fixtures/tokenizer/smollm2_chat.json");

fn engine() -> &'static (ChatTemplate, Tokenizer) {
    static ENGINE: OnceLock<(ChatTemplate, Tokenizer)> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let goldens: serde_json::Value = serde_json::from_str(CHAT_GOLDENS).expect("fixture");
        let source = goldens["template"].as_str().expect("fixture template");
        let template = ChatTemplate::from_str(source, "<|im_start|>", "<|im_end|>")
            .expect("fixture template compiles");
        let tokenizer = Tokenizer::from_tokenizer_json(TOKENIZER).expect("fixture tokenizer");
        (template, tokenizer)
    })
}

fn check_accepted(request: CheckedRequest, limits: &Limits) {
    let s = &request.sampling;
    assert!((0.0..=MAX_TEMPERATURE).contains(&s.temperature()), "{s:?}");
    assert!(s.top_p() > 0.0 && s.top_p() <= 1.0, "{s:?}");
    assert!(u64::from(s.top_k()) <= MAX_TOP_K, "{s:?}");
    assert!(s.stop().len() <= MAX_STOP_STRINGS);
    assert!(
        s.stop()
            .iter()
            .all(|s| !s.is_empty() && s.len() <= MAX_STOP_BYTES)
    );
    if let Some(m) = request.max_tokens {
        assert!(m >= 1 && m <= limits.max_tokens_limit, "max_tokens {m}");
    }
    assert!(
        jcs::is_canonical(&request.prompt_canonical),
        "prompt commitment over non-canonical bytes"
    );
    assert_eq!(request.model, MODEL);
    let (template, tokenizer) = engine();
    let text = match &request.prompt {
        PromptInput::Text(text) => text.clone(),
        PromptInput::Chat(turns) => {
            let messages: Vec<ChatMessage> = turns
                .iter()
                .map(|t| ChatMessage::new(t.role.as_str(), t.content.clone()))
                .collect();
            match template.render(&messages, true) {
                Ok(text) => text,
                Err(_) => return,
            }
        }
    };
    let Ok(tokens) = tokenizer.encode(&text, true) else {
        return;
    };
    if let Ok(valid) = request.into_valid(tokens, CONTEXT_LENGTH, limits) {
        assert!(valid.max_tokens() >= 1);
        assert!(valid.prompt_tokens.len() + valid.max_tokens() as usize <= CONTEXT_LENGTH);
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    for check in [check_chat, check_completion] {
        match check(data, MODEL, &limits) {
            Ok(request) => check_accepted(request, &limits),
            Err(e) => {
                let _ = (e.status(), e.kind(), e.code(), e.param(), e.envelope());
            }
        }
    }
});
