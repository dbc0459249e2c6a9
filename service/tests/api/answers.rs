//! Chat and completions through the real `async-openai` client: streaming and not, usage,
//! seeds, stop strings, `max_tokens`; every receipt verified with the ledger's own code.

use async_openai::types::chat::{
    CreateChatCompletionRequest, CreateChatCompletionResponse, CreateChatCompletionStreamResponse,
};
use async_openai::types::completions::CreateCompletionRequest;
use futures::StreamExt;
use serde_json::{Value, json};
use sworn_ledger::commitment::{Domain, opens};
use sworn_ledger::entry::{Receipt, ReceiptJson};
use sworn_ledger::receipt::ParamValue;

use crate::support::{Options, TestServer, bearer, raw, toy_model};
use crate::toy::ToyGenerator;

pub async fn toy_server(options: Options) -> TestServer {
    TestServer::start(
        ToyGenerator { max_batch: 8 },
        toy_model(&"ab".repeat(32)),
        options,
    )
    .await
}

/// Verifies a `"sworn"` object: signature, leaf hash and origin with the ledger's code, both
/// commitments against the content, and that the log holds the same entry.
pub fn verify_sworn(
    server: &TestServer,
    sworn: &Value,
    prompt_canonical: &[u8],
    answer: &str,
) -> Receipt {
    let bundle: ReceiptJson =
        serde_json::from_value(sworn.clone()).expect("sworn field is a receipt bundle");
    let receipt =
        Receipt::verify_bundle(&bundle, &server.ledger.public_key()).expect("receipt verifies");
    let salts = receipt.salts.expect("salts present");
    assert!(opens(
        &receipt.body.prompt.commitment,
        Domain::Prompt,
        &salts.prompt,
        prompt_canonical
    ));
    assert!(opens(
        &receipt.body.response.commitment,
        Domain::Response,
        &salts.response,
        answer.as_bytes()
    ));
    let stored = server
        .ledger
        .entry(receipt.entry.index)
        .unwrap()
        .expect("entry is durable");
    assert_eq!(stored, receipt.entry);
    receipt
}

fn chat_request(content: &str, extra: &Value) -> Value {
    let mut request = json!({"model": "toy", "messages": [{"role": "user", "content": content}]});
    for (k, v) in extra.as_object().unwrap() {
        request[k] = v.clone();
    }
    request
}

