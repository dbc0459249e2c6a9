//! Many instances behind a real load balancer: three `sworn serve` processes (each its own
//! data directory, origin, log key and chain account) behind HAProxy (the Debian package;
//! its health checks on `/ready`), one anvil chain with one SwornAnchor on which all three
//! logs are registered. The official `openai` Python SDK (tests/sdk/load.py) loads them
//! through the balancer, several clients at once, non-streamed and streamed.
//!
//! Then: every log is anchored and passes `sworn-verify audit` against the chain; the union
//! of the three logs' receipts is exactly the set of answers the clients received (byte for
//! byte), apart from answers sworn by an instance that was killed before it could deliver
//! them, which are accounted for one by one. One instance is SIGKILLed mid-load: the
//! balancer marks it down and routes around it, the clients retry what it cut (counted), no
//! answer a client received is missing from its log when it is restarted on the same data
//! directory, its log verifies, and it takes traffic again.
//!
//! It also prints the throughput through the balancer against one instance directly, both
//! measured in this run: a figure, never an assertion (two cores, three engines).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;
use sworn_e2e::{
    Anvil, DEV_KEY_0, KillOnDrop, MODEL_ID, lines_of, model, path, repo_root, run, secret_file,
    wait_for_line, workspace_binary,
};

const ORIGIN_PREFIX: &str = "sworn.e2e/multi";
/// Small answers: the point is the plumbing, not the text.
const MAX_TOKENS: &str = "16";
/// The instance SIGKILLed mid-load (its HAProxy server name is `s1`).
const VICTIM: usize = 1;
/// The kill comes once the clients hold this many answers of the kill phase.
const KILL_AFTER_ANSWERS: u64 = 10;

/// Anvil's development accounts 1 to 3 (published keys, local chains only) and their
/// addresses: one submitter per instance, as docs/DEPLOY.md recommends (an account shared
/// by several anchorers races for nonces). Account 0 deploys and registers.
const SUBMITTERS: [(&str, &str); 3] = [
    (
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    ),
    (
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    ),
    (
        "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
        "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    ),
];

/// The `haproxy` binary, or a failure that says how to get it.
fn haproxy() -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "haproxy is not installed, and this test runs three instances behind it: \
             install the Debian package (`apt-get install -y haproxy`, as .ci/run does on a \
             fresh machine), then run the test again"
        )
    })
}

/// A port free at the time of asking (the instance binds it itself; the balancer's
/// configuration names it, and a restarted instance takes it again).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = std::str::from_utf8(&raw[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .expect("a hex chunk size");
        raw = &raw[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// One GET on its own connection: the status and the body.
fn get(addr: &str, route: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        stream,
        "GET {route} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    let body = if head.contains("\r\ntransfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_vec()
    };
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, String::from_utf8(body).expect("a UTF-8 body"))
}

fn get_json(addr: &str, route: &str) -> Value {
    let (status, body) = get(addr, route);
    assert_eq!(status, 200, "GET {route} at {addr}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {route}: {e}: {body}"))
}

fn metric(addr: &str, name: &str) -> u64 {
    let (status, text) = get(addr, "/metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {name} in /metrics of {addr}"))
}

/// Polls `done` (paced; it reads state, it is not a delay standing in for one) until it
/// holds, or fails with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {}s",
            limit.as_secs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The chain: anvil, SwornAnchor, and the owner's key.
struct Chain {
    anvil: Anvil,
    contract: String,
    owner_key: PathBuf,
}

impl Chain {
    fn deploy(dir: &Path) -> Chain {
        // Blocks every second, final two blocks later: anchors become final within seconds.
        let anvil = Anvil::start(&["--slots-in-an-epoch", "1", "--block-time", "1"]);
        let owner_key = secret_file(dir, "owner.key", DEV_KEY_0);
        let (code, stdout, stderr) = run(
            "sworn",
            &[
                "chain",
                "deploy",
                "--rpc",
                &anvil.url,
                "--chain-key",
                path(&owner_key),
            ],
        );
        assert_eq!(code, 0, "deploy: {stderr}");
        Chain {
            anvil,
            contract: stdout.trim().to_string(),
            owner_key,
        }
    }

