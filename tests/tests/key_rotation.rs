//! Log-key rotation, end to end, against a real anvil, a real sled store on disk, real
//! `sworn serve` and `sworn-verify`: `sworn log-key rotate` records the rotation on the
//! contract and in the store; the retired key no longer starts the log; old receipts verify
//! under the old key and new ones under the new key (offline with the key history, and
//! with the keys taken from the chain); a receipt or checkpoint the old key signs past the
//! rotation point is refused; the audit passes across the rotation. And the failure paths:
//! a rotation begun but not recorded on chain keeps the log from serving until it is
//! finished or aborted, and a store that does not know a rotation the chain holds is
//! refused at start.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sworn_e2e::{
    Anvil, DEV_KEY_0, DEV_KEY_1, KillOnDrop, lines_of, repo_root, secret_file, workspace_binary,
};
use sworn_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use sworn_ledger::keys::LogKey;
use sworn_ledger::merkle::Hash;

const ORIGIN: &str = "sworn.e2e/key-rotation";
const MODEL_ID: &str = "SmolLM2-135M-Instruct";

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

fn model() -> PathBuf {
    let model = repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.is_file(),
        "{} missing: run `make setup`",
        model.display()
    );
    model
}

/// Runs a workspace binary to completion: exit code, stdout, stderr.
fn run(binary: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(workspace_binary(binary))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {binary}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A chain with SwornAnchor deployed and this test's log registered under `log_key`.
struct Chain {
    anvil: Anvil,
    contract: String,
    chain_key: PathBuf,
}

impl Chain {
    fn deploy(dir: &Path, log_key: &Path) -> Chain {
        // One slot per epoch: a block is final two blocks later; blocks every second.
        let anvil = Anvil::start(&["--slots-in-an-epoch", "1", "--block-time", "1"]);
        let chain_key = secret_file(dir, "chain.key", DEV_KEY_0);
        let (code, stdout, stderr) = run(
            "sworn",
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
        let (code, _, stderr) = run(
            "sworn",
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
                path(log_key),
            ],
        );
        assert_eq!(code, 0, "register: {stderr}");
        Chain {
            anvil,
            contract,
            chain_key,
        }
    }

    /// The `sworn serve` flags that anchor to this chain.
    fn flags(&self) -> Vec<String> {
        [
            "--rpc",
            &self.anvil.url,
            "--contract",
            &self.contract,
            "--chain-key",
            path(&self.chain_key),
        ]
        .map(str::to_string)
        .to_vec()
    }

    /// `--rpc URL --contract ADDR` for `sworn-verify`.
    fn verify_flags(&self) -> [&str; 4] {
        ["--rpc", &self.anvil.url, "--contract", &self.contract]
    }

    /// `sworn log-key rotate` of the store in `data` to `new_key` (plus `extra` flags).
    fn rotate(&self, data: &Path, new_key: &Path, extra: &[&str]) -> (i32, String, String) {
        let mut args = vec![
            "log-key",
            "rotate",
            "--data-dir",
            path(data),
            "--origin",
            ORIGIN,
            "--new-key",
            path(new_key),
            "--rpc",
            &self.anvil.url,
            "--contract",
            &self.contract,
            "--chain-key",
            path(&self.chain_key),
            "--timeout-s",
            "120",
        ];
        args.extend_from_slice(extra);
        run("sworn", &args)
    }
}

/// A data directory with its log key inside (the default place).
fn new_data_dir(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir(&data).expect("data dir");
    let log_key = data.join("log.key");
    let (code, _, stderr) = run("sworn", &["keygen", "--out", path(&log_key)]);
    assert_eq!(code, 0, "keygen: {stderr}");
    (data, log_key)
}

/// A `sworn serve` process and its stderr lines.
struct Server {
    child: KillOnDrop,
    stderr: Receiver<String>,
}

/// How a start ended: serving at an address, or exited with a code and what it said.
enum Start {
    Serving(Server, String),
    Exited(i32, Vec<String>),
}

fn start(data: &Path, flags: &[String]) -> Start {
    let mut child = Command::new(workspace_binary("sworn"))
        .args(["serve", "--model", path(&model()), "--model-id", MODEL_ID])
        .args(["--listen", "127.0.0.1:0", "--insecure-no-auth"])
        .args(["--data-dir", path(data), "--origin", ORIGIN])
        .args(["--seal-interval-ms", "200"])
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sworn serve");
    let stderr = lines_of(child.stderr.take().expect("piped stderr"));
    let mut server = Server {
        child: KillOnDrop(child),
        stderr,
    };
    let prefix = format!("sworn: serving {MODEL_ID} at http://");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut said = Vec::new();
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("sworn serve neither served nor exited: {said:#?}"));
        match server.stderr.recv_timeout(left) {
            Ok(line) => {
                if let Some(addr) = line.strip_prefix(prefix.as_str()) {
                    let addr = addr.to_string();
                    return Start::Serving(server, addr);
                }
                said.push(line);
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = server.child.0.wait().expect("wait");
                return Start::Exited(status.code().unwrap_or(-1), said);
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("sworn serve neither served nor exited: {said:#?}")
            }
        }
    }
}

