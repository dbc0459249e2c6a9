//! The real `sworn-verify` binary on the committed vectors: exit codes, one line per
//! layer, JSON, usage errors, and the per-origin state of `checkpoint`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::vectors::dir;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sworn-verify"))
        .args(args)
        .output()
        .unwrap()
}

fn vector(name: &str) -> String {
    dir().join(name).to_str().unwrap().to_string()
}

fn key() -> String {
    vector("key.vkey")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn layer_line<'a>(text: &'a str, layer: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(&format!("{layer} ")))
        .unwrap_or_else(|| panic!("no {layer} line in\n{text}"))
}

#[test]
fn honest_bundle_exits_zero_and_names_every_layer() {
    let out = run(&["receipt", &vector("00-honest.bundle.json"), "--key", &key()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for layer in ["bundle", "signature", "inclusion", "checkpoint"] {
        assert!(layer_line(&text, layer).contains(" ok "), "{text}");
    }
    // No chain given: anchor and finality are skipped, never ok.
    assert!(layer_line(&text, "anchor").contains("skipped"), "{text}");
    assert!(layer_line(&text, "finality").contains("skipped"), "{text}");
    assert!(
        text.contains("log index") && text.contains("leaf hash"),
        "{text}"
    );
}

#[test]
fn forged_signature_exits_one_naming_the_layer() {
    let out = run(&[
        "receipt",
        &vector("01-forged-signature.bundle.json"),
        "--key",
        &key(),
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(layer_line(&text, "signature").contains("failed"), "{text}");
    assert!(layer_line(&text, "inclusion").contains(" ok "), "{text}");
}

#[test]
fn json_output_and_required_layers() {
    let out = run(&[
        "receipt",
        &vector("00-honest.bundle.json"),
        "--key",
        &key(),
        "--json",
        "--require",
        "anchor",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "failed");
    let anchor = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "anchor")
        .unwrap();
    assert_eq!(
        (anchor["status"].as_str(), anchor["required"].as_bool()),
        (Some("skipped"), Some(true))
    );
}

#[test]
fn bundle_from_stdin_and_a_completion_response() {
    let bundle: Value =
        serde_json::from_slice(&std::fs::read(vector("00-honest.bundle.json")).unwrap()).unwrap();
    let response = serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion", "choices": [], "sworn": bundle["receipt"]});
    let mut child = Command::new(env!("CARGO_BIN_EXE_sworn-verify"))
        .args(["receipt", "-", "--key", &key()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(response.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(layer_line(&text, "signature").contains(" ok "), "{text}");
    assert!(layer_line(&text, "inclusion").contains("skipped"), "{text}");
}

#[test]
fn usage_and_io_errors_exit_two() {
    assert_eq!(
        run(&["receipt", &vector("00-honest.bundle.json")])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["receipt", "/nonexistent/bundle.json", "--key", &key()])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&[
            "receipt",
            &vector("00-honest.bundle.json"),
            "--key",
            "not-a-key"
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn content_erased_is_not_tampered() {
    let args = |bundle: &str| {
        run(&[
            "content",
            "--receipt",
            &vector(bundle),
            "--prompt",
            &vector("honest.prompt"),
            "--response",
            &vector("honest.response"),
            "--key",
            &key(),
        ])
    };
    let ok = args("24-content-honest.bundle.json");
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    let erased = args("24b-content-erased.bundle.json");
    assert_eq!(erased.status.code(), Some(0));
    assert!(layer_line(&stdout(&erased), "commitment").contains("erased"));
    let wrong = args("24c-content-wrong-salt.bundle.json");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(layer_line(&stdout(&wrong), "commitment").contains("failed"));
}

#[test]
fn audit_findings_carry_their_index() {
    let out = run(&[
        "audit",
        &vector("18b-export-reordered.ndjson"),
        "--key",
        &key(),
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("index 4, reordered"), "{text}");
    assert!(text.contains("index 7, checkpoint-root"), "{text}");
    let clean = run(&["audit", &vector("18-export-honest.ndjson"), "--key", &key()]);
    assert_eq!(clean.status.code(), Some(0), "{}", stdout(&clean));
}

fn write_note(dir: &Path, name: &str, note: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, note.as_str().unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn checkpoint_state_catches_a_rollback_across_runs() {
    let material = crate::vectors::committed_material();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let state = state.to_str().unwrap();
    let old = write_note(tmp.path(), "old.note", &material["old_checkpoint"]["note"]);
    let new = write_note(
        tmp.path(),
        "new.note",
        &material["bundle"]["checkpoint"]["note"],
    );
    let proof = tmp.path().join("proof.json");
    std::fs::write(&proof, material["consistency"].to_string()).unwrap();
    let proof = proof.to_str().unwrap();

    let first = run(&["checkpoint", &old, "--key", &key(), "--state-dir", state]);
    assert_eq!(first.status.code(), Some(0), "{}", stdout(&first));
    assert!(layer_line(&stdout(&first), "consistency").contains("skipped"));
    // Newer without a proof: required and skipped, so the run fails and state stays.
    let no_proof = run(&["checkpoint", &new, "--key", &key(), "--state-dir", state]);
    assert_eq!(no_proof.status.code(), Some(1), "{}", stdout(&no_proof));
    let advanced = run(&[
        "checkpoint",
        &new,
        "--key",
        &key(),
        "--state-dir",
        state,
        "--consistency",
        proof,
    ]);
    assert_eq!(advanced.status.code(), Some(0), "{}", stdout(&advanced));
    let rolled_back = run(&["checkpoint", &old, "--key", &key(), "--state-dir", state]);
    let text = stdout(&rolled_back);
    assert_eq!(rolled_back.status.code(), Some(1), "{text}");
    assert!(
        layer_line(&text, "consistency").contains("rollback"),
        "{text}"
    );
}
