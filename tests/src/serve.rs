//! One `sworn serve` on one data directory, anchored to a real chain: the chain set up
//! with `sworn chain deploy` and `sworn chain register`, a fresh data directory, the server
//! started (serving, or exited with what it said) and stopped, and plain HTTP to it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{
    Anvil, DEV_KEY_0, KillOnDrop, MODEL_ID, lines_of, model, path, run, secret_file,
    workspace_binary,
};

/// A chain with SwornAnchor deployed and one log registered.
#[derive(Debug)]
pub struct Chain {
    /// The anvil it runs on.
    pub anvil: Anvil,
    /// The SwornAnchor contract's address.
    pub contract: String,
    /// The key file of the account that deployed, registered and anchors (development
    /// account 0).
    pub chain_key: PathBuf,
}

impl Chain {
    /// Deploys SwornAnchor on `anvil` and registers `origin` under `log_key`, with
    /// development account 0's key written to `dir/chain.key`.
    pub fn deploy(anvil: Anvil, dir: &Path, origin: &str, log_key: &Path) -> Chain {
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
                origin,
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
    pub fn flags(&self) -> Vec<String> {
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
    pub fn verify_flags(&self) -> [&str; 4] {
        ["--rpc", &self.anvil.url, "--contract", &self.contract]
    }
}

/// A data directory `dir/data` with its log key inside (the default place, so a backup
/// carries it): the directory and the key file.
pub fn new_data_dir(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir(&data).expect("data dir");
    let log_key = data.join("log.key");
    let (code, _, stderr) = run("sworn", &["keygen", "--out", path(&log_key)]);
    assert_eq!(code, 0, "keygen: {stderr}");
    (data, log_key)
}

/// A `sworn serve` process and its stderr lines.
#[derive(Debug)]
pub struct Server {
    /// The process.
    pub child: KillOnDrop,
    /// Its stderr, line by line.
    pub stderr: Receiver<String>,
}

/// Spawns `sworn serve` of [`MODEL_ID`] on `data` as `origin`, on a port the OS picks,
/// without auth, sealing every 200 ms, with `flags` added; does not wait for it.
pub fn spawn_serve(data: &Path, origin: &str, flags: &[String]) -> Server {
    let mut child = Command::new(workspace_binary("sworn"))
        .args(["serve", "--model", path(&model()), "--model-id", MODEL_ID])
        .args(["--listen", "127.0.0.1:0", "--insecure-no-auth"])
        .args(["--data-dir", path(data), "--origin", origin])
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
#[derive(Debug)]
pub enum Start {
    /// It serves at this address (`host:port`).
    Serving(Server, String),
    /// It exited with this code, having said these lines.
    Exited(i32, Vec<String>),
}

/// Starts `sworn serve` (as [`spawn_serve`]) and waits up to 5 minutes for it to serve or
/// exit.
pub fn start(data: &Path, origin: &str, flags: &[String]) -> Start {
    let mut server = spawn_serve(data, origin, flags);
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

/// A start that must serve: the server and its address.
pub fn serving(data: &Path, origin: &str, flags: &[String]) -> (Server, String) {
    match start(data, origin, flags) {
        Start::Serving(server, addr) => (server, addr),
        Start::Exited(code, said) => panic!("sworn serve exited {code}: {said:#?}"),
    }
}

/// SIGTERM, then the exit code once stderr has closed: it must be 0.
pub fn stop(mut server: Server) {
    let pid = server.child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(killed.expect("run kill").success());
    while server.stderr.recv_timeout(Duration::from_secs(60)).is_ok() {}
    let status = server.child.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "sworn serve did not stop cleanly");
}

/// One request on its own connection: the status and the body as JSON.
pub fn call(addr: &str, method: &str, route: &str, body: Option<&Value>) -> (u16, Value) {
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

/// The integer value of the metric `name` in `/metrics`.
pub fn metric(addr: &str, name: &str) -> u64 {
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
pub fn wait_anchored(addr: &str, size: u64) {
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
