use super::*;
use crate::engine::sampling::MAX_STOP_BYTES;
use crate::scheduler::request::{ChatTurn, TurnRole};
use serde_json::json;

const MODEL: &str = "tiny";

#[allow(clippy::needless_pass_by_value)] // helpers take owned literals for readable cases
fn chat(body: Value) -> Result<CheckedRequest, ApiError> {
    check_chat(body.to_string().as_bytes(), MODEL, &Limits::default())
}

#[allow(clippy::needless_pass_by_value)]
fn completion(body: Value) -> Result<CheckedRequest, ApiError> {
    check_completion(body.to_string().as_bytes(), MODEL, &Limits::default())
}

fn param_of(
    result: Result<CheckedRequest, ApiError>,
) -> (u16, Option<String>, Option<&'static str>) {
    let err = result.expect_err("request should be refused");
    (err.status().as_u16(), err.param(), err.code())
}

fn base() -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

#[test]
fn a_plain_chat_request_gets_defaults() {
    let req = chat(base()).unwrap();
    assert_eq!(req.endpoint, Endpoint::Chat);
    assert_eq!(req.sampling.temperature(), 1.0);
    assert_eq!(req.sampling.top_p(), 1.0);
    assert_eq!(req.sampling.top_k(), 0);
    assert!(!req.seed_given);
    assert!(!req.stream);
    assert_eq!(
        req.prompt,
        PromptInput::Chat(vec![ChatTurn::text(TurnRole::User, "hi")])
    );
    // The commitment covers the messages array exactly as sent, canonicalised.
    assert_eq!(
        req.prompt_canonical,
        br#"[{"content":"hi","role":"user"}]"#.to_vec()
    );
}

#[test]
fn max_completion_tokens_wins_over_max_tokens() {
    let req = chat(with(
        with(base(), "max_tokens", json!(5)),
        "max_completion_tokens",
        json!(7),
    ))
    .unwrap();
    assert_eq!(req.max_tokens, Some(7));
}

#[test]
fn bad_json_utf8_and_shapes_are_400_without_code() {
    let limits = Limits::default();
    let err = check_chat(b"{\"model\":", MODEL, &limits).unwrap_err();
    assert_eq!((err.status().as_u16(), err.code()), (400, None));
    let err = check_chat(b"{\"model\":\"\xff\"}", MODEL, &limits).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");
    let err = check_chat(b"[1,2]", MODEL, &limits).unwrap_err();
    assert!(err.to_string().contains("object"));
}

#[test]
fn wrong_types_and_missing_fields_name_the_field() {
    let (status, param, _) = param_of(chat(with(base(), "temperature", json!("hot"))));
    assert_eq!((status, param.as_deref()), (400, Some("temperature")));
    let (status, param, _) = param_of(chat(json!({"model": MODEL})));
    assert_eq!(status, 400);
    assert!(param.is_none());
    let (_, param, _) = param_of(chat(with(base(), "max_tokens", json!(-1))));
    assert_eq!(param.as_deref(), Some("max_tokens"));
}

#[test]
fn unknown_role_and_empty_messages_are_refused() {
    let (status, param, _) = param_of(chat(with(
        base(),
        "messages",
        json!([{"role": "wizard", "content": "x"}]),
    )));
    assert_eq!(status, 400);
    assert!(param.unwrap().starts_with("messages"));
    let (status, param, code) = param_of(chat(with(base(), "messages", json!([]))));
    assert_eq!(
        (status, param.as_deref(), code),
        (400, Some("messages"), Some("invalid_value"))
    );
}

#[test]
fn unknown_model_is_404_model_not_found() {
    let (status, param, code) = param_of(chat(with(base(), "model", json!("gpt-9"))));
    assert_eq!(
        (status, param.as_deref(), code),
        (404, Some("model"), Some("model_not_found"))
    );
}

