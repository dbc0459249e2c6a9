//! Tool calls, log probabilities and `n` from outside: `sworn serve` with the default model,
//! driven by the official `openai` Python SDK, unmodified (tests/sdk/surface.py, its
//! environment from `make setup`). Then the auditor's side: `sworn-verify content --tools`
//! proves a tool call against its receipt and the tools it was offered, and refuses other
//! tools; `sworn-verify receipt` proves one choice of an `n` = 3 answer.

use std::process::Command;

use serde_json::Value;
use sworn_e2e::sdk::{layer, run_script, serve_default_model, verify};
use sworn_e2e::serve::call;
use sworn_e2e::{path, repo_root};

#[test]
fn tools_logprobs_and_choices_through_the_sdk_and_the_auditors_tool() {
    let root = repo_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, addr) = serve_default_model(&dir.path().join("data"), 8);

    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    let results = run_script("surface.py", &addr, &[path(&out)]);
    eprintln!("tools, logprobs and n through the openai SDK: {results}");
    assert_eq!(results["n_texts"].as_array().map(Vec::len), Some(3));

    // The auditor proves the tool call: its receipt, the prompt, the committed message and
    // the tools offered, the calls checked against the functions' schemas.
    let (_, key) = call(&addr, "GET", "/v1/audit/key", None);
    let key = key["vkey"].as_str().expect("vkey").to_string();
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
