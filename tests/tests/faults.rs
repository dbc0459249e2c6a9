//! `sworn serve` under faults, as an operator meets them, with the default model: a disk
//! that fails under the ledger (an `LD_PRELOAD` shim makes writes and syncs under the data
//! directory fail with EIO or ENOSPC on demand), and SIGTERM while an answer streams.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sworn_e2e::{KillOnDrop, lines_of, repo_root, wait_for_line, workspace_binary};

const MODEL_ID: &str = "SmolLM2-135M-Instruct";

fn model() -> PathBuf {
    let model = repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.is_file(),
        "{} missing: run `make setup`",
        model.display()
    );
    model
}

/// A running `sworn serve` and its stderr lines.
struct Served {
    child: KillOnDrop,
    stderr: Receiver<String>,
    addr: String,
}

fn serve(data: &Path, env: &[(&str, &str)], extra: &[&str]) -> Served {
    let mut command = Command::new(workspace_binary("sworn"));
    command
        .args(["serve", "--model", path(&model()), "--model-id", MODEL_ID])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--insecure-no-auth",
            "--no-anchor",
        ])
        .args(["--data-dir", path(data), "--seal-interval-ms", "200"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start sworn serve");
    let stderr = lines_of(child.stderr.take().expect("piped stderr"));
    let prefix = format!("sworn: serving {MODEL_ID} at http://");
    let addr = wait_for_line(&stderr, Duration::from_secs(300), |line| {
        line.strip_prefix(prefix.as_str()).map(str::to_owned)
    })
    .expect("the server reports that it serves");
    Served {
        child: KillOnDrop(child),
        stderr,
        addr,
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// One request on its own connection: the status and the body as JSON (or `None` when
/// nothing answers, e.g. the server has gone).
fn call(addr: &str, method: &str, route: &str, body: Option<&Value>) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {route} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn chat(max_tokens: u32) -> Value {
    json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

/// Waits for the server to exit: its stderr closes when it does (every line read on the
/// way is returned), then its exit code is collected.
fn exit_code(served: &mut Served, limit: Duration) -> (i32, Vec<String>) {
    let deadline = Instant::now() + limit;
    let mut said = Vec::new();
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("the server did not exit");
        match served.stderr.recv_timeout(left) {
            Ok(line) => said.push(line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("the server did not exit: {said:#?}"),
        }
    }
    let status = served.child.0.wait().expect("wait");
    (status.code().unwrap_or(-1), said)
}

/// Builds the shim (`tests/fault/sworn_fault.c`) with the system C compiler.
fn fault_shim(dir: &Path) -> PathBuf {
    let out = dir.join("sworn_fault.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o", path(&out)])
        .arg(repo_root().join("tests/fault/sworn_fault.c"))
        .arg("-ldl")
        .status()
        .expect("run cc");
    assert!(status.success(), "the fault shim did not build");
    out
}

#[test]
fn after_a_disk_fault_the_instance_goes_unready_and_exits_and_its_log_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shim = fault_shim(dir.path());
    for (errno, name) in [("5", "EIO"), ("28", "ENOSPC")] {
        let data = dir.path().join(format!("data-{name}"));
        std::fs::create_dir_all(&data).expect("data dir");
        let flag = dir.path().join(format!("fault-{name}"));
        let mut served = serve(
            &data,
            &[
                ("LD_PRELOAD", path(&shim)),
                ("SWORN_FAULT_FLAG", path(&flag)),
                ("SWORN_FAULT_UNDER", path(&data)),
                ("SWORN_FAULT_ERRNO", errno),
            ],
            // A long grace period: a faulted instance must not wait it out.
            &["--shutdown-grace-s", "600"],
        );
        let (status, before) =
            call(&served.addr, "POST", "/v1/chat/completions", Some(&chat(4))).expect("answer");
        assert_eq!(status, 200, "{before}");
        let sworn_id = before["id"].as_str().expect("id").to_string();
        let body: Value =
            serde_json::from_str(before["sworn"]["body"].as_str().expect("body")).expect("JSON");
        let request_id = body["request_id"].as_str().expect("request id").to_string();

        // The disk fails.
        std::fs::write(&flag, b"").expect("raise the fault");
        let failed = call(&served.addr, "POST", "/v1/chat/completions", Some(&chat(4)));
        if let Some((status, answer)) = &failed {
            assert!(
                answer.get("sworn").is_none(),
                "{name}: an unsworn answer: {answer}"
            );
            assert!(*status >= 500, "{name}: {status} {answer}");
        }
        // Never ready again: 503 while it stops, then nothing listens.
        for route in ["/ready", "/health"] {
            if let Some((status, answer)) = call(&served.addr, "GET", route, None) {
                assert_eq!(status, 503, "{name} {route}: {answer}");
                assert_eq!(answer["status"], "ledger_failed", "{name} {route}");
            }
        }
        let (code, said) = exit_code(&mut served, Duration::from_secs(60));
        assert_ne!(code, 0, "{name}: a faulted instance must exit non-zero");
        assert!(
            said.iter().any(|l| l.contains("storage fault")),
            "{name}: {said:#?}"
        );

        // The fault clears; the restarted instance proves its store and serves on.
        std::fs::remove_file(&flag).expect("clear the fault");
        let served = serve(&data, &[], &[]);
        let (status, kept) = call(
            &served.addr,
            "GET",
            &format!("/v1/audit/receipts/{request_id}"),
            None,
        )
        .expect("audit answer");
        assert_eq!(
            status, 200,
            "{name}: the acknowledged receipt was lost: {kept}"
        );
        assert!(kept.to_string().contains(&request_id));
        let (status, after) =
            call(&served.addr, "POST", "/v1/chat/completions", Some(&chat(4))).expect("answer");
        assert_eq!(status, 200, "{name}: {after}");
        assert_ne!(after["id"].as_str(), Some(sworn_id.as_str()));
        assert!(
            after["sworn"]["index"].as_u64().expect("index") >= 1,
            "{name}: index 0 signed twice"
        );
        assert_eq!(
            call(&served.addr, "GET", "/ready", None).map(|r| r.0),
            Some(200)
        );
    }
}

#[test]
fn sigterm_mid_stream_swears_what_was_sent_and_the_client_gets_receipt_and_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut served = serve(&data, &[], &["--shutdown-grace-s", "1"]);
    let mut request = chat(400);
    request["stream"] = json!(true);
    let body = request.to_string();
    let mut stream = TcpStream::connect(&served.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    // HTTP/1.0: the body is not chunked, so every event line arrives whole.
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\nConnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    let mut request_id = None;
    let mut receipt = None;
    let mut done = false;
    let mut signalled = false;
    let mut line = String::new();
    while reader.read_line(&mut line).expect("read the stream") > 0 {
        let text = line.trim_end().to_string();
        line.clear();
        if let Some(id) = text.strip_prefix("x-request-id: ") {
            request_id = Some(id.to_string());
        }
        // warp writes `data:` with no space.
        let Some(data) = text.strip_prefix("data:").map(str::trim_start) else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(data).expect("a JSON chunk");
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            answer.push_str(piece);
            if !piece.is_empty() && !signalled {
                // Text is flowing: stop the server now.
                let pid = served.child.0.id().to_string();
                let killed = Command::new("kill").args(["-TERM", &pid]).status();
                assert!(killed.expect("run kill").success());
                signalled = true;
            }
        }
        if chunk.get("sworn").is_some() {
            receipt = Some(chunk["sworn"].clone());
        }
    }
    assert!(signalled, "no text before the stream ended");
    assert!(done, "the stream ended without [DONE]");
    let receipt = receipt.expect("the cut stream carries its receipt");
    let body: Value = serde_json::from_str(receipt["body"].as_str().expect("body")).expect("JSON");
    assert_eq!(body["response"]["finish_reason"], "cancelled");
    assert_eq!(
        Some(body["request_id"].as_str().expect("id")),
        request_id.as_deref()
    );
    let (code, said) = exit_code(&mut served, Duration::from_secs(60));
    assert_eq!(code, 0, "{said:#?}");
    assert!(
        !said
            .iter()
            .any(|l| l.contains("Invalid (backend, op)") || l.contains("panicked")),
        "{said:#?}"
    );

    // After a restart the receipt is in the log, and its content is what was streamed.
    let served = serve(&data, &[], &[]);
    let request_id = request_id.expect("x-request-id");
    let (status, bundle) = call(
        &served.addr,
        "GET",
        &format!("/v1/audit/receipts/{request_id}"),
        None,
    )
    .expect("audit answer");
    assert_eq!(status, 200, "{bundle}");
    assert!(bundle.to_string().contains("cancelled"), "{bundle}");
    // The auditor's check: the streamed text opens the receipt's response commitment.
    let bundle_file = dir.path().join("bundle.json");
    std::fs::write(&bundle_file, bundle.to_string()).expect("write bundle");
    let prompt_file = dir.path().join("prompt.json");
    // The canonical JSON of the messages array (keys sorted, no spaces).
    std::fs::write(
        &prompt_file,
        r#"[{"content":"Name three colours.","role":"user"}]"#,
    )
    .expect("write prompt");
    let response_file = dir.path().join("response.txt");
    std::fs::write(&response_file, &answer).expect("write response");
    let opened = Command::new(workspace_binary("sworn-verify"))
        .args(["content", "--receipt", path(&bundle_file)])
        .args([
            "--prompt",
            path(&prompt_file),
            "--response",
            path(&response_file),
        ])
        .output()
        .expect("run sworn-verify");
    assert!(
        opened.status.success(),
        "the streamed text does not open the receipt: {}{}",
        String::from_utf8_lossy(&opened.stdout),
        String::from_utf8_lossy(&opened.stderr)
    );
}