fn canonical(value: &Value) -> Vec<u8> {
    sworn_ledger::jcs::canonicalize(value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_answer_carries_a_durable_verifiable_receipt() {
    let server = toy_server(Options::default()).await;
    let client = server.client(&server.user_key);
    let request = chat_request("hello", &json!({"temperature": 0}));
    let answer: Value = client.chat().create_byot(request.clone()).await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(text, "echo: hello");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    // "user: hello\n" is 12 bytes = 12 toy tokens; 11 letters plus the end token.
    assert_eq!(answer["usage"]["prompt_tokens"], 12);
    assert_eq!(answer["usage"]["completion_tokens"], 12);
    assert_eq!(answer["usage"]["total_tokens"], 24);
    let receipt = verify_sworn(
        &server,
        &answer["sworn"],
        &canonical(&request["messages"]),
        text,
    );
    assert_eq!(receipt.body.tenant, "team-a");
    assert_eq!(receipt.body.response.finish_reason, "stop");
    assert_eq!(
        receipt.body.params["temperature"],
        ParamValue::Str("0".into())
    );
    assert_eq!(receipt.body.prompt.tokens, 12);
    // The typed client reads the same answer (the extra field does not disturb it).
    let typed: CreateChatCompletionResponse = client
        .chat()
        .create(serde_json::from_value::<CreateChatCompletionRequest>(request).unwrap())
        .await
        .unwrap();
    assert_eq!(
        typed.choices[0].message.content.as_deref(),
        Some("echo: hello")
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_stream_ends_with_usage_and_receipt_before_done() {
    let server = toy_server(Options::default()).await;
    let client = server.client(&server.user_key);
    let request = chat_request(
        "stream me",
        &json!({"temperature": 0, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let mut stream = client
        .chat()
        .create_stream_byot::<_, Value>(request.clone())
        .await
        .unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.unwrap());
    }
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"]
                .get(0)?
                .get("delta")?
                .get("content")?
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "echo: stream me");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finish: Vec<_> = chunks
        .iter()
        .filter(|c| c["choices"][0]["finish_reason"] == "stop")
        .collect();
    assert_eq!(finish.len(), 1);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 16);
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c.get("sworn").is_none())
    );
    verify_sworn(
        &server,
        &last["sworn"],
        &canonical(&request["messages"]),
        &text,
    );
    // The typed stream parses every chunk too.
    let typed_request: CreateChatCompletionRequest = serde_json::from_value(request).unwrap();
    let typed: Vec<CreateChatCompletionStreamResponse> = client
        .chat()
        .create_stream(typed_request)
        .await
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
        .await;
    assert!(typed.last().unwrap().usage.is_some());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_streamed_and_not() {
    let server = toy_server(Options::default()).await;
    let client = server.client(&server.user_key);
    let request = json!({"model": "toy", "prompt": "abc", "temperature": 0, "max_tokens": 4});
    let answer: Value = client
        .completions()
        .create_byot(request.clone())
        .await
        .unwrap();
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(answer["choices"][0]["text"], "echo");
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    verify_sworn(&server, &answer["sworn"], b"\"abc\"", "echo");

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let typed: CreateCompletionRequest = serde_json::from_value(streamed.clone()).unwrap();
    let chunks: Vec<_> = client
        .completions()
        .create_stream(typed)
        .await
        .unwrap()
        .collect()
        .await;
    let text: String = chunks
        .iter()
        .map(|c| c.as_ref().unwrap())
        .flat_map(|c| c.choices.iter().map(|ch| ch.text.clone()))
        .collect();
    assert_eq!(text, "echo");
    let raw_chunks: Vec<Value> = client
        .completions()
        .create_stream_byot::<_, Value>(streamed)
        .await
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
        .await;
    verify_sworn(
        &server,
        &raw_chunks.last().unwrap()["sworn"],
        b"\"abc\"",
        "echo",
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeds_reproduce_and_are_recorded() {
    let server = toy_server(Options::default()).await;
    let client = server.client(&server.user_key);
    let ask = |seed: i64| {
        chat_request(
            "x",
            &json!({"temperature": 0.8, "seed": seed, "max_tokens": 12}),
        )
    };
    let a: Value = client.chat().create_byot(ask(42)).await.unwrap();
    let b: Value = client.chat().create_byot(ask(42)).await.unwrap();
    let c: Value = client.chat().create_byot(ask(43)).await.unwrap();
    let text = |v: &Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(text(&a), text(&b));
    assert_ne!(text(&a), text(&c));
    let receipt = verify_sworn(
        &server,
        &a["sworn"],
        &canonical(&ask(42)["messages"]),
        &text(&a),
    );
    assert_eq!(receipt.body.params["seed"], ParamValue::Str("42".into()));
    assert_eq!(
        receipt.body.params["seed_from_client"],
        ParamValue::Bool(true)
    );
    assert_eq!(
        receipt.body.params["temperature"],
        ParamValue::Str("0.8".into())
    );
    assert_ne!(a["sworn"]["index"], b["sworn"]["index"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_strings_and_max_tokens_end_the_answer() {
    let server = toy_server(Options::default()).await;
    let client = server.client(&server.user_key);
    let stopped = chat_request(
        "hello world",
        &json!({"temperature": 0, "stop": [" wor", "zzz"]}),
    );
    let answer: Value = client.chat().create_byot(stopped.clone()).await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "echo: hello");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let receipt = verify_sworn(
        &server,
        &answer["sworn"],
        &canonical(&stopped["messages"]),
        "echo: hello",
    );
    assert!(
        matches!(receipt.body.params.get("stop_sha256"), Some(ParamValue::Str(s)) if s.len() == 64)
    );
    // Streaming never shows a stop string, even split across pieces.
    let mut streamed = stopped.clone();
    streamed["stream"] = json!(true);
    let chunks: Vec<Value> = client
        .chat()
        .create_stream_byot::<_, Value>(streamed)
        .await
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
        .await;
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"]
                .get(0)?
                .get("delta")?
                .get("content")?
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "echo: hello");
    let short = chat_request(
        "hello",
        &json!({"temperature": 0, "max_completion_tokens": 3}),
    );
    let answer: Value = client.chat().create_byot(short).await.unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "ech");
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["completion_tokens"], 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_name_the_request_and_its_index() {
    let server = toy_server(Options::default()).await;
    let body = chat_request("hi", &json!({"temperature": 0})).to_string();
    let auth = bearer(&server.user_key);
    let response = raw(
        server.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(response.status, 200);
    let json = response.json();
    let request_id = response.header("x-request-id").unwrap().to_string();
    let index: u64 = response.header("x-sworn-index").unwrap().parse().unwrap();
    assert_eq!(json["sworn"]["index"], index);
    let stored = server
        .ledger
        .receipt_by_request_id(&request_id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.entry.index, index);
    assert!(
        json["id"]
            .as_str()
            .unwrap()
            .ends_with(request_id.trim_start_matches("req-"))
    );
    // The model list needs a key and names the served model.
    let models = raw(
        server.addr,
        "GET",
        "/v1/models",
        &[("authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(models.json()["data"][0]["id"], "toy");
    assert!(models.header("x-request-id").is_some());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_choices_are_each_sworn_with_their_own_seed_whole_and_streamed() {
    let server = toy_server(Options::default()).await;
    let client = server.client(&server.user_key);
    let request = chat_request(
        "pick",
        &json!({"n": 3, "temperature": 1, "seed": 40, "max_tokens": 6}),
    );
    let answer: Value = client.chat().create_byot(request.clone()).await.unwrap();
    assert!(answer.get("sworn").is_none(), "receipts are per choice");
    let choices = answer["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    let mut texts = Vec::new();
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
        let text = choice["message"]["content"].as_str().unwrap();
        let receipt = verify_sworn(
            &server,
            &choice["sworn"],
            &canonical(&request["messages"]),
            text,
        );
        let request_id = answer["id"].as_str().unwrap().replace("chatcmpl-", "req-");
        assert_eq!(receipt.body.request_id, format!("{request_id}.{i}"));
        assert_eq!(receipt.body.params["n"], ParamValue::Int(3));
        assert_eq!(receipt.body.params["choice"], ParamValue::Int(i as i64));
        assert_eq!(
            receipt.body.params["seed"],
            ParamValue::Str((40 + i).to_string()),
            "choice i draws with seed + i"
        );
        texts.push(text.to_string());
    }
    assert!(
        texts[0] != texts[1] || texts[1] != texts[2],
        "three draws: {texts:?}"
    );
    assert_eq!(answer["usage"]["completion_tokens"], 18);
    // Choice 1 is the answer a request with seed 41 gets.
    let mut one = request.clone();
    one["n"] = json!(1);
    one["seed"] = json!(41);
    let single: Value = client.chat().create_byot(one).await.unwrap();
    assert_eq!(
        single["choices"][0]["message"]["content"],
        texts[1].as_str()
    );

    // Streamed: every choice's text arrives under its index, its finishing chunk carries its
    // receipt, and one closing chunk counts everything.
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let mut stream = client
        .chat()
        .create_stream_byot::<_, Value>(streamed)
        .await
        .unwrap();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.unwrap());
    }
    for (i, whole) in texts.iter().enumerate() {
        let of_choice = |c: &&Value| c["choices"].get(0).is_some_and(|x| x["index"] == i);
        let text: String = (chunks.iter().filter(of_choice))
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(&text, whole, "same seeds, same text");
        let finish: Vec<_> = (chunks.iter().filter(of_choice))
            .filter(|c| !c["choices"][0]["finish_reason"].is_null())
            .collect();
        assert_eq!(finish.len(), 1);
        verify_sworn(
            &server,
            &finish[0]["choices"][0]["sworn"],
            &canonical(&request["messages"]),
            &text,
        );
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 18);
    // More choices than the server allows is a 400 naming `n`.
    let mut many = request;
    many["n"] = json!(5);
    let refused = client
        .chat()
        .create_byot::<_, Value>(many)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("`n` must be between 1 and 4"),
        "{refused}"
    );
    server.shutdown().await;
}
