//! Structured outputs from outside: `sworn serve` with the default model, driven by the
//! official `openai` Python SDK, unmodified (tests/sdk/structured.py, its environment from
//! `make setup`): `chat.completions.parse` with a Pydantic model, and 200 answers at
//! temperature 1 under a strict schema with nested objects, enums, `minItems` and `anyOf`,
//! every whole one checked with the `jsonschema` package. Then the auditor's side:
//! `sworn-verify content --response-format` proves one of those answers against its
//! receipt, and refuses another constraint; a schema the engine cannot enforce is a 400
//! naming the keyword.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sworn_e2e::{KillOnDrop, lines_of, repo_root, wait_for_line, workspace_binary};

/// Answers sampled under the schema (the issue asks for at least 200).
const ANSWERS: usize = 200;

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// One HTTP/1.1 exchange; returns the status and body.
fn http(addr: &str, method: &str, route: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "{method} {route} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers end");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    (status.expect("a status line"), body.to_string())
}

fn verify_content(out: &Path, format: &Path, vkey: &str) -> (i32, Value) {
    let output = Command::new(workspace_binary("sworn-verify"))
        .arg("content")
        .args(["--receipt", path(&out.join("receipt.json"))])
        .args(["--prompt", path(&out.join("prompt.json"))])
        .args(["--response", path(&out.join("response.txt"))])
        .args(["--response-format", path(format)])
        .args(["--key", vkey, "--json"])
        .output()
        .expect("run sworn-verify");
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), report)
}

fn commitment(report: &Value) -> (String, String) {
    let layer = report["layers"]
        .as_array()
        .and_then(|layers| layers.iter().find(|l| l["layer"] == "commitment"))
        .cloned()
        .unwrap_or(Value::Null);
    let text = |k: &str| layer[k].as_str().unwrap_or("").to_string();
    (text("status"), text("detail"))
}

#[test]
fn structured_answers_hold_their_schema_and_their_receipts_prove_it() {
    let root = repo_root();
    let model = root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let python = root.join("tests/sdk/.venv/bin/python");
    for needed in [&model, &python] {
        assert!(
            needed.exists(),
            "{} missing: run `make setup`",
            needed.display()
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Command::new(workspace_binary("sworn"))
        .args(["serve", "--model", path(&model), "--listen", "127.0.0.1:0"])
        .args(["--insecure-no-auth", "--no-anchor", "--max-batch", "16"])
        .args(["--data-dir", path(&dir.path().join("data"))])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sworn serve");
    let stderr = lines_of(server.stderr.take().expect("piped stderr"));
    let _server = KillOnDrop(server);
    let addr = wait_for_line(&stderr, Duration::from_secs(300), |line| {
        line.split_once(" at http://")
            .map(|(_, addr)| addr.to_string())
    })
    .expect("the server reports that it serves");

    // A schema keyword the engine cannot enforce is refused by name, before generation.
    let (_, models) = http(&addr, "GET", "/v1/models", "");
    let models: Value = serde_json::from_str(&models).expect("models JSON");
    let id = models["data"][0]["id"].as_str().expect("a model id");
    let unsupported = serde_json::json!({
        "model": id,
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true,
            "schema": {"type": "object", "properties": {"ids": {"type": "array",
                "items": {"type": "integer"}, "uniqueItems": true}}}}},
    });
    let (status, body) = http(
        &addr,
        "POST",
        "/v1/chat/completions",
        &unsupported.to_string(),
    );
    let error: Value = serde_json::from_str(&body).expect("error JSON");
    assert_eq!(status, 400, "{body}");
    assert_eq!(error["error"]["param"], "response_format", "{body}");
    let message = error["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("uniqueItems"), "{message}");

    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    let script = Command::new(&python)
        .arg(root.join("tests/sdk/structured.py"))
        .arg(format!("http://{addr}/v1"))
        .arg(path(&out))
        .arg(ANSWERS.to_string())
        .output()
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&script.stdout);
    assert!(
        script.status.success(),
        "structured.py: {stdout}\n{}",
        String::from_utf8_lossy(&script.stderr)
    );
    let counts: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("counts");
    eprintln!("structured outputs through the openai SDK: {counts}");
    assert_eq!(counts["parse_ok"], true, "chat.completions.parse: {counts}");
    assert_eq!(counts["answers"], ANSWERS);
    assert_eq!(counts["violations"], 0, "{counts}");
    let stopped = counts["stopped"].as_u64().unwrap_or(0) as usize;
    assert!(
        stopped * 10 >= ANSWERS * 9,
        "most answers end whole: {counts}"
    );

    // The auditor: the answer opens its commitment and satisfies the sworn schema.
    let (_, key) = http(&addr, "GET", "/v1/audit/key", "");
    let key: Value = serde_json::from_str(&key).expect("key JSON");
    let vkey = key["vkey"].as_str().expect("vkey");
    let format = out.join("response_format.json");
    let (code, report) = verify_content(&out, &format, vkey);
    let (status, detail) = commitment(&report);
    assert_eq!((code, status.as_str()), (0, "ok"), "{report}");
    assert!(detail.contains("valid under its schema"), "{detail}");

    // Another constraint (one enum value changed) is not the one sworn to.
    let sworn = std::fs::read_to_string(&format).expect("format");
    let other = dir.path().join("other_format.json");
    std::fs::write(&other, sworn.replace("\"8-K\"", "\"S-1\"")).expect("write");
    let (code, report) = verify_content(&out, &other, vkey);
    let (status, detail) = commitment(&report);
    assert_ne!(code, 0, "{report}");
    assert_eq!(status, "failed", "{report}");
    assert!(detail.contains("does not hash"), "{detail}");
}
