//! Log-key rotation, end to end, against a real anvil, a real sled store on disk, real
//! `sworn serve` and `sworn-verify`: `sworn log-key rotate` records the rotation on the
//! contract and in the store; the retired key no longer starts the log; old receipts verify
//! under the old key and new ones under the new key (offline with the key history, and
//! with the keys taken from the chain); a receipt or checkpoint the old key signs past the
//! rotation point is refused; the audit passes across the rotation. And the failure paths:
//! a rotation begun but not recorded on chain keeps the log from serving until it is
//! finished or aborted, and a store that does not know a rotation the chain holds is
//! refused at start.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sworn_e2e::serve::{Chain, Start, call, new_data_dir, serving, start, stop, wait_anchored};
use sworn_e2e::{Anvil, DEV_KEY_1, MODEL_ID, path, run, secret_file};
use sworn_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use sworn_ledger::keys::LogKey;
use sworn_ledger::merkle::Hash;

const ORIGIN: &str = "sworn.e2e/key-rotation";

/// A chain with SwornAnchor deployed and this test's log registered under `log_key`.
fn deploy(dir: &Path, log_key: &Path) -> Chain {
    // One slot per epoch: a block is final two blocks later; blocks every second.
    let anvil = Anvil::start(&["--slots-in-an-epoch", "1", "--block-time", "1"]);
    Chain::deploy(anvil, dir, ORIGIN, log_key)
}

/// `sworn log-key rotate` of the store in `data` to `new_key` (plus `extra` flags).
fn rotate(chain: &Chain, data: &Path, new_key: &Path, extra: &[&str]) -> (i32, String, String) {
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
        &chain.anvil.url,
        "--contract",
        &chain.contract,
        "--chain-key",
        path(&chain.chain_key),
        "--timeout-s",
        "120",
    ];
    args.extend_from_slice(extra);
    run("sworn", &args)
}

/// A start that must be refused: what the server said.
fn refused(data: &Path, flags: &[String]) -> String {
    match start(data, ORIGIN, flags) {
        Start::Serving(_, addr) => panic!("sworn serve served at {addr}; it must refuse"),
        Start::Exited(code, said) => {
            assert_ne!(code, 0, "a refused start must exit non-zero: {said:#?}");
            said.join("\n")
        }
    }
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
    let chain = deploy(dir.path(), &old_key);
    let anchored = chain.flags();

    // Two answers under the first key; the server stops (not waiting for any anchor).
    let (server, addr) = serving(&data, ORIGIN, &anchored);
    let first = ask(&addr, "What is 2+2?", 0);
    ask(&addr, "Name a colour.", 1);
    stop(server);

    let new_key = dir.path().join("new.key");
    let (code, _, stderr) = run("sworn", &["keygen", "--out", path(&new_key)]);
    assert_eq!(code, 0, "keygen: {stderr}");

    // A rotation whose transaction the chain refuses (sent from an account that is not
    // the log's admin): begun in the store, not on chain. The log does not serve.
    let not_admin = secret_file(dir.path(), "not-admin.key", DEV_KEY_1);
    let (code, _, stderr) = rotate(&chain, &data, &new_key, &["--admin-key", path(&not_admin)]);
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
    let (code, stdout, stderr) = rotate(&chain, &data, &new_key, &["--abort"]);
    assert_eq!(code, 0, "abort: {stdout}\n{stderr}");
    let (code, stdout, stderr) = rotate(&chain, &data, &new_key, &[]);
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
    let (code, _, stderr) = rotate(&chain, &data, &new_key, &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("was retired"), "{stderr}");

    // The retired key no longer starts the log.
    let said = refused(&data, &anchored);
    assert!(said.contains("was retired"), "{said}");

    // The new key does; two answers under it, anchored and final.
    let mut new_flags = anchored;
    new_flags.extend(["--log-key".to_string(), path(&new_key).to_string()]);
    let (server, addr) = serving(&data, ORIGIN, &new_flags);
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
    let chain = deploy(dir.path(), &old_key);
    let anchored = chain.flags();
    let (server, addr) = serving(&data, ORIGIN, &anchored);
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
    let (code, stdout, stderr) = rotate(&chain, &copy, &new_key, &[]);
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
    let (server, _) = serving(&copy, ORIGIN, &with_new);
    stop(server);
}

fn hex_public_key(key_file: &Path) -> String {
    let key = LogKey::load(key_file).expect("load key");
    key.public_key_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
