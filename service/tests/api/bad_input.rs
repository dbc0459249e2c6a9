//! The bad-input suite: each hostile or mistaken request gets its documented status and an
//! OpenAI envelope (code a string or null), never a 5xx, and the server keeps serving.

use std::time::Duration;

use serde_json::{Value, json};

use crate::answers::toy_server;
use crate::support::{Options, Raw, TestServer, bearer, raw, toy_model};
use crate::toy::TOY_CONTEXT;

/// (case, body, status, code, param)
type Case = (
    &'static str,
    Vec<u8>,
    u16,
    Option<&'static str>,
    Option<&'static str>,
);

pub fn assert_envelope(
    response: &Raw,
    status: u16,
    code: Option<&str>,
    param: Option<&str>,
    case: &str,
) {
    assert_eq!(
        response.status,
        status,
        "{case}: {:?}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(
        response
            .header("x-request-id")
            .is_some_and(|id| id.starts_with("req-")),
        "{case}: no x-request-id"
    );
    let json = response.json();
    let error = json["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{case}: no envelope"));
    assert_eq!(
        json.as_object().unwrap().len(),
        1,
        "{case}: only `error` at top level"
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}"
    );
    assert!(error["type"].is_string(), "{case}");
    assert!(
        error["code"].is_null() || error["code"].is_string(),
        "{case}: code must be string or null"
    );
    assert_eq!(error["code"].as_str(), code, "{case}: code");
    if let Some(param) = param {
        assert_eq!(error["param"].as_str(), Some(param), "{case}: param");
    }
}

async fn post(server: &TestServer, path: &str, key: Option<&str>, body: &[u8]) -> Raw {
    let auth = key.map(bearer);
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    raw(server.addr, "POST", path, &headers, body).await
}