fn serving(data: &Path, flags: &[String]) -> (Server, String) {
    match start(data, flags) {
        Start::Serving(server, addr) => (server, addr),
        Start::Exited(code, said) => panic!("sworn serve exited {code}: {said:#?}"),
    }
}

/// A start that must be refused: what the server said.
fn refused(data: &Path, flags: &[String]) -> String {
    match start(data, flags) {
        Start::Serving(_, addr) => panic!("sworn serve served at {addr}; it must refuse"),
        Start::Exited(code, said) => {
            assert_ne!(code, 0, "a refused start must exit non-zero: {said:#?}");
            said.join("\n")
        }
    }
}

/// SIGTERM, then the exit code once stderr has closed.
fn stop(mut server: Server) {
    let pid = server.child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("run kill").success());
    while server.stderr.recv_timeout(Duration::from_secs(60)).is_ok() {}
    let status = server.child.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "sworn serve did not stop cleanly");
}

/// One request on its own connection: the status and the body as JSON.
fn call(addr: &str, method: &str, route: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {route} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("response");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A sworn answer: the whole completion response (its `sworn` field is the receipt).
fn ask(addr: &str, question: &str, index: u64) -> Value {
    let request = json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 4,
        "temperature": 0,
    });
    let (status, answer) = call(addr, "POST", "/v1/chat/completions", Some(&request));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["sworn"]["index"].as_u64(), Some(index), "{answer}");
    answer
}

fn metric(addr: &str, name: &str) -> u64 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("response");
    raw.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics: {raw}"))
}

/// Waits until an anchor covering `size` entries is final on chain.
fn wait_anchored(addr: &str, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric(addr, "sworn:anchor_finalized_tree_size") < size {
        assert!(
            Instant::now() < deadline,
            "no final anchor of size {size} within 2 minutes"
        );
        // Paced at a fraction of a block (blocks come every second).
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The verifier key string of a key file.
fn vkey(key_file: &Path) -> String {
    LogKey::load(key_file)
        .expect("load key")
        .pinned(ORIGIN)
        .expect("pin")
        .to_vkey()
}

/// Writes `value` to `dir/name` and returns its path as a string.
fn write_json(dir: &Path, name: &str, value: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, value.to_string()).expect("write");
    path(&p).to_string()
}

/// `sworn-verify receipt FILE` with `args`: exit code and the JSON report.
fn verify_receipt(file: &str, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["receipt", file, "--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run("sworn-verify", &all);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stdout}\n{stderr}"));
    (code, report)
}

/// The status of `layer` in a report.
fn layer<'a>(report: &'a Value, name: &str) -> &'a str {
    report["layers"]
        .as_array()
        .and_then(|layers| layers.iter().find(|l| l["layer"] == name))
        .and_then(|l| l["status"].as_str())
        .unwrap_or_else(|| panic!("no {name} layer in {report:#}"))
}

/// The receipt section of `receipt` with its body signed again by `key`.
fn resigned(receipt: &Value, key: &LogKey) -> Value {
    let mut forged = receipt.clone();
    let body = receipt["body"].as_str().expect("body");
    forged["signature"] = json!(BASE64.encode(key.sign(body.as_bytes()).to_bytes()));
    forged
}

