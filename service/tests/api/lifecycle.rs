//! Disconnects, graceful shutdown, TLS, and the routes that need no key.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::answers::toy_server;
use crate::bad_input::slow_server;
use crate::support::{Options, bearer, raw};
use sworn_service::server::ListenOptions;

/// Sends a streaming chat request on a raw socket and reads until the first generated
/// letter; returns the socket, the request id and the bytes read so far.
async fn start_stream(
    addr: std::net::SocketAddr,
    key: &str,
    max_tokens: u32,
) -> (tokio::net::TcpStream, String, Vec<u8>) {
    let body = json!({
        "model": "toy", "messages": [{"role": "user", "content": "go"}],
        "temperature": 1, "seed": 7, "max_tokens": max_tokens, "stream": true
    })
    .to_string();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        bearer(key),
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body.as_bytes()).await.unwrap();
    let marker = b"\"content\":\"";
    let mut seen = Vec::new();
    loop {
        let mut buf = [0u8; 1024];
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "stream closed early");
        seen.extend_from_slice(&buf[..n]);
        if seen
            .windows(marker.len() + 1)
            .any(|w| w.starts_with(marker) && w[marker.len()].is_ascii_lowercase())
        {
            break;
        }
    }
    let text = String::from_utf8_lossy(&seen);
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("x-request-id header")
        .trim()
        .to_string();
    (socket, id, seen)
}

