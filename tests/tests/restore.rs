//! Backup and restore of a data directory, against a real anvil, a real sled store on
//! disk and real HTTP: `sworn backup` of a stopped server; a restore of an older backup,
//! whose log the chain has already anchored past, refused at start (and a log that was
//! grown on a stale copy with `--no-anchor`, refused at the next anchored start); the
//! newest backup restored, audited against the chain with `sworn-verify`, and continued.
//! And a server whose chain cannot be reached at start does not serve until it can.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sworn_e2e::{
    Anvil, DEV_KEY_0, KillOnDrop, lines_of, repo_root, secret_file, wait_for_line, workspace_binary,
};

const ORIGIN: &str = "sworn.e2e/restore";
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
    fn deploy(anvil: Anvil, dir: &Path, log_key: &Path) -> Chain {
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
}

/// A data directory with its log key inside (the default place), as a backup carries it.
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

fn spawn_serve(data: &Path, flags: &[String]) -> Server {
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
    Server {
        child: KillOnDrop(child),
        stderr,
    }
}

/// How a start ended: serving at an address, or exited with a code and what it said.
enum Start {
    Serving(Server, String),
    Exited(i32, Vec<String>),
}

fn start(data: &Path, flags: &[String]) -> Start {
    let mut server = spawn_serve(data, flags);
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

fn refused(data: &Path, flags: &[String]) -> String {
    match start(data, flags) {
        Start::Serving(_, addr) => {
            panic!("sworn serve served at {addr}: the restore was not refused")
        }
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
    let chain = Chain::deploy(anvil, dir.path(), &log_key);
    let anchored = chain.flags();

    // Two answers, anchored and final; the backup refuses a running server.
    let (server, addr) = serving(&data, &anchored);
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
    let (server, addr) = serving(&data, &anchored);
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
    let (server, addr) = serving(&data, &["--no-anchor".to_string()]);
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
    let (server, addr) = serving(&data, &anchored);
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
    let chain = Chain::deploy(Anvil::start(&[]), dir.path(), &log_key);
    // The server is pointed at a port where nothing listens yet: the chain is "down".
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let rpc = format!("http://127.0.0.1:{port}");
    let mut flags = chain.flags();
    flags[1] = rpc;
    let server = spawn_serve(&data, &flags);
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