    /// Registers `origin` with `log_key`'s public half, anchored by `submitter`.
    fn register(&self, origin: &str, log_key: &Path, submitter: &str) {
        let (code, _, stderr) = run(
            "sworn",
            &[
                "chain",
                "register",
                "--rpc",
                &self.anvil.url,
                "--chain-key",
                path(&self.owner_key),
                "--contract",
                &self.contract,
                "--origin",
                origin,
                "--log-key",
                path(log_key),
                "--submitter",
                submitter,
            ],
        );
        assert_eq!(code, 0, "register {origin}: {stderr}");
    }
}

/// One instance: its own data directory, log key, origin, chain account and port.
struct Instance {
    name: String,
    origin: String,
    data: PathBuf,
    chain_key: PathBuf,
    port: u16,
    child: Option<KillOnDrop>,
    stderr: Option<Receiver<String>>,
}

impl Instance {
    fn new(dir: &Path, n: usize, chain: &Chain) -> Instance {
        let data = dir.join(format!("data-s{n}"));
        std::fs::create_dir(&data).expect("data dir");
        let log_key = data.join("log.key");
        let (code, _, stderr) = run("sworn", &["keygen", "--out", path(&log_key)]);
        assert_eq!(code, 0, "keygen: {stderr}");
        let origin = format!("{ORIGIN_PREFIX}/s{n}");
        let (key, address) = SUBMITTERS[n];
        chain.register(&origin, &log_key, address);
        Instance {
            name: format!("s{n}"),
            origin,
            data,
            chain_key: secret_file(dir, &format!("chain-s{n}.key"), key),
            port: free_port(),
            child: None,
            stderr: None,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts `sworn serve`; `serving` waits for it.
    fn spawn(&mut self, chain: &Chain) {
        let mut child = Command::new(workspace_binary("sworn"))
            .args(["serve", "--model", path(&model()), "--model-id", MODEL_ID])
            .args(["--listen", &self.addr(), "--insecure-no-auth"])
            .args(["--data-dir", path(&self.data), "--origin", &self.origin])
            .args(["--seal-interval-ms", "200", "--max-batch", "16"])
            .args(["--rpc", &chain.anvil.url, "--contract", &chain.contract])
            .args(["--chain-key", path(&self.chain_key)])
            // Three engines share this machine's cores: one compute thread each, as an
            // operator packing instances on one host sets it (docs/OPERATIONS.md). With
            // libtorch's default each spins for cores the others hold.
            .env("OMP_NUM_THREADS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sworn serve");
        self.stderr = Some(lines_of(child.stderr.take().expect("piped stderr")));
        self.child = Some(KillOnDrop(child));
    }

    /// Waits until the instance says it serves at its address.
    fn serving(&mut self) {
        let stderr = self.stderr.as_ref().expect("spawned");
        let expected = format!("sworn: serving {MODEL_ID} at http://{}", self.addr());
        let mut said = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_default();
            match stderr.recv_timeout(left) {
                Ok(line) if line == expected => return,
                Ok(line) => said.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{} did not serve within 3 minutes: {said:#?}", self.name)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{} exited before serving: {said:#?}", self.name)
                }
            }
        }
    }

    /// SIGKILL: no drain, no last seal, no goodbye.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.0.kill().expect("SIGKILL");
        let status = child.0.wait().expect("wait");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{status}"
        );
        self.stderr = None;
    }

    /// Waits until every entry of the log is in a final anchor on chain; returns the size.
    fn wait_anchored(&self) -> u64 {
        let addr = self.addr();
        let mut size = 0;
        wait_until(
            Duration::from_secs(90),
            &format!("{}'s whole log anchored and final", self.name),
            || {
                size = metric(&addr, "sworn:ledger_entries");
                size > 0 && metric(&addr, "sworn:anchor_finalized_tree_size") >= size
            },
        );
        size
    }

    /// `sworn-verify audit --json` of the whole log against the chain.
    fn audit(&self, chain: &Chain) -> Value {
        let key = get_json(&self.addr(), "/v1/audit/key");
        assert_eq!(key["origin"], self.origin.as_str(), "{key}");
        let server = format!("http://{}", self.addr());
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
        assert_eq!(
            code, 0,
            "sworn-verify audit of {}: {stdout}\n{stderr}",
            self.name
        );
        serde_json::from_str(&stdout).expect("the audit report is JSON")
    }

    /// The log's receipts from `/v1/audit/export`: request id → (index, body text).
    fn receipts(&self) -> BTreeMap<String, (u64, String)> {
        let (status, export) = get(&self.addr(), "/v1/audit/export");
        assert_eq!(status, 200, "{export}");
        let mut receipts = BTreeMap::new();
        for line in export.lines() {
            let line: Value = serde_json::from_str(line).expect("an export line");
            if line["type"] != "entry" {
                continue;
            }
            let text = line["body"].as_str().expect("a body").to_string();
            let body: Value = serde_json::from_str(&text).expect("a receipt body");
            assert_eq!(body["kind"], "receipt", "{text}");
            assert_eq!(body["log"], self.origin.as_str(), "{text}");
            let id = body["request_id"].as_str().expect("request_id").to_string();
            let index = line["index"].as_u64().expect("index");
            assert!(
                receipts.insert(id, (index, text)).is_none(),
                "a request id twice in {}",
                self.name
            );
        }
        receipts
    }
}

