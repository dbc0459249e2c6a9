//! Backup and restore of a data directory, against a real anvil, a real sled store on
//! disk and real HTTP: `sworn backup` of a stopped server; a restore of an older backup,
//! whose log the chain has already anchored past, refused at start (and a log that was
//! grown on a stale copy with `--no-anchor`, refused at the next anchored start); the
//! newest backup restored, audited against the chain with `sworn-verify`, and continued.
//! And a server whose chain cannot be reached at start does not serve until it can.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use sworn_e2e::serve::{
    Chain, Start, call, metric, new_data_dir, serving, spawn_serve, start, stop, wait_anchored,
};
use sworn_e2e::{Anvil, MODEL_ID, path, run, wait_for_line};

const ORIGIN: &str = "sworn.e2e/restore";

/// A start that must be refused: what the server said.
fn refused(data: &Path, flags: &[String]) -> String {
    match start(data, ORIGIN, flags) {
        Start::Serving(_, addr) => {
            panic!("sworn serve served at {addr}: the restore was not refused")
        }
        Start::Exited(code, said) => {
            assert_ne!(code, 0, "a refused start must exit non-zero: {said:#?}");
            said.join("\n")
        }
    }
}

/// A sworn answer; returns its index in the log.
fn ask(addr: &str, question: &str) -> u64 {
    let request = json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 4,
        "temperature": 0,
    });
    let (status, answer) = call(addr, "POST", "/v1/chat/completions", Some(&request));
    assert_eq!(status, 200, "{answer}");
    answer["sworn"]["index"].as_u64().expect("a sworn index")
}

/// `sworn backup`: exit code, stdout, stderr.
fn backup(from: &Path, to: &Path) -> (i32, String, String) {
    run(
        "sworn",
        &[
            "backup",
            "--data-dir",
            path(from),
            "--out",
            path(to),
            "--origin",
            ORIGIN,
        ],
    )
}

/// `sworn-verify audit` of the whole log against the chain.
fn audit(addr: &str, chain: &Chain) -> Value {
    let (status, key) = call(addr, "GET", "/v1/audit/key", None);
    assert_eq!(status, 200, "{key}");
    let server = format!("http://{addr}");
    let (code, stdout, stderr) = run(
        "sworn-verify",
        &[
            "audit",
            "--json",
            "--server",
            &server,
            "--key",
            key["vkey"].as_str().expect("vkey"),
            "--rpc",
            &chain.anvil.url,
            "--contract",
            &chain.contract,
        ],
    );
    assert_eq!(code, 0, "sworn-verify audit: {stdout}\n{stderr}");
    serde_json::from_str(&stdout).expect("the audit report is JSON")
}

