//! `/tokenize` and `/detokenize`: the served model's own tokens, the count generation would
//! charge, and errors that name what is wrong.

use serde_json::{Value, json};

use crate::answers::toy_server;
use crate::support::{Options, TestServer, bearer, raw};
use crate::toy::TOY_CONTEXT;

async fn post(server: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    let auth = bearer(&server.user_key);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let answer = raw(
        server.addr,
        "POST",
        path,
        &headers,
        body.to_string().as_bytes(),
    )
    .await;
    let value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    (answer.status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenize_counts_what_generation_charges_and_detokenize_gives_the_text_back() {
    let server = toy_server(Options::default()).await;
    let (status, prompt) = post(
        &server,
        "/tokenize",
        &json!({"model": "toy", "prompt": "héllo"}),
    )
    .await;
    assert_eq!(status, 200, "{prompt}");
    let expected: Vec<u32> = "héllo".bytes().map(u32::from).collect();
    assert_eq!(prompt["tokens"], json!(expected));
    assert_eq!(prompt["count"], json!(expected.len()));
    assert_eq!(prompt["max_model_len"], json!(TOY_CONTEXT));
    assert_eq!(prompt["token_strs"], Value::Null);

    // A chat prompt counts exactly what a chat completion reports as its prompt tokens.
    let messages =
        json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]);
    let (status, chat) = post(
        &server,
        "/tokenize",
        &json!({"model": "toy", "messages": messages}),
    )
    .await;
    assert_eq!(status, 200, "{chat}");
    let body = json!({"model": "toy", "messages": messages, "max_tokens": 4, "temperature": 0});
    let (status, answer) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(chat["count"], answer["usage"]["prompt_tokens"]);

    let (status, text) = post(
        &server,
        "/detokenize",
        &json!({"model": "toy", "tokens": prompt["tokens"]}),
    )
    .await;
    assert_eq!((status, text), (200, json!({"prompt": "héllo"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_routes_refuse_what_they_cannot_serve_by_name() {
    let server = toy_server(Options::default()).await;
    let cases = [
        (
            "/tokenize",
            json!({"model": "toy", "prompt": "a", "stream": true}),
            400,
            "stream",
        ),
        (
            "/tokenize",
            json!({"model": "toy", "prompt": "a", "messages": []}),
            400,
            "prompt",
        ),
        ("/tokenize", json!({"model": "toy"}), 400, "prompt"),
        (
            "/tokenize",
            json!({"model": "toy", "messages": []}),
            400,
            "messages",
        ),
        (
            "/tokenize",
            json!({"model": "toy", "prompt": "a", "add_special_tokens": false}),
            400,
            "add_special_tokens",
        ),
        (
            "/tokenize",
            json!({"model": "other", "prompt": "a"}),
            404,
            "model",
        ),
        (
            "/detokenize",
            json!({"model": "toy", "tokens": [104, 9999]}),
            400,
            "tokens",
        ),
        (
            "/detokenize",
            json!({"model": "toy", "tokens": [-1]}),
            400,
            "tokens",
        ),
    ];
    for (path, body, status, param) in cases {
        let (got, error) = post(&server, path, &body).await;
        assert_eq!(got, status, "{path} {body}: {error}");
        let named = error["error"]["param"]
            .as_str()
            .unwrap_or("")
            .contains(param)
            || error["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(param);
        assert!(named, "{path} {body}: {error} does not name `{param}`");
    }
    let anonymous = raw(
        server.addr,
        "POST",
        "/tokenize",
        &[],
        br#"{"model":"toy","prompt":"a"}"#,
    )
    .await;
    assert_eq!(anonymous.status, 401);
}