#[test]
fn ranges_are_enforced() {
    for (key, value) in [
        ("temperature", json!(2.5)),
        ("temperature", json!(-0.1)),
        ("top_p", json!(0.0)),
        ("top_p", json!(1.5)),
        ("max_tokens", json!(0)),
        ("max_tokens", json!(4097)),
        ("top_k", json!(-3)),
        ("top_k", json!(10_001)),
    ] {
        let (status, param, code) = param_of(chat(with(base(), key, value.clone())));
        assert_eq!(
            (status, param.as_deref(), code),
            (400, Some(key), Some("invalid_value")),
            "{key}={value}"
        );
    }
    let req = chat(with(
        with(base(), "temperature", json!(0)),
        "top_k",
        json!(40),
    ))
    .unwrap();
    assert_eq!(
        (req.sampling.temperature(), req.sampling.top_k()),
        (0.0, 40)
    );
}

#[test]
fn stop_strings_are_bounded() {
    let (_, param, _) = param_of(chat(with(base(), "stop", json!(["a", "b", "c", "d", "e"]))));
    assert_eq!(param.as_deref(), Some("stop"));
    let (_, param, _) = param_of(chat(with(
        base(),
        "stop",
        json!("x".repeat(MAX_STOP_BYTES + 1)),
    )));
    assert_eq!(param.as_deref(), Some("stop"));
    assert_eq!(
        chat(with(base(), "stop", json!("\n")))
            .unwrap()
            .sampling
            .stop(),
        vec!["\n".to_string()]
    );
}

#[test]
fn unimplemented_features_are_clear_400s() {
    let cases = [
        (
            "functions",
            json!([{"name": "f", "parameters": {"type": "object"}}]),
        ),
        ("presence_penalty", json!(0.5)),
        ("logit_bias", json!({"1": 5})),
    ];
    for (key, value) in cases {
        let (status, param, code) = param_of(chat(with(base(), key, value)));
        assert_eq!(
            (status, code),
            (400, Some("unsupported_parameter")),
            "{key}"
        );
        assert_eq!(param.as_deref(), Some(key));
    }
    let image = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]);
    let (status, param, code) = param_of(chat(with(base(), "messages", image)));
    assert_eq!(
        (status, param.as_deref(), code),
        (400, Some("messages[0]"), Some("unsupported_parameter"))
    );
}

#[test]
fn logprobs_are_counted_and_bounded() {
    let asked = chat(with(
        with(base(), "logprobs", json!(true)),
        "top_logprobs",
        json!(5),
    ));
    assert_eq!(asked.unwrap().sampling.logprobs(), Some(5));
    let flag = chat(with(base(), "logprobs", json!(true))).unwrap();
    assert_eq!(flag.sampling.logprobs(), Some(0));
    assert_eq!(chat(base()).unwrap().sampling.logprobs(), None);
    let off = chat(with(base(), "logprobs", json!(false))).unwrap();
    assert_eq!(off.sampling.logprobs(), None);
    for (body, param) in [
        (with(base(), "top_logprobs", json!(2)), "top_logprobs"),
        (
            with(
                with(base(), "logprobs", json!(true)),
                "top_logprobs",
                json!(21),
            ),
            "top_logprobs",
        ),
    ] {
        let (status, got, code) = param_of(chat(body));
        assert_eq!(
            (status, got.as_deref(), code),
            (400, Some(param), Some("invalid_value"))
        );
    }
    let completion = |logprobs: Value| {
        let body = json!({"model": "tiny", "prompt": "hi", "logprobs": logprobs});
        check_completion(body.to_string().as_bytes(), "tiny", &Limits::default())
    };
    assert_eq!(completion(json!(3)).unwrap().sampling.logprobs(), Some(3));
    let (status, got, _) = param_of(completion(json!(25)));
    assert_eq!((status, got.as_deref()), (400, Some("logprobs")));
}