/// HAProxy in the foreground, from tests/haproxy/sworn.cfg.in.
struct Balancer {
    _child: KillOnDrop,
    frontend: String,
    stats: String,
}

impl Balancer {
    fn start(dir: &Path, instances: &[Instance]) -> Balancer {
        let binary = haproxy();
        let (frontend, stats) = (free_port(), free_port());
        let template = std::fs::read_to_string(repo_root().join("tests/haproxy/sworn.cfg.in"))
            .expect("tests/haproxy/sworn.cfg.in");
        let servers: Vec<String> = instances
            .iter()
            .map(|i| format!("    server {} {}", i.name, i.addr()))
            .collect();
        let config = template
            .replace("@FRONTEND_PORT@", &frontend.to_string())
            .replace("@STATS_PORT@", &stats.to_string())
            .replace("@SERVERS@", &servers.join("\n"));
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config).expect("write haproxy.cfg");
        let check = Command::new(&binary)
            .args(["-c", "-f", path(&file)])
            .output()
            .expect("run haproxy -c");
        assert!(
            check.status.success(),
            "haproxy -c: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(&binary)
            .args(["-db", "-f", path(&file)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let balancer = Balancer {
            _child: KillOnDrop(child),
            frontend: format!("127.0.0.1:{frontend}"),
            stats: format!("127.0.0.1:{stats}"),
        };
        wait_until(Duration::from_secs(10), "haproxy's stats answer", || {
            TcpStream::connect(&balancer.stats).is_ok()
        });
        balancer
    }

    /// The backend's servers from the stats CSV: name → column → value.
    fn servers(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let (status, csv) = get(&self.stats, "/stats;csv");
        assert_eq!(status, 200, "{csv}");
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .and_then(|h| h.strip_prefix("# "))
            .expect("a CSV header")
            .split(',')
            .collect();
        lines
            .map(|l| header.iter().copied().zip(l.split(',')).collect::<Vec<_>>())
            .filter(|row| {
                row.first() == Some(&("pxname", "sworn"))
                    && row.get(1).is_some_and(|(_, s)| s.starts_with('s'))
            })
            .map(|row| {
                let name = row[1].1.to_string();
                let columns = row
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                (name, columns)
            })
            .collect()
    }

    fn status(&self, server: &str) -> String {
        self.servers()
            .get(server)
            .and_then(|s| s.get("status").cloned())
            .unwrap_or_else(|| panic!("no server {server} in haproxy's stats"))
    }

    /// Waits until HAProxy's health check (`GET /ready`) has `server` in `status`.
    fn wait_status(&self, server: &str, status: &str) {
        wait_until(
            Duration::from_secs(30),
            &format!("haproxy sees {server} {status}"),
            || self.status(server) == status,
        );
    }
}

/// One run of tests/sdk/load.py.
struct Load {
    child: Child,
    stdout: Receiver<String>,
    out: PathBuf,
    phase: &'static str,
}

/// What a run of the load script returned.
struct Loaded {
    summary: Value,
    answers: Vec<Value>,
    failures: Vec<Value>,
}

impl Load {
    fn start(
        dir: &Path,
        phase: &'static str,
        base: &str,
        n: u64,
        clients: u64,
        mode: &str,
    ) -> Load {
        let python = repo_root().join("tests/sdk/.venv/bin/python");
        assert!(
            python.exists(),
            "{} missing: run `make setup`",
            python.display()
        );
        let out = dir.join(format!("load-{phase}.json"));
        let mut child = Command::new(python)
            .arg(repo_root().join("tests/sdk/load.py"))
            .arg(format!("http://{base}/v1"))
            .arg(path(&out))
            .args([n.to_string(), clients.to_string()])
            .args([mode, MAX_TOKENS, phase])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run tests/sdk/load.py");
        let stdout = lines_of(child.stdout.take().expect("piped stdout"));
        Load {
            child,
            stdout,
            out,
            phase,
        }
    }

    /// Waits until the clients hold `n` answers.
    fn wait_answered(&self, n: u64) {
        wait_for_line(&self.stdout, Duration::from_secs(120), |line| {
            let count: u64 = line.strip_prefix("answered ")?.parse().ok()?;
            (count >= n).then_some(())
        })
        .unwrap_or_else(|| panic!("{}: the clients never held {n} answers", self.phase));
    }

    fn finish(mut self) -> Loaded {
        let summary = wait_for_line(&self.stdout, Duration::from_secs(300), |line| {
            line.starts_with('{').then(|| line.to_string())
        });
        let status = self.child.wait().expect("wait for load.py");
        assert!(
            status.success(),
            "{}: load.py failed ({status})",
            self.phase
        );
        let summary: Value =
            serde_json::from_str(&summary.expect("a summary line")).expect("summary JSON");
        let file: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.out).expect("load output"))
                .expect("load output JSON");
        let list = |k: &str| file[k].as_array().cloned().expect("a list");
        let loaded = Loaded {
            answers: list("answers"),
            failures: list("failures"),
            summary,
        };
        // What the client holds is what it was sworn: checked against the bundle itself.
        for a in &loaded.answers {
            for check in [
                "leaf_hash_ok",
                "prompt_commitment_ok",
                "response_commitment_ok",
            ] {
                assert_eq!(a[check], true, "{}: {check}: {a}", self.phase);
            }
            assert_eq!(a["request_id"], a["receipt_request_id"], "{a}");
        }
        loaded
    }

