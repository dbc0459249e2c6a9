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

/// `GET {base}{route}` over a plain socket (the server runs without API keys here), the
/// body as text; panics on anything but 200.
fn http_get(base: &str, route: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.strip_prefix("http://").expect("an http:// base URL");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "GET {route} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("response");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers end");
    assert!(head.starts_with("HTTP/1.1 200"), "{route}: {head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{route}: a chunked answer needs a real client"
    );
    body.to_string()
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

    // The user discloses the exchange: the canonical (RFC 8785) messages array and the
    // answer text open the receipt's commitments byte for byte; the same prompt as the
    // client spelled it (another member order) does not, since nothing is re-canonicalised.
    let vkey: Value = serde_json::from_str(&http_get(&url, "/v1/audit/key")).expect("key JSON");
    let vkey = vkey["vkey"].as_str().expect("vkey").to_string();
    let answer_path = dir.path().join("answer.json");
    std::fs::write(&answer_path, serde_json::to_vec(&answer).expect("JSON")).expect("write");
    let response_path = dir.path().join("response.txt");
    std::fs::write(&response_path, text).expect("write");
    let content = |prompt: &str| {
        let prompt_path = dir.path().join("prompt.json");
        std::fs::write(&prompt_path, prompt).expect("write");
        let (code, stdout, _) = run(
            &verify,
            &[
                "content",
                "--json",
                "--receipt",
                path(&answer_path),
                "--prompt",
                path(&prompt_path),
                "--response",
                path(&response_path),
                "--key",
                &vkey,
            ],
        );
        (
            code,
            serde_json::from_str::<Value>(&stdout).expect("report"),
        )
    };
    let (code, report) = content(r#"[{"content":"What is 2+2?","role":"user"}]"#);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(layer_status(&report, "commitment"), "ok", "{report:#}");
    let (code, report) = content(r#"[{"role":"user","content":"What is 2+2?"}]"#);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(layer_status(&report, "commitment"), "failed", "{report:#}");

    // The anchor-records gauge counts what /v1/audit/anchors lists (seqs start at 1). The
    // anchorer may add a record meanwhile, so compare only a reading taken between two
    // equal counts of the list.
    let records = || {
        let anchors: Value =
            serde_json::from_str(&http_get(&url, "/v1/audit/anchors")).expect("anchors JSON");
        anchors["anchors"].as_array().expect("anchors").len()
    };
    let mut compared = false;
    for _ in 0..20 {
        let before = records();
        let metrics = http_get(&url, "/metrics");
        if records() != before {
            continue;
        }
        let gauge = metrics
            .lines()
            .find_map(|l| l.strip_prefix("sworn:anchor_records "))
            .expect("the anchor_records gauge");
        assert!(before >= 1);
        assert_eq!(
            gauge.trim().parse::<usize>().ok(),
            Some(before),
            "{metrics}"
        );
        compared = true;
        break;
    }
    assert!(
        compared,
        "the anchor list never held still for one /metrics reading"
    );

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
