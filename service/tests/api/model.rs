//! The API over the real engine: the tiny Llama checkpoint committed with the engine tests
//! (fast) and the default SmolLM2 GGUF (chat template, real tokenizer). The HTTP path must
//! produce exactly what the engine produces on its own, and swear it.

use std::path::{Path, PathBuf};

use async_openai::types::completions::CreateCompletionRequest;
use futures::StreamExt;
use futures::future::join_all;
use serde_json::{Value, json};
use sworn_service::api::state::ServedModel;
use sworn_service::engine::runner::{DeviceChoice, DtypeChoice, Engine, EngineOptions};
use sworn_service::engine::sampling::SamplingParams;
use sworn_service::scheduler::engine_adapter::EngineGenerator;

use crate::answers::verify_sworn;
use crate::support::{Options, TestServer};

/// Positions per KV slot for these tests: prompts are short and answers a few tokens.
const MAX_CTX: usize = 256;

fn tiny_llama() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model/tiny-llama")
}

fn smollm2() -> Option<PathBuf> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("SKIP: {} absent (run `make setup`)", path.display());
        None
    }
}

fn load(path: &Path, slots: usize) -> Engine {
    let options = EngineOptions {
        device: DeviceChoice::Auto,
        dtype: DtypeChoice::Auto,
        slots,
        max_ctx: MAX_CTX,
        ..EngineOptions::default()
    };
    Engine::load(path, &options).unwrap()
}

async fn engine_server(path: &Path, id: &str) -> TestServer {
    let engine = load(path, 4);
    let model = ServedModel::of_engine(id, &engine, "test".into());
    TestServer::start(EngineGenerator::new(engine), model, Options::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_llama_answers_over_http_exactly_as_the_engine_does() {
    let server = engine_server(&tiny_llama(), "tiny-llama").await;
    let prompt = "The quick brown fox";
    // The engine on its own, greedy.
    let mut reference = load(&tiny_llama(), 1);
    let ids = reference.tokenizer().encode(prompt, true).unwrap();
    let first = reference.add(&ids, SamplingParams::greedy(8)).unwrap();
    while reference.running() > 0 {
        reference.step().unwrap();
    }
    let expected = reference.remove(first.id).unwrap();
    // The same through the API, with the real client, whole and streamed.
    let client = server.client(&server.user_key);
    let request =
        json!({"model": "tiny-llama", "prompt": prompt, "max_tokens": 8, "temperature": 0});
    let answer: Value = client
        .completions()
        .create_byot(request.clone())
        .await
        .unwrap();
    let text = answer["choices"][0]["text"].as_str().unwrap();
    assert_eq!(text, expected.text);
    assert_eq!(answer["usage"]["prompt_tokens"], ids.len());
    assert_eq!(
        answer["usage"]["completion_tokens"],
        expected.completion_tokens
    );
    let receipt = verify_sworn(
        &server,
        &answer["sworn"],
        &sworn_ledger::jcs::canonicalize(&json!(prompt)).unwrap(),
        text,
    );
    assert_eq!(receipt.body.model.sha256, reference.info().sha256);
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let typed: CreateCompletionRequest = serde_json::from_value(streamed).unwrap();
    let pieces: String = client
        .completions()
        .create_stream(typed)
        .await
        .unwrap()
        .map(|c| {
            c.unwrap()
                .choices
                .into_iter()
                .map(|c| c.text)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .await
        .concat();
    assert_eq!(pieces, expected.text);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_llama_serves_concurrent_seeded_requests_in_batches() {
    let server = engine_server(&tiny_llama(), "tiny-llama").await;
    let ask = |seed: u64| {
        let client = server.client(&server.user_key);
        async move {
            let request = json!({"model": "tiny-llama", "prompt": "Once upon", "max_tokens": 6,
                                  "temperature": 0.9, "top_p": 0.95, "seed": seed});
            let answer: Value = client.completions().create_byot(request).await.unwrap();
            answer
        }
    };
    // Eight at once: four run in one batch (4 slots), the rest queue and join as slots free.
    let together = join_all((0..8).map(ask)).await;
    for (seed, answer) in (0..8u64).zip(&together) {
        let text = answer["choices"][0]["text"].as_str().unwrap();
        let receipt = verify_sworn(&server, &answer["sworn"], b"\"Once upon\"", text);
        assert_eq!(
            receipt.body.params["seed"],
            sworn_ledger::receipt::ParamValue::Str(seed.to_string())
        );
        assert_eq!(
            receipt.body.params["top_p"],
            sworn_ledger::receipt::ParamValue::Str("0.95".into())
        );
    }
    // Alone, the same seed gives the same answer every time. (Across different batch
    // compositions only the logits' floating-point path may differ, never the random stream.)
    let (a, b) = (ask(3).await, ask(3).await);
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
    assert_eq!(server.ledger.size(), 10);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smollm2_chat_through_its_template_is_sworn() {
    let Some(path) = smollm2() else {
        return;
    };
    let server = engine_server(&path, "SmolLM2-135M-Instruct").await;
    let client = server.client(&server.user_key);
    let request = json!({
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 8, "temperature": 0
    });
    let answer: Value = client.chat().create_byot(request.clone()).await.unwrap();
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.is_empty());
    let receipt = verify_sworn(
        &server,
        &answer["sworn"],
        &sworn_ledger::jcs::canonicalize(&request["messages"]).unwrap(),
        text,
    );
    // The template wrapped the messages: the prompt is far longer than its words.
    assert!(
        receipt.body.prompt.tokens > 15,
        "prompt tokens {}",
        receipt.body.prompt.tokens
    );
    let again: Value = client.chat().create_byot(request).await.unwrap();
    assert_eq!(
        again["choices"][0]["message"]["content"], text,
        "greedy answers repeat"
    );
    server.shutdown().await;
}