#[test]
fn tools_reach_the_prompt_and_cannot_share_a_json_response_format() {
    let tools = json!([{"type": "function", "function": {"name": "get_position",
        "parameters": {"type": "object", "properties": {"account": {"type": "string"}}}}}]);
    let with_system = json!([{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Position of A-1?"}]);
    let checked = chat(with(
        with(base(), "tools", tools.clone()),
        "messages",
        with_system,
    ))
    .unwrap();
    let PromptInput::ChatWithTools(turns, offer) = &checked.prompt else {
        panic!("tools are offered with the prompt")
    };
    assert_eq!(turns.len(), 2);
    assert_eq!(offer.tools[0]["function"]["name"], "get_position");
    assert!(offer.instructions.contains("get_position"));
    assert_eq!(checked.tools.as_ref().unwrap().kind(), "auto");
    let none = chat(with(
        with(base(), "tools", tools.clone()),
        "tool_choice",
        json!("none"),
    ));
    assert!(
        matches!(none.unwrap().prompt, PromptInput::Chat(_)),
        "none offers nothing"
    );
    let both = with(
        with(base(), "tools", tools),
        "response_format",
        json!({"type": "json_object"}),
    );
    let (status, param, code) = param_of(chat(both));
    assert_eq!(
        (status, param.as_deref(), code),
        (400, Some("response_format"), Some("unsupported_parameter"))
    );
}

#[test]
fn tool_turns_keep_their_calls_and_call_ids() {
    let messages = json!([
        {"role": "user", "content": "Position of A-1?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_position", "arguments": "{\"account\": \"A-1\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "120 shares"}
    ]);
    let checked = chat(with(base(), "messages", messages)).unwrap();
    let PromptInput::Chat(turns) = &checked.prompt else {
        panic!("chat")
    };
    assert_eq!(turns[1].tool_calls.len(), 1);
    assert_eq!(turns[1].tool_calls[0].name, "get_position");
    assert_eq!(turns[1].tool_calls[0].arguments, json!({"account": "A-1"}));
    assert_eq!(turns[1].tool_calls[0].id, "call_1");
    assert_eq!(turns[2].role, TurnRole::Tool);
    assert_eq!(turns[2].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(turns[2].content, "120 shares");
}

#[test]
fn n_is_bounded_by_the_servers_choices() {
    assert_eq!(chat(base()).unwrap().choices, 1);
    assert_eq!(chat(with(base(), "n", json!(3))).unwrap().choices, 3);
    for n in [0, 17] {
        let (status, param, code) = param_of(chat(with(base(), "n", json!(n))));
        assert_eq!(
            (status, param.as_deref(), code),
            (400, Some("n"), Some("invalid_value"))
        );
    }
}

#[test]
fn stream_options_need_stream() {
    let (_, param, _) = param_of(chat(with(
        base(),
        "stream_options",
        json!({"include_usage": true}),
    )));
    assert_eq!(param.as_deref(), Some("stream_options"));
    let req = chat(with(
        with(base(), "stream", json!(true)),
        "stream_options",
        json!({"include_usage": true}),
    ))
    .unwrap();
    assert!(req.stream && req.include_usage);
}

#[test]
fn completion_prompt_forms() {
    let req = completion(json!({"model": MODEL, "prompt": "Once"})).unwrap();
    assert_eq!(req.prompt, PromptInput::Text("Once".into()));
    assert_eq!(req.prompt_canonical, b"\"Once\"".to_vec());
    let (_, param, code) = param_of(completion(json!({"model": MODEL, "prompt": [1, 2, 3]})));
    assert_eq!(
        (param.as_deref(), code),
        (Some("prompt"), Some("unsupported_parameter"))
    );
    let (_, param, _) = param_of(completion(json!({"model": MODEL, "prompt": ""})));
    assert_eq!(param.as_deref(), Some("prompt"));
}

#[test]
fn seeds_are_recorded_bit_for_bit() {
    let req = chat(with(base(), "seed", json!(-1))).unwrap();
    assert!(req.seed_given);
    assert_eq!(req.sampling.seed(), u64::MAX);
}

#[test]
fn context_is_checked_after_tokenisation() {
    let limits = Limits::default();
    let req = chat(with(base(), "max_tokens", json!(10))).unwrap();
    let err = req
        .clone()
        .into_valid(vec![1; 60], 64, &limits)
        .unwrap_err();
    assert_eq!(err.code(), Some("context_length_exceeded"));
    assert_eq!(err.param().as_deref(), Some("messages"));
    let ok = req.into_valid(vec![1; 54], 64, &limits).unwrap();
    assert_eq!(ok.max_tokens(), 10);
    // Without max_tokens the default shrinks to what the context leaves.
    let req = chat(base()).unwrap();
    assert_eq!(
        req.into_valid(vec![1; 60], 64, &limits)
            .unwrap()
            .max_tokens(),
        4
    );
    let req = chat(base()).unwrap();
    assert!(req.into_valid(vec![1; 64], 64, &limits).is_err());
}
