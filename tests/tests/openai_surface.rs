//! Tool calls, log probabilities and `n` from outside: `sworn serve` with the default model,
//! driven by the official `openai` Python SDK, unmodified (tests/sdk/surface.py, its
//! environment from `make setup`). Then the auditor's side: `sworn-verify content --tools`
//! proves a tool call against its receipt and the tools it was offered, and refuses other
//! tools; `sworn-verify receipt` proves one choice of an `n` = 3 answer.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sworn_e2e::{KillOnDrop, lines_of, repo_root, wait_for_line, workspace_binary};

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// Runs `sworn-verify` with `args` and `--json`; its exit code and report.
fn verify(args: &[&str]) -> (i32, Value) {
    let output = Command::new(workspace_binary("sworn-verify"))
        .args(args)
        .arg("--json")
        .output()
        .expect("run sworn-verify");
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), report)
}

/// A layer's status and detail in a report.
fn layer(report: &Value, name: &str) -> (String, String) {
    let layer = report["layers"]
        .as_array()
        .and_then(|layers| layers.iter().find(|l| l["layer"] == name))
        .cloned()
        .unwrap_or(Value::Null);
    let text = |k: &str| layer[k].as_str().unwrap_or("").to_string();
    (text("status"), text("detail"))
}

#[test]
fn tools_logprobs_and_choices_through_the_sdk_and_the_auditors_tool() {
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
        .args(["--insecure-no-auth", "--no-anchor", "--max-batch", "8"])
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

    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    let script = Command::new(&python)
        .arg(root.join("tests/sdk/surface.py"))
        .arg(format!("http://{addr}/v1"))
        .arg(path(&out))
        .output()
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&script.stdout);
    assert!(
        script.status.success(),
        "surface.py: {stdout}\n{}",
        String::from_utf8_lossy(&script.stderr)
    );
    let results: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("results");
    eprintln!("tools, logprobs and n through the openai SDK: {results}");
    assert_eq!(results["n_texts"].as_array().map(Vec::len), Some(3));

    // The auditor proves the tool call: its receipt, the prompt, the committed message and
    // the tools offered, the calls checked against the functions' schemas.
    let key = ureq_key(&addr);
    let file = |name: &str| out.join(name).to_string_lossy().into_owned();
    let content = |tools: &str| {
        verify(&[
            "content",
            "--receipt",
            &file("tool_answer.json"),
            "--prompt",
            &file("tool_prompt.json"),
            "--response",
            &file("tool_response.json"),
            "--tools",
            tools,
            "--key",
            &key,
        ])
    };
    let (code, report) = content(&file("tools.json"));
    let (status, detail) = layer(&report, "commitment");
    assert_eq!((code, status.as_str()), (0, "ok"), "{report}");
    assert!(detail.contains("tool call(s)"), "{detail}");
    // Other tools (a function renamed) are not the ones the answer was produced under.
    let offered = std::fs::read_to_string(file("tools.json")).expect("tools.json");
    let other = dir.path().join("other_tools.json");
    std::fs::write(&other, offered.replace("get_price", "get_quote")).expect("write");
    let (code, report) = content(path(&other));
    let (status, detail) = layer(&report, "commitment");
    assert_ne!(code, 0, "{report}");
    assert_eq!(status, "failed", "{report}");
    assert!(detail.contains("does not hash"), "{detail}");
    // The whole completion response verifies as a receipt too: the verifier rebuilds the
    // committed message from its tool calls.
    let (code, report) = verify(&["receipt", &file("tool_answer.json"), "--key", &key]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(layer(&report, "commitment").0, "ok", "{report}");

    // One choice of three, with its own receipt, verifies on its own.
    let (code, report) = verify(&["receipt", &file("n_choice.json"), "--key", &key]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(layer(&report, "commitment").0, "ok", "{report}");

    // The independent verifier, written from docs/FORMATS.md alone, agrees on both files.
    let independent = root.join("verifier/independent");
    let key_file = dir.path().join("log.vkey");
    std::fs::write(&key_file, format!("{key}\n")).expect("write key");
    for name in ["tool_answer.json", "n_choice.json"] {
        let output = Command::new(independent.join(".venv/bin/python"))
            .arg(independent.join("sworn_verify.py"))
            .args(["receipt", &file(name), "--key", path(&key_file), "--json"])
            .output()
            .expect("run the independent verifier");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        assert_eq!(output.status.code(), Some(0), "{name}: {report}");
        assert_eq!(layer(&report, "commitment").0, "ok", "{name}: {report}");
    }
    // A call's arguments edited under its intact receipt: both verifiers refuse it.
    let answer = std::fs::read_to_string(file("tool_answer.json")).expect("tool answer");
    let mut edited: Value = serde_json::from_str(&answer).expect("JSON");
    let arguments = &mut edited["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"];
    *arguments = Value::String(arguments.as_str().unwrap_or("").replace('}', ", \"x\": 1}"));
    let edited_file = dir.path().join("edited.json");
    std::fs::write(&edited_file, edited.to_string()).expect("write");
    let (code, report) = verify(&["receipt", path(&edited_file), "--key", &key]);
    assert_ne!(code, 0, "{report}");
    assert_eq!(layer(&report, "commitment").0, "failed", "{report}");
    let output = Command::new(independent.join(".venv/bin/python"))
        .arg(independent.join("sworn_verify.py"))
        .args([
            "receipt",
            path(&edited_file),
            "--key",
            path(&key_file),
            "--json",
        ])
        .output()
        .expect("run the independent verifier");
    assert_ne!(
        output.status.code(),
        Some(0),
        "the independent verifier refuses it too"
    );
}

/// The log's verifier key, from `GET /v1/audit/key`.
fn ureq_key(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET /v1/audit/key HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("response");
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let key: Value = serde_json::from_str(body).expect("key JSON");
    key["vkey"].as_str().expect("vkey").to_string()
}
