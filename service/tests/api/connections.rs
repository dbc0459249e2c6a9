//! The connection layer against stalled, careless and malformed clients, over raw sockets on
//! 127.0.0.1: header, body and idle timeouts, the connection cap, early answers, framing
//! errors in the envelope, and a shutdown that stalled clients cannot hold up.
//!
//! Every wait is on the server's answer or on it closing the socket, bounded by
//! [`PATIENCE`]; nothing sleeps to synchronise.

use std::time::{Duration, Instant};

use serde_json::json;
use sworn_service::server::ConnectionLimits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::answers::toy_server;
use crate::bad_input::{SlowToy, assert_envelope};
use crate::support::{Options, Raw, TestServer, bearer, parse_response, raw, toy_model};
use crate::toy::ToyGenerator;

/// Longest any test here waits for one answer or one closure: far past every bound the
/// tests configure, far below the defaults a missing bound would fall back to (none).
const PATIENCE: Duration = Duration::from_secs(10);

fn limits(header_ms: u64, body_ms: u64, keep_alive_ms: u64, max: usize) -> ConnectionLimits {
    ConnectionLimits {
        max_connections: max,
        header_read_timeout: Duration::from_millis(header_ms),
        body_read_timeout: Duration::from_millis(body_ms),
        keep_alive_timeout: Duration::from_millis(keep_alive_ms),
    }
}

async fn server_with(limits: ConnectionLimits) -> TestServer {
    toy_server(Options {
        limits,
        ..Options::default()
    })
    .await
}

fn chat_body() -> Vec<u8> {
    json!({"model": "toy", "messages": [{"role": "user", "content": "hi"}], "temperature": 0})
        .to_string()
        .into_bytes()
}

