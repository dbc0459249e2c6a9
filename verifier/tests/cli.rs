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

/// Runs `sworn-verify receipt - --key K` with `input` on stdin.
fn receipt_from_stdin(input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sworn-verify"))
        .args(["receipt", "-", "--key", &key()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// A chat completion response as the API returns it, carrying `answer` and the honest
/// vector's receipt (with its salts) in `"sworn"`.
fn completion_response(answer: &str) -> Value {
    let bundle: Value =
        serde_json::from_slice(&std::fs::read(vector("24-content-honest.bundle.json")).unwrap())
            .unwrap();
    serde_json::json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": answer}}],
        "sworn": bundle["receipt"],
    })
}

#[test]
fn bundle_from_stdin_and_a_completion_response() {
    let honest = std::fs::read_to_string(vector("honest.response")).unwrap();
    let out = receipt_from_stdin(completion_response(&honest).to_string().as_bytes());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(layer_line(&text, "signature").contains(" ok "), "{text}");
    assert!(layer_line(&text, "commitment").contains(" ok "), "{text}");
    assert!(layer_line(&text, "inclusion").contains("skipped"), "{text}");
}

/// The answer file holds both the salts and the text: an edited answer under an intact
/// `"sworn"` receipt is caught by its own commitment, not waved through.
#[test]
fn an_edited_answer_file_fails_its_commitment() {
    let out = receipt_from_stdin(
        completion_response("Approved: wire the full amount.")
            .to_string()
            .as_bytes(),
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(layer_line(&text, "commitment").contains("failed"), "{text}");
    assert!(layer_line(&text, "signature").contains(" ok "), "{text}");
}

/// `--require` names a layer this command never evaluates: a usage error, not a silent
/// pass; a layer it can evaluate but had no input for fails the run.
#[test]
fn require_is_held_to_what_the_command_evaluates() {
    let honest = vector("00-honest.bundle.json");
    for layer in ["log", "consistency", "nonsense"] {
        let out = run(&["receipt", &honest, "--key", &key(), "--require", layer]);
        assert_eq!(out.status.code(), Some(2), "--require {layer}");
    }
    let out = run(&[
        "receipt",
        &honest,
        "--key",
        &key(),
        "--require",
        "commitment",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let out = run(&[
        "receipt",
        &honest,
        "--key",
        &key(),
        "--require",
        "inclusion",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

/// A second `receipt` member, or a duplicate anywhere inside, must not mean "the last
/// one wins": the document is not I-JSON and the bundle fails.
#[test]
fn duplicate_members_fail_the_bundle() {
    let honest = std::fs::read_to_string(vector("00-honest.bundle.json")).unwrap();
    let inner = honest.trim_start().strip_prefix('{').unwrap();
    let twice = format!("{{\"receipt\":{{\"v\":1}},{inner}");
    let out = receipt_from_stdin(twice.as_bytes());
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(layer_line(&stdout(&out), "bundle").contains("duplicate member"));
}

/// The checkpoint JSON's unsigned copies must agree with its signed note.
#[test]
fn checkpoint_json_copies_that_contradict_the_note_fail() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let honest: Value =
        serde_json::from_slice(&std::fs::read(vector("00-honest.bundle.json")).unwrap()).unwrap();
    let mut cp = honest["checkpoint"].clone();
    let size = cp["size"].as_u64().unwrap();
    cp["size"] = Value::from(size + 1);
    let path = dir.path().join("cp.json");
    std::fs::write(&path, cp.to_string()).unwrap();
    let out = run(&[
        "checkpoint",
        path.to_str().unwrap(),
        "--key",
        &key(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(layer_line(&stdout(&out), "checkpoint").contains("size"));
    // A refused checkpoint is not remembered.
    assert_eq!(std::fs::read_dir(&state).map_or(0, |d| d.count()), 0);
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
    // Salts stripped from an honest bundle, with no signed erasure event: that is not an
    // erasure, whatever prompt and response are offered.
    let mut stripped: Value =
        serde_json::from_slice(&std::fs::read(vector("24-content-honest.bundle.json")).unwrap())
            .unwrap();
    stripped["receipt"]["salts"] = Value::Null;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stripped.json");
    std::fs::write(&path, stripped.to_string()).unwrap();
    let out = run(&[
        "content",
        "--receipt",
        path.to_str().unwrap(),
        "--prompt",
        &vector("honest.prompt"),
        "--response",
        &vector("honest.response"),
        "--key",
        &key(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(layer_line(&stdout(&out), "commitment").contains("failed"));
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
