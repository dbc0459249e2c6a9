//! What the tests that drive `sworn serve` through the official `openai` Python SDK share:
//! the SDK's environment from `make setup`, a server on the default model, the SDK
//! scripts under `tests/sdk`, and `sworn-verify --json` reports.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{KillOnDrop, lines_of, model, path, repo_root, wait_for_line, workspace_binary};

/// The Python of the SDK's environment; fails with how to get it when it is missing.
pub fn python() -> PathBuf {
    let python = repo_root().join("tests/sdk/.venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run `make setup`",
        python.display()
    );
    python
}

/// `sworn serve` on the default model, no API keys, no chain, its store in `data`, at
/// most `max_batch` sequences at once; the server (killed when dropped) and its address.
pub fn serve_default_model(data: &Path, max_batch: usize) -> (KillOnDrop, String) {
    let mut server = Command::new(workspace_binary("sworn"))
        .args([
            "serve",
            "--model",
            path(&model()),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--insecure-no-auth", "--no-anchor"])
        .args(["--max-batch", &max_batch.to_string()])
        .args(["--data-dir", path(data)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sworn serve");
    let stderr = lines_of(server.stderr.take().expect("piped stderr"));
    let server = KillOnDrop(server);
    let addr = wait_for_line(&stderr, Duration::from_secs(300), |line| {
        line.split_once(" at http://")
            .map(|(_, addr)| addr.to_string())
    })
    .expect("the server reports that it serves");
    (server, addr)
}

/// Runs the SDK script `tests/sdk/<script>` against `http://<addr>/v1` with `args` after
/// that; it must succeed, and its last line of output is its results as JSON.
pub fn run_script(script: &str, addr: &str, args: &[&str]) -> Value {
    let output = Command::new(python())
        .arg(repo_root().join("tests/sdk").join(script))
        .arg(format!("http://{addr}/v1"))
        .args(args)
        .output()
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("the script's results")
}

/// Runs `sworn-verify` with `args` and `--json`: its exit code and report.
pub fn verify(args: &[&str]) -> (i32, Value) {
    let output = Command::new(workspace_binary("sworn-verify"))
        .args(args)
        .arg("--json")
        .output()
        .expect("run sworn-verify");
    let report = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), report)
}

/// The status and detail of the layer `name` in a `sworn-verify` report.
pub fn layer(report: &Value, name: &str) -> (String, String) {
    let layer = report["layers"]
        .as_array()
        .and_then(|layers| layers.iter().find(|l| l["layer"] == name))
        .cloned()
        .unwrap_or(Value::Null);
    let text = |k: &str| layer[k].as_str().unwrap_or("").to_string();
    (text("status"), text("detail"))
}