    fn answers_per_s(loaded: &Loaded) -> (f64, f64) {
        let s = loaded.summary["seconds"].as_f64().expect("seconds");
        let tokens = loaded.summary["completion_tokens"]
            .as_f64()
            .expect("tokens");
        let answers = loaded.summary["answers"].as_f64().expect("answers");
        (answers / s, tokens / s)
    }
}

#[test]
fn three_instances_behind_haproxy_swear_every_answer_and_survive_a_kill() {
    let started = Instant::now();
    haproxy();
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = Chain::deploy(dir.path());
    let mut instances: Vec<Instance> = (0..3)
        .map(|n| Instance::new(dir.path(), n, &chain))
        .collect();
    for instance in &mut instances {
        instance.spawn(&chain);
    }
    for instance in &mut instances {
        instance.serving();
    }
    let balancer = Balancer::start(dir.path(), &instances);
    for instance in &instances {
        balancer.wait_status(&instance.name, "UP");
    }
    let front = balancer.frontend.clone();
    let origin_of: BTreeMap<String, String> = instances
        .iter()
        .map(|i| (i.name.clone(), i.origin.clone()))
        .collect();
    let mut received: Vec<Value> = Vec::new();
    let keep = |received: &mut Vec<Value>, phase: &str, loaded: &Loaded, through_balancer: bool| {
        assert_eq!(
            loaded.summary["answers"].as_u64(),
            Some(loaded.answers.len() as u64)
        );
        for a in &loaded.answers {
            if through_balancer {
                // The balancer names the instance that answered; the receipt names its log.
                let by = a["served_by"].as_str().unwrap_or("");
                assert_eq!(
                    origin_of.get(by).map(String::as_str),
                    a["log"].as_str(),
                    "{phase}: {a}"
                );
            }
            received.push(a.clone());
        }
    };

    // Warm-up through the balancer: several clients, streamed and not.
    let warm = Load::start(dir.path(), "warm", &front, 24, 6, "mixed").finish();
    assert_eq!(warm.failures.len(), 0, "{:?}", warm.failures);
    let served: BTreeSet<&str> = warm
        .answers
        .iter()
        .filter_map(|a| a["served_by"].as_str())
        .collect();
    assert_eq!(served.len(), 3, "every instance answers: {served:?}");
    keep(&mut received, "warm", &warm, true);

    // Throughput: the same load on one instance directly, then through the balancer.
    let one = Load::start(dir.path(), "direct", &instances[0].addr(), 48, 12, "plain").finish();
    assert_eq!(one.failures.len(), 0, "{:?}", one.failures);
    keep(&mut received, "direct", &one, false);
    let three = Load::start(dir.path(), "balanced", &front, 48, 12, "plain").finish();
    assert_eq!(three.failures.len(), 0, "{:?}", three.failures);
    keep(&mut received, "balanced", &three, true);

    // SIGKILL one instance while the clients load the balancer and it has answers in flight.
    let victim_addr = instances[VICTIM].addr();
    let victim_name = instances[VICTIM].name.clone();
    let entries_before = metric(&victim_addr, "sworn:ledger_entries");
    let load = Load::start(dir.path(), "kill", &front, 60, 6, "mixed");
    load.wait_answered(KILL_AFTER_ANSWERS);
    // Killed once it has sworn answers of this phase and has more in flight: both what
    // it acknowledged and what it cut are then exercised.
    wait_until(
        Duration::from_secs(120),
        "the victim swore answers of the kill phase and has more in flight",
        || {
            metric(&victim_addr, "sworn:ledger_entries") > entries_before
                && metric(&victim_addr, "sworn:num_requests_running") > 0
        },
    );
    instances[VICTIM].kill();
    let killed_at = Instant::now();
    balancer.wait_status(&victim_name, "DOWN");
    let marked_down = killed_at.elapsed();
    let killed = load.finish();
    assert_eq!(killed.answers.len(), 60);
    // Every retry was caused by the killed instance: the balancer names it, or (a
    // connection closed before any response header) names no one — never another instance.
    // The answers it had in flight were cut: at least one client retried.
    for f in &killed.failures {
        let unnamed = f["kind"] == "connection" && f["served_by"].is_null();
        assert!(unnamed || f["served_by"] == victim_name.as_str(), "{f}");
    }
    assert!(
        !killed.failures.is_empty(),
        "the victim had answers in flight when it was killed: some client must have retried"
    );
    let victim_origin = instances[VICTIM].origin.clone();
    let victim_acked: Vec<String> = received
        .iter()
        .chain(&killed.answers)
        .filter(|a| a["log"] == victim_origin.as_str())
        .map(|a| a["request_id"].as_str().expect("id").to_string())
        .collect();
    keep(&mut received, "kill", &killed, true);
    let servers = balancer.servers();
    let status = |s: &str| servers[s].get("status").cloned().unwrap_or_default();
    assert_eq!(
        [status("s0"), status("s1"), status("s2")],
        ["UP", "DOWN", "UP"],
        "haproxy routes around the killed instance only"
    );

    // Restarted on the same data directory (and port): HAProxy sees it ready again.
    instances[VICTIM].spawn(&chain);
    instances[VICTIM].serving();
    balancer.wait_status(&victim_name, "UP");
    let after_restart = metric(&victim_addr, "sworn:ledger_entries");
    assert!(
        after_restart > entries_before,
        "the victim swore answers before the kill"
    );
    let rejoin = Load::start(dir.path(), "rejoin", &front, 18, 6, "mixed").finish();
    assert_eq!(rejoin.failures.len(), 0, "{:?}", rejoin.failures);
    let victim_again = rejoin
        .answers
        .iter()
        .filter(|a| a["served_by"] == victim_name.as_str())
        .count();
    assert!(
        victim_again > 0,
        "the restarted instance takes traffic again"
    );
    keep(&mut received, "rejoin", &rejoin, true);

    // Every log anchored, final, and audited against the chain.
    let mut logs = BTreeMap::new();
    let mut anchors = Vec::new();
    for instance in &instances {
        let size = instance.wait_anchored();
        let report = instance.audit(&chain);
        let summary = &report["summary"];
        assert_eq!(summary["entries"], size, "{}: {report:#}", instance.name);
        assert!(summary["anchors"].as_u64() >= Some(1), "{report:#}");
        assert_eq!(
            summary["anchors_reproduced"], summary["anchors"],
            "{report:#}"
        );
        assert_eq!(summary["anchors_final"], summary["anchors"], "{report:#}");
        anchors.push(summary["anchors"].as_u64().unwrap_or(0));
        let receipts = instance.receipts();
        assert_eq!(receipts.len() as u64, size, "{}", instance.name);
        logs.insert(instance.origin.clone(), receipts);
    }

    // Every answer a client received is in its instance's log, at its index, byte for byte.
    let mut by_log: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in &received {
        let origin = a["log"].as_str().expect("log");
        let id = a["request_id"].as_str().expect("id");
        let (index, body) = logs
            .get(origin)
            .and_then(|l| l.get(id))
            .unwrap_or_else(|| panic!("an answer the client holds is missing from {origin}: {a}"));
        assert_eq!(Some(*index), a["index"].as_u64(), "{a}");
        assert_eq!(Some(body.as_str()), a["body"].as_str(), "{a}");
        assert!(
            by_log
                .entry(origin.to_string())
                .or_default()
                .insert(id.to_string()),
            "one request id, two answers: {a}"
        );
    }
    for id in &victim_acked {
        assert!(logs[&victim_origin].contains_key(id));
    }
    // And nothing else is in the logs, but what the killed instance swore and could not
    // deliver: a cut stream (whose id the client saw in the header) or a 502 (whose id it
    // never saw), one per failed attempt at most.
    let mut undelivered = 0;
    for (origin, receipts) in &logs {
        let delivered = by_log.get(origin).cloned().unwrap_or_default();
        for (id, (_, body)) in receipts {
            if delivered.contains(id) {
                continue;
            }
            assert_eq!(
                origin, &victim_origin,
                "{origin} swore {id}, which no client received"
            );
            let body: Value = serde_json::from_str(body).expect("body");
            let streamed = body["params"]["stream"] == true;
            // A cut stream whose headers the client saw names the id; a 502, or a
            // connection closed before any header, names none.
            let accounted = killed.failures.iter().any(|f| {
                let unnamed = f["kind"] == "connection" || f["kind"] == "http_502";
                (streamed && f["request_id"] == id.as_str()) || unnamed
            });
            assert!(
                accounted,
                "{id} in the killed log matches no failed attempt: {body}"
            );
            undelivered += 1;
        }
    }
    assert!(undelivered <= killed.failures.len());

    let (one_rps, one_tps) = Load::answers_per_s(&one);
    let (three_rps, three_tps) = Load::answers_per_s(&three);
    let total: usize = logs.values().map(BTreeMap::len).sum();
    eprintln!(
        "multi-instance: {} instances behind HAProxy, {} answers received ({} streamed), \
         {} receipts in the logs ({} sworn by the killed instance and never delivered), \
         anchors per log {:?}, {} audits passed",
        instances.len(),
        received.len(),
        received.iter().filter(|a| a["stream"] == true).count(),
        total,
        undelivered,
        anchors,
        instances.len()
    );
    eprintln!(
        "multi-instance: SIGKILL of {victim_name} mid-load: marked DOWN by haproxy after {} ms; \
         client retries {} {}; {} answers of {victim_name} received before and during the kill, \
         all in its log after the restart; its audit passed; {} answers from it after rejoining",
        marked_down.as_millis(),
        killed.failures.len(),
        killed.summary["retries_by_kind"],
        victim_acked.len(),
        victim_again
    );
    eprintln!(
        "multi-instance: throughput, 48 answers of <= {MAX_TOKENS} tokens, 12 clients: one \
         instance directly {one_rps:.1} answers/s ({one_tps:.0} tokens/s); three behind \
         haproxy {three_rps:.1} answers/s ({three_tps:.0} tokens/s), on {} CPU cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    eprintln!(
        "multi-instance: whole test {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