/// The generated text of an event stream (every `delta.content`), the receipt of its last
/// chunk, and whether it ended with `[DONE]`.
fn read_stream(bytes: &[u8]) -> (String, Option<serde_json::Value>, bool) {
    let text = String::from_utf8_lossy(bytes);
    let mut answer = String::new();
    let mut receipt = None;
    let mut done = false;
    for line in text.lines() {
        let Some(data) = line
            .strip_prefix("data: ")
            .or_else(|| line.strip_prefix("data:"))
        else {
            continue;
        };
        if data.trim() == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: serde_json::Value = serde_json::from_str(data).unwrap();
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            answer.push_str(piece);
        }
        if chunk.get("sworn").is_some() {
            receipt = Some(chunk["sworn"].clone());
        }
    }
    (answer, receipt, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_stops_its_generation_and_is_still_sworn() {
    let server = slow_server(8, 4).await;
    let (socket, request_id, _) = start_stream(server.addr, &server.user_key, 200).await;
    drop(socket);
    // The partial answer is recorded: wait for the sealer to cover entry 0.
    let checkpoint = tokio::task::spawn_blocking({
        let ledger = server.ledger.clone();
        move || {
            ledger
                .wait_for_checkpoint(1, Duration::from_secs(30))
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        checkpoint.is_some(),
        "the cancelled request was never sworn"
    );
    let receipt = server
        .ledger
        .receipt_by_request_id(&request_id)
        .unwrap()
        .unwrap();
    assert_eq!(receipt.body.response.finish_reason, "cancelled");
    // 200 tokens take 2 s at 10 ms each; the engine stopped long before.
    assert!(
        receipt.body.response.tokens < 200,
        "generation ran on: {}",
        receipt.body.response.tokens
    );
    let content = server.ledger.content(receipt.entry.index).unwrap().unwrap();
    // One letter per toy token: the recorded text is exactly what was generated and sent.
    assert_eq!(content.response.len() as u64, receipt.body.response.tokens);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_and_seals_a_last_checkpoint() {
    let server = slow_server(8, 4).await;
    let (mut socket, request_id, _) = start_stream(server.addr, &server.user_key, 30).await;
    let state = server.state.clone();
    let ledger = server.ledger.clone();
    let addr = server.addr;
    let reader = tokio::spawn(async move {
        let mut rest = Vec::new();
        socket.read_to_end(&mut rest).await.unwrap();
        String::from_utf8_lossy(&rest).to_string()
    });
    server.shutdown().await;
    // The in-flight stream ran to its end, receipt included.
    let rest = reader.await.unwrap();
    assert!(rest.contains("\"sworn\""), "stream cut short: {rest}");
    assert!(rest.contains("[DONE]"));
    let receipt = ledger.receipt_by_request_id(&request_id).unwrap().unwrap();
    assert_eq!(receipt.body.response.finish_reason, "length");
    // The last checkpoint covers everything.
    let last = ledger.latest_checkpoint().unwrap().unwrap();
    assert_eq!(last.checkpoint.size, ledger.size());
    assert!(state.lifecycle() == sworn_service::api::state::Lifecycle::Draining);
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_at_the_end_of_grace_gets_its_receipt_and_done_and_is_in_the_log() {
    let server = slow_server(8, 1).await;
    // 256 tokens take 2.5 s at 10 ms each; the grace period is a tenth of that.
    let (mut socket, request_id, mut seen) = start_stream(server.addr, &server.user_key, 256).await;
    // A second request waits in the queue behind the first (one slot).
    let queued_socket = {
        let body = json!({
            "model": "toy", "messages": [{"role": "user", "content": "wait"}],
            "max_tokens": 5, "stream": false
        })
        .to_string();
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            bearer(&server.user_key),
            body.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(body.as_bytes()).await.unwrap();
        socket
    };
    // Shut down only once it is in the queue.
    let waiting = &server.state.scheduler.stats().waiting;
    while waiting.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let ledger = server.ledger.clone();
    let reader = tokio::spawn(async move {
        socket.read_to_end(&mut seen).await.unwrap();
        seen
    });
    let queued_reader = tokio::spawn(async move {
        let mut socket = queued_socket;
        let mut all = Vec::new();
        socket.read_to_end(&mut all).await.unwrap();
        crate::support::parse_response(&all)
    });
    server.shutdown_within(Duration::from_millis(250)).await;
    let (answer, sworn, done) = read_stream(&reader.await.unwrap());
    assert!(done, "no [DONE] after the cut");
    let sworn = sworn.expect("the cut stream carries its receipt");
    let receipt = ledger.receipt_by_request_id(&request_id).unwrap().unwrap();
    assert_eq!(sworn["index"], receipt.entry.index);
    assert_eq!(receipt.body.response.finish_reason, "cancelled");
    assert!(
        receipt.body.response.tokens < 256,
        "the generation ran to its end instead of being cut"
    );
    // What the client was sent is exactly what was sworn.
    let content = ledger.content(receipt.entry.index).unwrap().unwrap();
    assert_eq!(String::from_utf8(content.response).unwrap(), answer);
    assert_eq!(answer.len() as u64, receipt.body.response.tokens);
    // The queued request is answered, and sworn, as cancelled with nothing generated.
    let queued = queued_reader.await.unwrap();
    assert_eq!(
        queued.status,
        200,
        "{}",
        String::from_utf8_lossy(&queued.body)
    );
    let queued_id = queued.header("x-request-id").unwrap();
    let queued_receipt = ledger.receipt_by_request_id(queued_id).unwrap().unwrap();
    assert_eq!(queued_receipt.body.response.finish_reason, "cancelled");
    assert_eq!(queued_receipt.body.response.tokens, 0);
    assert_eq!(queued.json()["sworn"]["index"], queued_receipt.entry.index);
    // The last checkpoint covers both.
    let last = ledger.latest_checkpoint().unwrap().unwrap();
    assert_eq!(last.checkpoint.size, ledger.size());
    assert_eq!(ledger.size(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_503_model_loading_until_the_routes_are_ready() {
    let loaded = toy_server(Options::default()).await;
    let server = sworn_service::server::Server::start_loading(ListenOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        allow_plain_http: false,
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    let body =
        json!({"model": "toy", "messages": [{"role": "user", "content": "m"}], "temperature": 0})
            .to_string();
    let auth = bearer(&loaded.user_key);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let chat = || {
        raw(
            addr,
            "POST",
            "/v1/chat/completions",
            &headers,
            body.as_bytes(),
        )
    };
    for answer in [
        raw(addr, "GET", "/health", &[], b"").await,
        raw(addr, "GET", "/ready", &[], b"").await,
        chat().await,
    ] {
        assert_eq!(answer.status, 503);
        let error = &answer.json()["error"];
        assert_eq!(error["type"], "service_unavailable_error");
        assert_eq!(error["code"], "model_loading");
        assert!(error["param"].is_null());
        assert_eq!(answer.header("retry-after"), Some("1"));
        assert!(answer.header("x-request-id").is_some());
    }
    server.ready(loaded.state.clone());
    let health = raw(addr, "GET", "/health", &[], b"").await;
    assert_eq!(
        (health.status, health.json()["status"].as_str()),
        (200, Some("ok"))
    );
    let answered = chat().await;
    assert_eq!(answered.status, 200, "{:?}", answered.json());
    assert!(answered.json()["sworn"]["index"].is_u64());
    server.stop().await;
    loaded.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics_need_no_key() {
    let server = toy_server(Options::default()).await;
    let health = raw(server.addr, "GET", "/health", &[], b"").await;
    assert_eq!(
        (health.status, health.json()["status"].as_str()),
        (200, Some("ok"))
    );
    assert!(health.header("x-request-id").is_some());
    assert_eq!(
        raw(server.addr, "GET", "/ready", &[], b"").await.status,
        200
    );
    let auth = bearer(&server.user_key);
    // Two answered requests, one after the other: one ends at end of sequence, the other
    // at its `max_tokens`. (prompt tokens, completion tokens) from their usage.
    let mut usage = Vec::new();
    for body in [
        json!({"model": "toy", "messages": [{"role": "user", "content": "m"}], "temperature": 0}),
        json!({"model": "toy", "messages": [{"role": "user", "content": "mmm"}], "temperature": 0, "max_tokens": 3}),
    ] {
        let body = body.to_string();
        let answered = raw(
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
        assert_eq!(answered.status, 200);
        let json = answered.json();
        let tokens = |field: &str| json["usage"][field].as_u64().unwrap();
        usage.push((tokens("prompt_tokens"), tokens("completion_tokens")));
    }
    let prompt: u64 = usage.iter().map(|u| u.0).sum();
    let generated: u64 = usage.iter().map(|u| u.1).sum();
    assert_eq!(usage[1].1, 3, "{usage:?}");
    let metrics = raw(server.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    for line in [
        "sworn:request_success_total{finished_reason=\"stop\"} 1".to_string(),
        "sworn:request_success_total{finished_reason=\"length\"} 1".to_string(),
        format!("sworn:prompt_tokens_total {prompt}"),
        "sworn:ledger_entries 2".to_string(),
        "sworn:time_to_first_token_seconds_count 2".to_string(),
        "sworn:ledger_append_seconds_count 2".to_string(),
        "sworn:num_requests_waiting 0".to_string(),
        // Idle: every sequence gave its slot back before its client was answered.
        "sworn:kv_cache_usage_perc 0".to_string(),
        format!("sworn:request_prompt_tokens_sum {prompt}"),
        "sworn:request_prompt_tokens_count 2".to_string(),
        format!("sworn:request_generation_tokens_sum {generated}"),
        "sworn:request_generation_tokens_count 2".to_string(),
        "sworn:request_params_max_tokens_count 2".to_string(),
        // Only the second request asked for as few as 5.
        "sworn:request_params_max_tokens_bucket{le=\"5\"} 1".to_string(),
        // Each prompt is prefilled once with its first token; every later token is one
        // decode row (the requests ran one at a time).
        format!(
            "sworn:iteration_tokens_total_sum {}",
            prompt + generated - 2
        ),
    ] {
        assert!(
            text.contains(&format!("{line}\n")),
            "missing `{line}` in\n{text}"
        );
    }
    // Every histogram is cumulative and its `+Inf` bucket is its count.
    for name in [
        "sworn:request_prompt_tokens",
        "sworn:request_generation_tokens",
        "sworn:request_params_max_tokens",
        "sworn:iteration_tokens_total",
    ] {
        let buckets: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{name}_bucket{{le=")))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(buckets.len() > 10, "{name} in\n{text}");
        assert!(
            buckets.windows(2).all(|w| w[0] <= w[1]),
            "{name}: {buckets:?}"
        );
        let count = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_count ")))
            .unwrap();
        assert_eq!(buckets.last().unwrap().to_string(), count, "{name}");
        assert_ne!(count, "0", "{name}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_https_with_the_given_certificate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let server = toy_server(Options {
        tls: Some((cert, key)),
        ..Options::default()
    })
    .await;
    assert!(server.url.starts_with("https://"));
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // Plain HTTP to the TLS port gets no answer.
    let mut plain = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    server.shutdown().await;
}