#[test]
fn a_rotated_log_verifies_across_the_rotation_and_refuses_the_retired_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, old_key) = new_data_dir(dir.path());
    let chain = Chain::deploy(dir.path(), &old_key);
    let anchored = chain.flags();

    // Two answers under the first key; the server stops (not waiting for any anchor).
    let (server, addr) = serving(&data, &anchored);
    let first = ask(&addr, "What is 2+2?", 0);
    ask(&addr, "Name a colour.", 1);
    stop(server);

    let new_key = dir.path().join("new.key");
    let (code, _, stderr) = run("sworn", &["keygen", "--out", path(&new_key)]);
    assert_eq!(code, 0, "keygen: {stderr}");

    // A rotation whose transaction the chain refuses (sent from an account that is not
    // the log's admin): begun in the store, not on chain. The log does not serve.
    let not_admin = secret_file(dir.path(), "not-admin.key", DEV_KEY_1);
    let (code, _, stderr) = chain.rotate(&data, &new_key, &["--admin-key", path(&not_admin)]);
    assert_ne!(code, 0, "a rotateKey from a non-admin must fail");
    assert!(stderr.contains("NotLogAdmin"), "{stderr}");
    for flags in [anchored.clone(), {
        let mut f = anchored.clone();
        f.extend(["--log-key".to_string(), path(&new_key).to_string()]);
        f
    }] {
        let said = refused(&data, &flags);
        assert!(
            said.contains("was begun and not completed"),
            "a pending rotation must keep the log from serving: {said}"
        );
    }
    // Aborted (the chain does not hold it), then done properly.
    let (code, stdout, stderr) = chain.rotate(&data, &new_key, &["--abort"]);
    assert_eq!(code, 0, "abort: {stdout}\n{stderr}");
    let (code, stdout, stderr) = chain.rotate(&data, &new_key, &[]);
    assert_eq!(code, 0, "rotate: {stdout}\n{stderr}");
    assert!(stdout.contains("from tree size 2"), "{stdout}");
    let history_json = stdout
        .lines()
        .last()
        .expect("the key history is the last line");
    let history: Value = serde_json::from_str(history_json).expect("key history JSON");
    assert_eq!(
        history["keys"][0]["vkey"],
        json!(vkey(&old_key)),
        "{history}"
    );
    assert_eq!(
        history["keys"][1]["vkey"],
        json!(vkey(&new_key)),
        "{history}"
    );
    assert_eq!(history["keys"][1]["from_size"], 2, "{history}");
    let history_file = write_json(dir.path(), "history.json", &history);
    // Running it again changes nothing: the new key is the current one.
    let (code, _, stderr) = chain.rotate(&data, &new_key, &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("was retired"), "{stderr}");

    // The retired key no longer starts the log.
    let said = refused(&data, &anchored);
    assert!(said.contains("was retired"), "{said}");

    // The new key does; two answers under it, anchored and final.
    let mut new_flags = anchored;
    new_flags.extend(["--log-key".to_string(), path(&new_key).to_string()]);
    let (server, addr) = serving(&data, &new_flags);
    let (status, key) = call(&addr, "GET", "/v1/audit/key", None);
    assert_eq!(status, 200);
    assert_eq!(key["vkey"], json!(vkey(&new_key)), "{key}");
    let third = ask(&addr, "Name a fruit.", 2);
    ask(&addr, "Name a tree.", 3);
    wait_anchored(&addr, 4);

    let bundle = |answer: &Value| {
        // The request id the receipt body records (the `x-request-id` header's).
        let body: Value =
            serde_json::from_str(answer["sworn"]["body"].as_str().expect("body")).expect("body");
        let id = body["request_id"].as_str().expect("request id");
        let (status, bundle) = call(&addr, "GET", &format!("/v1/audit/receipts/{id}"), None);
        assert_eq!(status, 200, "{bundle}");
        bundle
    };
    let old_bundle = write_json(dir.path(), "old.bundle.json", &bundle(&first));
    let new_bundle_value = bundle(&third);
    let new_bundle = write_json(dir.path(), "new.bundle.json", &new_bundle_value);

    // Old and new receipts, with the key history: offline, and with every chain layer.
    for file in [&old_bundle, &new_bundle] {
        let (code, report) = verify_receipt(file, &["--key", &history_file]);
        assert_eq!(code, 0, "{report:#}");
        let mut args = vec!["--key", history_file.as_str()];
        args.extend(chain.verify_flags());
        let (code, report) = verify_receipt(file, &args);
        assert_eq!(code, 0, "{report:#}");
        assert_eq!(layer(&report, "anchor"), "ok", "{report:#}");
        assert_eq!(layer(&report, "finality"), "ok", "{report:#}");
        // With the keys taken from the contract instead.
        let mut args = vec!["--from-chain", "--origin", ORIGIN];
        args.extend(chain.verify_flags());
        let (code, report) = verify_receipt(file, &args);
        assert_eq!(code, 0, "{report:#}");
    }
    // The old receipt in the answer its client kept verifies under the old key alone.
    let kept = write_json(dir.path(), "first.answer.json", &first);
    let old_vkey = vkey(&old_key);
    let (code, report) = verify_receipt(&kept, &["--key", &old_vkey]);
    assert_eq!(code, 0, "{report:#}");

    // The old key signs entry 2 (past the rotation at size 2): refused under the history
    // and under the chain's keys, though it is a valid signature by the old key.
    let old = LogKey::load(&old_key).expect("old key");
    let forged = resigned(&new_bundle_value["receipt"], &old);
    let forged_file = write_json(dir.path(), "forged.receipt.json", &forged);
    let (code, report) = verify_receipt(&forged_file, &["--key", &old_vkey]);
    assert_eq!(code, 0, "control: the forgery is the old key's: {report:#}");
    let (code, report) = verify_receipt(&forged_file, &["--key", &history_file]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(layer(&report, "signature"), "failed", "{report:#}");
    let mut forged_bundle = new_bundle_value.clone();
    forged_bundle["receipt"] = forged;
    let forged_bundle = write_json(dir.path(), "forged.bundle.json", &forged_bundle);
    let mut args = vec!["--from-chain", "--origin", ORIGIN];
    args.extend(chain.verify_flags());
    let (code, report) = verify_receipt(&forged_bundle, &args);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(layer(&report, "signature"), "failed", "{report:#}");
    // And a checkpoint past the rotation signed by the old key (the real root at size 4).
    let root = new_bundle_value["checkpoint"]["root_hash"]
        .as_str()
        .expect("root");
    let root = Hash::from_hex(root).expect("hex root");
    let note = SignedCheckpoint::sign(Checkpoint::new(ORIGIN, 4, root), &old)
        .expect("sign")
        .note;
    let note_file = dir.path().join("forged.checkpoint");
    std::fs::write(&note_file, &note).expect("write");
    let state = dir.path().join("verify-state");
    let (code, stdout, _) = run(
        "sworn-verify",
        &[
            "checkpoint",
            path(&note_file),
            "--key",
            &history_file,
            "--state-dir",
            path(&state),
            "--json",
        ],
    );
    assert_eq!(code, 1, "{stdout}");
    let report: Value = serde_json::from_str(&stdout).expect("report");
    assert_eq!(layer(&report, "checkpoint"), "failed", "{report:#}");
    let (code, stdout, _) = run(
        "sworn-verify",
        &[
            "checkpoint",
            path(&note_file),
            "--key",
            &old_vkey,
            "--state-dir",
            path(&dir.path().join("verify-state-2")),
            "--json",
        ],
    );
    assert_eq!(code, 0, "control: the note is the old key's: {stdout}");

    // The whole log, across the rotation, against the chain.
    let server_url = format!("http://{addr}");
    let mut args = vec![
        "audit",
        "--json",
        "--server",
        server_url.as_str(),
        "--key",
        history_file.as_str(),
    ];
    args.extend(chain.verify_flags());
    let (code, stdout, stderr) = run("sworn-verify", &args);
    assert_eq!(code, 0, "audit: {stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("audit JSON");
    let summary = &report["summary"];
    assert_eq!(summary["entries"], 4, "{report:#}");
    assert!(summary["anchors"].as_u64() >= Some(2), "{report:#}");
    assert_eq!(
        summary["anchors_reproduced"], summary["anchors"],
        "{report:#}"
    );
    // Pinning the old key alone, the entries and checkpoints after the rotation fail.
    args[5] = old_vkey.as_str();
    let (code, stdout, _) = run("sworn-verify", &args);
    assert_eq!(code, 1, "{stdout}");
    stop(server);
}

#[test]
fn a_store_that_does_not_know_the_chains_rotation_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, old_key) = new_data_dir(dir.path());
    let chain = Chain::deploy(dir.path(), &old_key);
    let anchored = chain.flags();
    let (server, addr) = serving(&data, &anchored);
    ask(&addr, "What is 2+2?", 0);
    stop(server);

    // A copy of the stopped log is rotated: the chain records the rotation, the original
    // directory does not (as a copy restored from before it would not).
    let copy = dir.path().join("copy");
    let (code, _, stderr) = run(
        "sworn",
        &[
            "backup",
            "--data-dir",
            path(&data),
            "--out",
            path(&copy),
            "--origin",
            ORIGIN,
        ],
    );
    assert_eq!(code, 0, "backup: {stderr}");
    let new_key = dir.path().join("new.key");
    let (code, _, stderr) = run("sworn", &["keygen", "--out", path(&new_key)]);
    assert_eq!(code, 0, "keygen: {stderr}");
    let (code, stdout, stderr) = chain.rotate(&copy, &new_key, &[]);
    assert_eq!(code, 0, "rotate: {stdout}\n{stderr}");

    // The original holds every anchored entry, so the history check alone refuses it.
    let said = refused(&data, &anchored);
    for part in [
        "refusing to start",
        "key history disagrees with the chain's",
        "that this store does not",
        &hex_public_key(&new_key),
    ] {
        assert!(said.contains(part), "{part:?} missing from: {said}");
    }
    // Nor does the new key start it: the store never rotated to it.
    let mut with_new = anchored;
    with_new.extend(["--log-key".to_string(), path(&new_key).to_string()]);
    let said = refused(&data, &with_new);
    assert!(said.contains("identity mismatch"), "{said}");
    // The rotated copy serves with the new key.
    let (server, _) = serving(&copy, &with_new);
    stop(server);
}

fn hex_public_key(key_file: &Path) -> String {
    let key = LogKey::load(key_file).expect("load key");
    key.public_key_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
