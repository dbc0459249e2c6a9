//! `sworn tokenize` and `sworn generate`, run as the real binary.

use std::io::Write;
use std::ops::ControlFlow;
use std::process::{Command, Stdio};

use sworn_service::engine::runner::{DeviceChoice, Engine, EngineOptions};
use sworn_service::engine::sampling::SamplingParams;

use crate::common::*;

fn sworn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sworn"))
}

#[test]
fn tokenize_reads_json_lines_and_writes_id_arrays() {
    let goldens = tiny_goldens("tiny-llama");
    let mut child = sworn()
        .args(["tokenize", "--model"])
        .arg(fixtures().join("tiny-llama"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\"hello world, the quick brown fox\"\n\"sworn answers\"\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Vec<u32>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            goldens.cases[0].prompt_ids.clone(),
            goldens.cases[1].prompt_ids.clone()
        ]
    );
}

#[test]
fn tokenize_rejects_a_line_that_is_not_a_json_string() {
    let mut child = sworn()
        .args(["tokenize", "--model"])
        .arg(fixtures().join("tiny-llama"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"\"ok\"\nnot json\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
}

#[test]
fn generate_on_a_cuda_device_libtorch_cannot_see_is_a_clear_error() {
    // The binary loads the CUDA backend just as this process does; ask for one device
    // more than libtorch sees here (device 0 on a machine without a GPU).
    sworn_service::device::load_cuda();
    let missing = tch::Cuda::device_count().max(0) as usize;
    let out = sworn()
        .args([
            "generate",
            "--max-tokens",
            "4",
            "--prompt",
            "hello",
            "--model",
        ])
        .arg(fixtures().join("tiny-llama"))
        .args(["--device", if missing == 0 { "cuda" } else { "cuda:99" }])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let requested = if missing == 0 { 0 } else { 99 };
    assert!(
        stderr.contains(&format!(
            "CUDA device {requested} was asked for, but libtorch sees {missing} CUDA device(s)"
        )),
        "{stderr}"
    );
}

#[test]
fn generate_streams_the_engine_text_and_reports_stats() {
    let dir = fixtures().join("tiny-llama");
    let out = sworn()
        .args([
            "generate",
            "--device",
            "cpu",
            "--max-tokens",
            "12",
            "--prompt",
            "hello world",
            "--model",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let mut engine = Engine::load(
        &dir,
        &EngineOptions {
            device: DeviceChoice::Cpu,
            ..Default::default()
        },
    )
    .unwrap();
    let ids = engine.tokenizer().encode("hello world", true).unwrap();
    let expected = generate_alone(&mut engine, &ids, SamplingParams::greedy(12), |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{}\n", expected.text)
    );
    assert!(
        stderr.contains(&format!("completion {} tokens", expected.completion_tokens)),
        "{stderr}"
    );
    assert!(stderr.contains(&engine.info().sha256), "{stderr}");
}

#[test]
fn generate_with_a_missing_model_fails_clearly() {
    let out = sworn()
        .args([
            "generate",
            "--model",
            "/nonexistent/model.gguf",
            "--prompt",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/model.gguf"), "{stderr}");
}

#[test]
fn version_commands_still_work() {
    let out = sworn().arg("version").output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["libtorch"].is_string());
    let out = sworn().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sworn "));
}
