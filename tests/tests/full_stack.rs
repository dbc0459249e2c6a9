//! The whole product, from outside, as `make run` wires it: a real anvil; SwornAnchor
//! deployed and the log registered with `sworn chain`; `sworn serve` with the default model
//! (the SmolLM2 GGUF from `make setup`) anchoring to that chain; one answer through the real
//! OpenAI client; and `sworn-verify`, trusting only the origin, the contract and the RPC
//! endpoint, checking the answer's receipt layer by layer — then catching a tampered copy.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sworn_e2e::{
    Anvil, DEV_KEY_0, KillOnDrop, lines_of, repo_root, secret_file, wait_for_line, workspace_binary,
};

const ORIGIN: &str = "sworn.e2e/full-stack";
const MODEL_ID: &str = "SmolLM2-135M-Instruct";

fn run(binary: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// The status of each layer in a `sworn-verify --json` report.
fn layer_status(report: &Value, layer: &str) -> String {
    report["layers"]
        .as_array()
        .and_then(|layers| layers.iter().find(|l| l["layer"] == layer))
        .and_then(|l| l["status"].as_str())
        .unwrap_or("absent")
        .to_string()
}

#[test]
fn an_answer_is_proven_by_the_auditor_tool_against_the_chain() {
    let model = repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.is_file(),
        "{} missing: run `make setup`",
        model.display()
    );
    let sworn = workspace_binary("sworn");
    let verify = workspace_binary("sworn-verify");
    // One slot per epoch: a block is final two blocks later; blocks every second.
    let anvil = Anvil::start(&["--slots-in-an-epoch", "1", "--block-time", "1"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let chain_key = secret_file(dir.path(), "chain.key", DEV_KEY_0);
    let log_key = dir.path().join("log.key");

    let (code, stdout, stderr) = run(
        &sworn,
        &[
            "chain",
            "deploy",
            "--rpc",
            &anvil.url,
            "--chain-key",
            path(&chain_key),
        ],
    );
    assert_eq!(code, 0, "deploy: {stderr}");
    let contract = stdout.trim().to_string();
    let (code, _, stderr) = run(&sworn, &["keygen", "--out", path(&log_key)]);
    assert_eq!(code, 0, "keygen: {stderr}");
    let (code, _, stderr) = run(
        &sworn,
        &[
            "chain",
            "register",
            "--rpc",
            &anvil.url,
            "--chain-key",
            path(&chain_key),
            "--contract",
            &contract,
            "--origin",
            ORIGIN,
            "--log-key",
            path(&log_key),
        ],
    );
    assert_eq!(code, 0, "register: {stderr}");

    let data = dir.path().join("data");
    let mut server = Command::new(&sworn)
        .args(["serve", "--model", path(&model), "--model-id", MODEL_ID])
        .args(["--listen", "127.0.0.1:0", "--insecure-no-auth"])
        .args(["--data-dir", path(&data), "--log-key", path(&log_key)])
        .args(["--origin", ORIGIN, "--seal-interval-ms", "200"])
        .args(["--rpc", &anvil.url, "--contract", &contract])
        .args(["--chain-key", path(&chain_key)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sworn serve");
    let stderr = lines_of(server.stderr.take().expect("piped stderr"));
    let _server = KillOnDrop(server);
    let prefix = format!("sworn: serving {MODEL_ID} at ");
    let url = wait_for_line(&stderr, Duration::from_secs(300), |line| {
        line.strip_prefix(prefix.as_str()).map(str::to_owned)
    })
    .expect("the server reports that it serves");

    let answer: Value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let client = async_openai::Client::with_config(
                async_openai::config::OpenAIConfig::new()
                    .with_api_base(format!("{url}/v1"))
                    .with_api_key("unused"),
            );
            client
                .chat()
                .create_byot(json!({
                    "model": MODEL_ID,
                    "messages": [{"role": "user", "content": "What is 2+2?"}],
                    "max_tokens": 4,
                    "temperature": 0,
                }))
                .await
                .expect("chat completion")
        });
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .expect("an answer");
    assert!(!text.is_empty());
    let receipt = &answer["sworn"];
    let body: Value = serde_json::from_str(receipt["body"].as_str().expect("receipt body"))
        .expect("the body is JSON");
    let request_id = body["request_id"].as_str().expect("request id").to_string();
    assert_eq!(body["model"]["id"], MODEL_ID);

    // The auditor's view: only the origin, the contract and the RPC endpoint are trusted.
    // Anchoring and finality take a few blocks; until then the report says "pending"
    // (exit 3), never "ok".
    let audit = |extra: &[&str]| {
        let mut args = vec!["receipt", "--json", "--from-chain", "--origin", ORIGIN];
        args.extend(["--rpc", &anvil.url, "--contract", &contract]);
        args.extend(extra);
        let (code, stdout, stderr) = run(&verify, &args);
        let report: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("sworn-verify JSON ({e}): {stdout} {stderr}"));
        (code, report)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let report = loop {
        let (code, report) = audit(&["--server", &url, "--request-id", &request_id]);
        match code {
            0 => break report,
            // Not anchored or not final yet: ask again, paced at about one block.
            3 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
            _ => panic!("sworn-verify exited {code}: {report:#}"),
        }
    };
    for layer in ["signature", "inclusion", "checkpoint", "anchor", "finality"] {
        assert_eq!(layer_status(&report, layer), "ok", "{layer}: {report:#}");
    }

    // The same receipt with one byte of its body changed fails the signature layer.
    let bundle_path = dir.path().join("bundle.json");
    let tampered =
        answer["sworn"]["body"]
            .as_str()
            .expect("body")
            .replacen("\"tokens\":", "\"tokens\":1", 1);
    let mut tampered_receipt = receipt.clone();
    tampered_receipt["body"] = Value::String(tampered);
    std::fs::write(
        &bundle_path,
        serde_json::to_vec(&json!({ "receipt": tampered_receipt })).expect("JSON"),
    )
    .expect("write bundle");
    let (code, report) = audit(&[path(&bundle_path)]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(layer_status(&report, "signature"), "failed", "{report:#}");
}