#[test]
fn a_stale_restore_is_refused_at_start_and_the_newest_backup_continues_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, log_key) = new_data_dir(dir.path());
    // One slot per epoch: a block is final two blocks later; blocks every second.
    let anvil = Anvil::start(&["--slots-in-an-epoch", "1", "--block-time", "1"]);
    let chain = Chain::deploy(anvil, dir.path(), ORIGIN, &log_key);
    let anchored = chain.flags();

    // Two answers, anchored and final; the backup refuses a running server.
    let (server, addr) = serving(&data, ORIGIN, &anchored);
    assert_eq!(ask(&addr, "What is 2+2?"), 0);
    assert_eq!(ask(&addr, "Name a colour."), 1);
    wait_anchored(&addr, 2);
    let while_running = dir.path().join("while-running");
    let (code, _, stderr) = backup(&data, &while_running);
    assert_ne!(code, 0, "a backup of a running server must be refused");
    assert!(stderr.contains("is in use"), "{stderr}");
    assert!(!while_running.exists());
    stop(server);
    let old = dir.path().join("backup-old");
    let (code, stdout, stderr) = backup(&data, &old);
    assert_eq!(code, 0, "backup: {stderr}");
    assert!(stdout.contains(", 2 entries, "), "{stdout}");

    // Two more, anchored; the newest backup.
    let (server, addr) = serving(&data, ORIGIN, &anchored);
    assert_eq!(ask(&addr, "Name a fruit."), 2);
    assert_eq!(ask(&addr, "Name a tree."), 3);
    wait_anchored(&addr, 4);
    let seq = metric(&addr, "sworn:anchor_finalized_seq");
    let (status, checkpoint) = call(&addr, "GET", "/v1/audit/checkpoint", None);
    assert_eq!(status, 200, "{checkpoint}");
    let anchored_root = checkpoint["root_hash"].as_str().expect("root").to_string();
    stop(server);
    let newest = dir.path().join("backup-new");
    let (code, stdout, stderr) = backup(&data, &newest);
    assert_eq!(code, 0, "backup: {stderr}");
    assert!(stdout.contains(", 4 entries, "), "{stdout}");

    // The older backup, restored: the chain anchors 4 entries, the copy holds 2.
    std::fs::rename(&data, dir.path().join("data-before-restore")).expect("set aside");
    let (code, _, stderr) = backup(&old, &data);
    assert_eq!(code, 0, "restore: {stderr}");
    let said = refused(&data, &anchored);
    for part in [
        "refusing to start",
        "the chain already holds a later checkpoint of this log",
        &format!("on chain, seq {seq} anchors size 4 with root {anchored_root}"),
        "locally, the log holds 2 entries with root ",
        "What to do:",
        "restore into",
    ] {
        assert!(said.contains(part), "{part:?} missing from: {said}");
    }

    // Grown on the stale copy without a chain: at the anchored size, another root.
    let (server, addr) = serving(&data, ORIGIN, &["--no-anchor".to_string()]);
    assert_eq!(ask(&addr, "Name a river."), 2);
    assert_eq!(ask(&addr, "Name a hill."), 3);
    stop(server);
    let said = refused(&data, &anchored);
    for part in [
        "refusing to start",
        "another history than the anchored one",
        &format!("on chain, seq {seq} anchors size 4 with root {anchored_root}"),
        "locally, the first 4 of 4 entries hash to root ",
        "What to do:",
    ] {
        assert!(said.contains(part), "{part:?} missing from: {said}");
    }

    // The newest backup, restored: it verifies against the chain and continues the log.
    std::fs::rename(&data, dir.path().join("data-forked")).expect("set aside");
    let (code, _, stderr) = backup(&newest, &data);
    assert_eq!(code, 0, "restore: {stderr}");
    let (server, addr) = serving(&data, ORIGIN, &anchored);
    let report = audit(&addr, &chain);
    assert_eq!(report["summary"]["entries"], 4, "{report:#}");
    assert_eq!(ask(&addr, "Name a bird."), 4);
    wait_anchored(&addr, 5);
    let report = audit(&addr, &chain);
    // Every anchor on chain, from before the backup and after the restore, reproduced
    // from the one log and final.
    let summary = &report["summary"];
    assert_eq!(summary["entries"], 5, "{report:#}");
    assert!(summary["anchors"].as_u64() >= Some(3), "{report:#}");
    assert_eq!(
        summary["anchors_reproduced"], summary["anchors"],
        "{report:#}"
    );
    assert_eq!(summary["anchors_final"], summary["anchors"], "{report:#}");
    stop(server);
}

/// From now on, forwards every connection to `listener` to `upstream` (`host:port`): a
/// chain endpoint that comes up.
fn forward(listener: TcpListener, upstream: String) {
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            for (mut from, mut to) in [
                (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                ),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        }
    });
}

#[test]
fn a_server_whose_chain_cannot_be_reached_does_not_serve_until_it_can() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, log_key) = new_data_dir(dir.path());
    let chain = Chain::deploy(Anvil::start(&[]), dir.path(), ORIGIN, &log_key);
    // The server is pointed at a port where nothing listens yet: the chain is "down".
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let rpc = format!("http://127.0.0.1:{port}");
    let mut flags = chain.flags();
    flags[1] = rpc;
    let server = spawn_serve(&data, ORIGIN, &flags);
    // The log line may be coloured: take the address's own characters after `http://`.
    let addr = wait_for_line(&server.stderr, Duration::from_secs(60), |line| {
        if !line.contains("listening; answering 503") {
            return None;
        }
        let at = line.find("http://")? + "http://".len();
        let end = line[at..].find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))?;
        Some(line[at..at + end].to_string())
    })
    .expect("the listener's address");
    wait_for_line(&server.stderr, Duration::from_secs(60), |line| {
        line.contains("not serving until it answers").then_some(())
    })
    .expect("a warning that the chain cannot be reached");
    let (status, body) = call(&addr, "GET", "/health", None);
    assert_eq!(status, 503, "{body}");

    // The chain comes up at that address: the log is compared with it and served.
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("the chain's port");
    let upstream = chain.anvil.url.trim_start_matches("http://").to_string();
    forward(listener, upstream);
    wait_for_line(&server.stderr, Duration::from_secs(120), |line| {
        line.starts_with("sworn: serving ").then_some(())
    })
    .expect("the server serves once the chain answers");
    let (status, body) = call(&addr, "GET", "/health", None);
    assert_eq!(status, 200, "{body}");
}