fn chat(extra: &Value) -> Vec<u8> {
    let mut request =
        json!({"model": "toy", "messages": [{"role": "user", "content": "hi"}], "temperature": 0});
    for (k, v) in extra.as_object().unwrap() {
        request[k] = v.clone();
    }
    request.to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_documented_envelope() {
    let server = toy_server(Options {
        max_body_bytes: 4096,
        ..Options::default()
    })
    .await;
    let key = server.user_key.clone();
    let long_prompt = "x".repeat(TOY_CONTEXT);
    let cases: Vec<Case> = vec![
        (
            "broken JSON",
            b"{\"model\": \"toy\", ".to_vec(),
            400,
            None,
            None,
        ),
        (
            "invalid UTF-8",
            b"{\"model\": \"\xff\xfe\"}".to_vec(),
            400,
            None,
            None,
        ),
        ("not an object", b"[]".to_vec(), 400, None, None),
        (
            "a member named twice (not I-JSON)",
            br#"{"model":"toy","messages":[{"content":"wire the money","role":"user","content":"2+2?"}]}"#
                .to_vec(),
            400,
            None,
            None,
        ),
        (
            "a lone surrogate (not I-JSON)",
            br#"{"model":"toy","messages":[{"role":"user","content":"\udc00"}]}"#.to_vec(),
            400,
            None,
            None,
        ),
        (
            "wrong type",
            chat(&json!({"temperature": "warm"})),
            400,
            None,
            Some("temperature"),
        ),
        (
            "missing messages",
            br#"{"model":"toy"}"#.to_vec(),
            400,
            None,
            None,
        ),
        (
            "empty messages",
            chat(&json!({"messages": []})),
            400,
            Some("invalid_value"),
            Some("messages"),
        ),
        (
            "unknown role",
            chat(&json!({"messages": [{"role": "oracle", "content": "x"}]})),
            400,
            None,
            None,
        ),
        (
            "unknown model",
            chat(&json!({"model": "gpt-7"})),
            404,
            Some("model_not_found"),
            Some("model"),
        ),
        (
            "prompt over the context",
            chat(&json!({"messages": [{"role": "user", "content": long_prompt}], "max_tokens": 8})),
            400,
            Some("context_length_exceeded"),
            Some("messages"),
        ),
        (
            "max_tokens zero",
            chat(&json!({"max_tokens": 0})),
            400,
            Some("invalid_value"),
            Some("max_tokens"),
        ),
        (
            "max_tokens negative",
            chat(&json!({"max_tokens": -5})),
            400,
            None,
            Some("max_tokens"),
        ),
        (
            "max_tokens over the limit",
            chat(&json!({"max_tokens": 100_000})),
            400,
            Some("invalid_value"),
            Some("max_tokens"),
        ),
        (
            "temperature too high",
            chat(&json!({"temperature": 3.5})),
            400,
            Some("invalid_value"),
            Some("temperature"),
        ),
        (
            "top_p zero",
            chat(&json!({"top_p": 0})),
            400,
            Some("invalid_value"),
            Some("top_p"),
        ),
        (
            "temperature just over 2 (2.0 once rounded to f32)",
            chat(&json!({"temperature": 2.000_000_1})),
            400,
            Some("invalid_value"),
            Some("temperature"),
        ),
        (
            "top_p just over 1 (1.0 once rounded to f32)",
            chat(&json!({"top_p": 1.000_000_01})),
            400,
            Some("invalid_value"),
            Some("top_p"),
        ),
        (
            "too many stops",
            chat(&json!({"stop": ["a", "b", "c", "d", "e"]})),
            400,
            Some("invalid_value"),
            Some("stop"),
        ),
        (
            "n over the server's slots",
            chat(&json!({"n": 9})),
            400,
            Some("invalid_value"),
            Some("n"),
        ),
        (
            "top_logprobs without logprobs",
            chat(&json!({"top_logprobs": 2})),
            400,
            Some("invalid_value"),
            Some("top_logprobs"),
        ),
        (
            "image input",
            chat(
                &json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.invalid/a.png"}}]}]}),
            ),
            400,
            Some("unsupported_parameter"),
            Some("messages[0]"),
        ),
        (
            "custom tools",
            chat(&json!({"tools": [{"type": "custom", "custom": {"name": "f"}}]})),
            400,
            Some("unsupported_parameter"),
            Some("tools"),
        ),
        (
            "tool_choice naming no offered function",
            chat(&json!({"tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}}})),
            400,
            Some("invalid_value"),
            Some("tool_choice"),
        ),
        (
            "functions",
            chat(&json!({"functions": [{"name": "f", "parameters": {"type": "object"}}]})),
            400,
            Some("unsupported_parameter"),
            Some("functions"),
        ),
        (
            "oversized body",
            chat(&json!({"pad": "y".repeat(8192)})),
            413,
            Some("request_too_large"),
            None,
        ),
    ];
    for (case, body, status, code, param) in &cases {
        let response = post(&server, "/v1/chat/completions", Some(&key), body).await;
        assert_envelope(&response, *status, *code, *param, case);
    }
    // Auth failures.
    let no_key = post(&server, "/v1/chat/completions", None, &chat(&json!({}))).await;
    assert_envelope(&no_key, 401, Some("invalid_api_key"), None, "missing key");
    let wrong = post(
        &server,
        "/v1/chat/completions",
        Some("sk-sworn-nope"),
        &chat(&json!({})),
    )
    .await;
    assert_envelope(&wrong, 401, Some("invalid_api_key"), None, "wrong key");
    assert!(!String::from_utf8_lossy(&wrong.body).contains("sk-sworn-nope"));
    // Admin routes with a tenant key.
    let auth = bearer(&key);
    let export = raw(
        server.addr,
        "GET",
        "/v1/audit/export",
        &[("authorization", &auth)],
        b"",
    )
    .await;
    assert_envelope(
        &export,
        403,
        Some("insufficient_permissions"),
        None,
        "export with user key",
    );
    let erase = raw(
        server.addr,
        "POST",
        "/v1/audit/erase/req-x",
        &[("authorization", &auth)],
        b"",
    )
    .await;
    assert_envelope(
        &erase,
        403,
        Some("insufficient_permissions"),
        None,
        "erase with user key",
    );
    // Unknown routes and methods.
    let missing = raw(server.addr, "GET", "/v2/nothing", &[], b"").await;
    assert_envelope(&missing, 404, Some("not_found"), None, "unknown path");
    let method = raw(server.addr, "DELETE", "/v1/chat/completions", &[], b"").await;
    assert_envelope(
        &method,
        405,
        Some("method_not_allowed"),
        None,
        "wrong method",
    );
    // Nothing was sworn for refused requests, and the server still answers.
    assert_eq!(server.ledger.size(), 0);
    let ok = post(
        &server,
        "/v1/chat/completions",
        Some(&key),
        &chat(&json!({})),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(server.ledger.size(), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let server = toy_server(Options {
        requests_per_minute: 2,
        ..Options::default()
    })
    .await;
    let key = server.user_key.clone();
    for _ in 0..2 {
        assert_eq!(
            post(
                &server,
                "/v1/chat/completions",
                Some(&key),
                &chat(&json!({}))
            )
            .await
            .status,
            200
        );
    }
    let limited = post(
        &server,
        "/v1/chat/completions",
        Some(&key),
        &chat(&json!({})),
    )
    .await;
    assert_envelope(
        &limited,
        429,
        Some("rate_limit_exceeded"),
        None,
        "requests per minute",
    );
    assert_eq!(limited.json()["error"]["type"], "requests");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // Another key has its own bucket.
    let admin = server.admin_key.clone();
    assert_eq!(
        post(
            &server,
            "/v1/chat/completions",
            Some(&admin),
            &chat(&json!({}))
        )
        .await
        .status,
        200
    );
    server.shutdown().await;

    let server = toy_server(Options {
        tokens_per_minute: 40,
        ..Options::default()
    })
    .await;
    let key = server.user_key.clone();
    // 9 prompt tokens ("user: hi\n") + 28 = 37 of the 40 per minute…
    let first = post(
        &server,
        "/v1/chat/completions",
        Some(&key),
        &chat(&json!({"max_tokens": 28})),
    )
    .await;
    assert_eq!(first.status, 200);
    // …unused budget is refunded, but 9 + 60 can never fit a 40-token minute.
    let limited = post(
        &server,
        "/v1/chat/completions",
        Some(&key),
        &chat(&json!({"max_tokens": 60})),
    )
    .await;
    assert_envelope(
        &limited,
        429,
        Some("rate_limit_exceeded"),
        None,
        "tokens per minute",
    );
    assert_eq!(limited.json()["error"]["type"], "tokens");
    assert!(limited.header("retry-after").is_some());
    server.shutdown().await;
}

/// A toy model that takes 10 ms per token: slow enough to hold the engine busy.
#[derive(Debug)]
pub struct SlowToy(pub crate::toy::ToyGenerator);

impl sworn_service::scheduler::Generator for SlowToy {
    type Sequence = crate::toy::ToySequence;
    fn max_batch(&self) -> usize {
        self.0.max_batch
    }
    fn start(
        &mut self,
        request: &sworn_service::scheduler::request::GenerationRequest,
    ) -> Result<
        (Self::Sequence, sworn_service::scheduler::Token),
        sworn_service::scheduler::GeneratorError,
    > {
        self.0.start(request)
    }
    fn step(
        &mut self,
        sequences: &mut [&mut Self::Sequence],
    ) -> Result<Vec<sworn_service::scheduler::Token>, sworn_service::scheduler::GeneratorError>
    {
        std::thread::sleep(Duration::from_millis(10));
        self.0.step(sequences)
    }
    fn release(&mut self, sequence: Self::Sequence) {
        self.0.release(sequence)
    }
}

pub async fn slow_server(queue_capacity: usize, max_batch: usize) -> TestServer {
    TestServer::start(
        SlowToy(crate::toy::ToyGenerator { max_batch }),
        toy_model(&"cd".repeat(32)),
        Options {
            queue_capacity,
            ..Options::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_and_the_server_recovers() {
    let server = slow_server(1, 1).await;
    let key = server.user_key.clone();
    // A long sampled answer holds the single engine slot (200 tokens at 10 ms each).
    let long = chat(&json!({"temperature": 1, "max_tokens": 200, "stream": true}));
    let auth = bearer(&key);
    let mut holder = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            long.len()
        );
        holder.write_all(head.as_bytes()).await.unwrap();
        holder.write_all(&long).await.unwrap();
        // A generated letter in the stream means the engine has taken it (the headers and
        // the role chunk go out before that).
        let mut seen = Vec::new();
        let marker = b"\"content\":\"";
        loop {
            let mut buf = [0u8; 1024];
            let n = holder.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream closed early");
            seen.extend_from_slice(&buf[..n]);
            let generated = seen
                .windows(marker.len() + 1)
                .any(|w| w.starts_with(marker) && w[marker.len()].is_ascii_lowercase());
            if generated {
                break;
            }
        }
    }
    // Two more at once: one fits the queue of 1, the other is refused.
    let short = chat(&json!({"max_tokens": 1}));
    let (a, b) = tokio::join!(
        post(&server, "/v1/chat/completions", Some(&key), &short),
        post(&server, "/v1/chat/completions", Some(&key), &short)
    );
    let (refused, served) = if a.status == 503 { (a, b) } else { (b, a) };
    assert_envelope(
        &refused,
        503,
        Some("server_is_overloaded"),
        None,
        "queue full",
    );
    assert!(refused.header("retry-after").is_some());
    assert_eq!(served.status, 200);
    drop(holder);
    let after = post(&server, "/v1/chat/completions", Some(&key), &short).await;
    assert_eq!(after.status, 200);
    server.shutdown().await;
}