/// Reads until the server closes the connection (end of stream or reset); panics if it is
/// still open after [`PATIENCE`].
async fn until_closed<R: AsyncRead + Unpin>(stream: &mut R) -> Vec<u8> {
    let read = async {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the server kept the connection open")
}

/// Reads one response with a `content-length` body from a connection left open.
async fn one_response(stream: &mut TcpStream) -> Raw {
    let read = async {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&bytes[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if bytes.len() >= end + 4 + length {
                    return parse_response(&bytes[..end + 4 + length]);
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole response");
            bytes.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("no response")
}

/// A connection whose request is in flight: the route is reading a body that never comes
/// (it asked for it: hyper sent `100 Continue`).
async fn busy_connection(server: &TestServer) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\nexpect: 100-continue\r\n\r\n",
        bearer(&server.user_key)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let read = async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before 100 Continue");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(
            seen.starts_with(b"HTTP/1.1 100 Continue\r\n"),
            "{:?}",
            String::from_utf8_lossy(&seen)
        );
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("no 100 Continue");
    stream
}

async fn health(server: &TestServer) -> Raw {
    tokio::time::timeout(PATIENCE, raw(server.addr, "GET", "/health", &[], b""))
        .await
        .expect("/health not answered")
}

async fn chat(server: &TestServer) -> Raw {
    let auth = bearer(&server.user_key);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let body = chat_body();
    tokio::time::timeout(
        PATIENCE,
        raw(server.addr, "POST", "/v1/chat/completions", &headers, &body),
    )
    .await
    .expect("completion not answered")
}

fn assert_closes(answer: &Raw, case: &str) {
    assert_eq!(answer.header("connection"), Some("close"), "{case}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_head_is_answered_408_and_closed_after_the_header_timeout() {
    let server = server_with(limits(300, 60_000, 60_000, 32)).await;
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    stalled
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-ty")
        .await
        .unwrap();
    let answer = parse_response(&until_closed(&mut stalled).await);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_envelope(&answer, 408, Some("request_timeout"), None, "half a head");
    assert_closes(&answer, "half a head");
    assert_eq!(health(&server).await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_that_never_ends_is_answered_408_and_closed_after_the_body_timeout() {
    let server = server_with(limits(60_000, 500, 60_000, 32)).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        bearer(&server.user_key)
    );
    let started = Instant::now();
    writer.write_all(head.as_bytes()).await.unwrap();
    // A chunk of whitespace every 50 ms, never the last chunk: data keeps coming, so only a
    // bound on the whole body ends it.
    let trickle = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..400 {
            ticks.tick().await;
            if writer.write_all(b"1\r\n \r\n").await.is_err() {
                break;
            }
        }
    });
    let answer = parse_response(&until_closed(&mut reader).await);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_envelope(
        &answer,
        408,
        Some("request_timeout"),
        None,
        "endless chunks",
    );
    assert_closes(&answer, "endless chunks");
    trickle.abort();
    assert_eq!(server.ledger.size(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_than_its_content_length_is_answered_408_and_closed() {
    let server = server_with(limits(60_000, 400, 60_000, 32)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"model\":",
        bearer(&server.user_key)
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = parse_response(&until_closed(&mut stream).await);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_envelope(&answer, 408, Some("request_timeout"), None, "short body");
    assert_closes(&answer, "short body");
    assert_eq!(health(&server).await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let server = server_with(limits(60_000, 60_000, 300, 32)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // Two requests on one connection: keep-alive works…
    for _ in 0..2 {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = one_response(&mut stream).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("connection"), None);
    }
    // …and then the idle connection is closed, without a word.
    let idle_from = Instant::now();
    assert!(until_closed(&mut stream).await.is_empty());
    assert!(idle_from.elapsed() >= Duration::from_millis(250));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_stalled_connections_past_a_limit_of_32_do_not_starve_well_behaved_clients() {
    const STALLED: usize = 100;
    const LIMIT: usize = 32;
    let server = server_with(limits(3_000, 3_000, 3_000, LIMIT)).await;
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-stall: ")
            .await
            .unwrap();
        stalled.push(stream);
    }
    // A well-behaved client is served at once, each time on a fresh connection, while the
    // stalled heads still hold every place (their timeout is 3 s).
    let served_within = Duration::from_secs(2);
    for _ in 0..3 {
        let started = Instant::now();
        let answer = health(&server).await;
        assert_eq!(
            answer.status,
            200,
            "{:?}",
            String::from_utf8_lossy(&answer.body)
        );
        assert!(started.elapsed() < served_within);
    }
    let started = Instant::now();
    let answer = chat(&server).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert!(answer.json()["sworn"]["index"].is_u64());
    assert!(started.elapsed() < served_within);
    // Every stalled connection is closed: most at once to make room (no answer), the ones
    // still held when their head timed out with 408 — never more than the limit.
    let (mut timed_out, mut dropped) = (0, 0);
    for stream in &mut stalled {
        let bytes = until_closed(stream).await;
        if bytes.is_empty() {
            dropped += 1;
        } else {
            let answer = parse_response(&bytes);
            assert_envelope(&answer, 408, Some("request_timeout"), None, "stalled head");
            timed_out += 1;
        }
    }
    assert_eq!(timed_out + dropped, STALLED);
    assert!(timed_out <= LIMIT, "{timed_out} stalled connections held");
    assert_eq!(health(&server).await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_connection_is_busy_a_new_one_gets_503_too_many_connections() {
    let server = server_with(limits(60_000, 1_000, 60_000, 4)).await;
    let mut busy = Vec::new();
    for _ in 0..4 {
        busy.push(busy_connection(&server).await);
    }
    let refused = health(&server).await;
    assert_envelope(
        &refused,
        503,
        Some("too_many_connections"),
        None,
        "connection limit",
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_closes(&refused, "connection limit");
    // The busy ones wait for bodies that never come: each gets 408 at its body timeout…
    for stream in &mut busy {
        let answer = parse_response(&until_closed(stream).await);
        assert_envelope(&answer, 408, Some("request_timeout"), None, "busy");
    }
    drop(busy);
    // …and then there is room again.
    assert_eq!(health(&server).await.status, 200);
    assert_eq!(chat(&server).await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_carry_connection_close_and_reach_clients_that_send_their_whole_body_first() {
    let server = server_with(ConnectionLimits::default()).await;
    let auth = bearer(&server.user_key);
    // Read before the body is sent: the answer says the connection is done.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1048576\r\n\r\n{\"model\":")
        .await
        .unwrap();
    let answer = parse_response(&until_closed(&mut stream).await);
    assert_envelope(
        &answer,
        401,
        Some("invalid_api_key"),
        None,
        "401, body unsent",
    );
    assert_closes(&answer, "401, body unsent");
    // Like the OpenAI SDK's transport: the whole body is written before the answer is read.
    let cases = [
        (
            "401 before the body",
            None,
            16 << 20,
            401,
            "invalid_api_key",
        ),
        (
            "413 part-way through the body",
            Some(auth.as_str()),
            4 << 20,
            413,
            "request_too_large",
        ),
    ];
    for (case, key, length, status, code) in cases {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let mut head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n"
        );
        if let Some(key) = key {
            head.push_str(&format!("authorization: {key}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let body = vec![b' '; length];
        tokio::time::timeout(PATIENCE, stream.write_all(&body))
            .await
            .expect("the body could not be sent")
            .unwrap_or_else(|e| panic!("{case}: the server reset the connection: {e}"));
        let answer = parse_response(&until_closed(&mut stream).await);
        assert_envelope(&answer, status, Some(code), None, case);
        assert_closes(&answer, case);
    }
    // An answer sent after the whole body was read keeps the connection open.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let body = chat_body();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let answer = one_response(&mut stream).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), None);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(one_response(&mut stream).await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_errors_are_answered_in_the_envelope_with_a_request_id() {
    let server = server_with(ConnectionLimits::default()).await;
    let many_headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let long_uri = format!("/{}", "a".repeat(70_000));
    let post = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n";
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "bad request line",
            b"GARBAGE\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            "control byte in a header",
            b"GET /health HTTP/1.1\r\nhost: x\r\nx-bad: a\x01b\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            "150 headers",
            format!("GET /health HTTP/1.1\r\nhost: x\r\n{many_headers}\r\n").into_bytes(),
            431,
            "request_header_fields_too_large",
        ),
        (
            "Content-Length not a number",
            format!("{post}content-length: abc\r\n\r\n").into_bytes(),
            400,
            "malformed_request",
        ),
        (
            "two Content-Lengths",
            format!("{post}content-length: 5\r\ncontent-length: 6\r\n\r\nhello").into_bytes(),
            400,
            "malformed_request",
        ),
        (
            "Transfer-Encoding not ending in chunked",
            format!("{post}transfer-encoding: gzip\r\n\r\n").into_bytes(),
            400,
            "malformed_request",
        ),
        (
            "URI over the limit",
            format!("GET {long_uri} HTTP/1.1\r\nhost: x\r\n\r\n").into_bytes(),
            414,
            "uri_too_long",
        ),
    ];
    for (case, request, status, code) in cases {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(&request).await.unwrap();
        let answer = parse_response(&until_closed(&mut stream).await);
        assert_envelope(&answer, status, Some(code), None, case);
        assert_closes(&answer, case);
    }
    // A path that exists, with a method it does not take.
    for (method, path) in [("GET", "/v1/chat/completions"), ("PUT", "/health")] {
        let answer = raw(server.addr, method, path, &[], b"").await;
        assert_envelope(
            &answer,
            405,
            Some("method_not_allowed"),
            None,
            &format!("{method} {path}"),
        );
    }
    assert_eq!(health(&server).await.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_streams_past_every_timeout() {
    // 10 ms a token: 80 tokens outlast each bound below several times over.
    let server = TestServer::start(
        SlowToy(ToyGenerator { max_batch: 4 }),
        toy_model(&"cd".repeat(32)),
        Options {
            limits: limits(200, 200, 200, 32),
            ..Options::default()
        },
    )
    .await;
    let auth = bearer(&server.user_key);
    let body = json!({
        "model": "toy", "messages": [{"role": "user", "content": "go"}],
        "temperature": 1, "seed": 3, "max_tokens": 80, "stream": true
    })
    .to_string();
    let started = Instant::now();
    let answer = raw(
        server.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(answer.status, 200);
    let text = String::from_utf8(answer.body).unwrap();
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    assert!(text.contains("\"sworn\""), "{text}");
    assert!(text.trim_end().ends_with("data:[DONE]"), "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_by_stalled_connections_past_their_timeouts() {
    // Heads and idle connections would wait a minute; bodies a second.
    let server = server_with(limits(60_000, 1_000, 60_000, 32)).await;
    let mut quiet = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        quiet.push(stream);
    }
    quiet.push(TcpStream::connect(server.addr).await.unwrap());
    let mut kept_alive = TcpStream::connect(server.addr).await.unwrap();
    kept_alive
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(one_response(&mut kept_alive).await.status, 200);
    quiet.push(kept_alive);
    let mut busy = vec![
        busy_connection(&server).await,
        busy_connection(&server).await,
    ];
    // The grace period is 30 s; the stalled bodies end at their 1 s timeout, the rest at once.
    tokio::time::timeout(PATIENCE, server.shutdown())
        .await
        .expect("shutdown waited for stalled connections");
    for stream in &mut busy {
        let answer = parse_response(&until_closed(stream).await);
        assert_envelope(&answer, 408, Some("request_timeout"), None, "stalled body");
    }
    for stream in &mut quiet {
        assert!(until_closed(stream).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_connections_at_the_default_limit_starve_no_one_and_hold_no_shutdown() {
    const STALLED: usize = 1_000;
    // The default connection limit; heads and idle connections would wait a minute.
    let server = server_with(limits(60_000, 60_000, 60_000, 512)).await;
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-stall: ")
            .await
            .unwrap();
        stalled.push(stream);
    }
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(health(&server).await.status, 200);
    }
    let answer = chat(&server).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert!(answer.json()["sworn"]["index"].is_u64());
    eprintln!(
        "3 health checks and one sworn chat beside {STALLED} stalled connections: {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    tokio::time::timeout(PATIENCE, server.shutdown())
        .await
        .expect("shutdown waited for stalled connections");
    eprintln!(
        "shutdown with {STALLED} stalled connections: {:?}",
        started.elapsed()
    );
    for stream in &mut stalled {
        until_closed(stream).await;
    }
}
