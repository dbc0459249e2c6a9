//! Helpers for the workspace-level end-to-end tests: the built binaries, a real anvil from
//! the pinned npm package, and secret files with the modes the binaries insist on. The
//! [`serve`] module drives `sworn serve` against a chain, as the restore and key-rotation
//! tests do; [`sdk`] runs it for the official `openai` SDK's scripts.
#![deny(missing_docs)]
// Test support: failing to set up the world is a test failure, reported loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub mod sdk;
pub mod serve;

/// Anvil's development account 0 key: published, for local chains only.
pub const DEV_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// Anvil's development account 1 key: published, for local chains only.
pub const DEV_KEY_1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// A binary of the workspace (`sworn`, `sworn-verify`) from the target directory this test
/// was built into; `make test` builds every binary before it runs the tests.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable under target/<profile>/deps");
    let binary = profile_dir.join(name);
    assert!(
        binary.is_file(),
        "{} is missing: build the workspace first (`cargo build --workspace`, as `make test` does)",
        binary.display()
    );
    binary
}

/// The model the end-to-end tests serve (`make setup` fetches it), as `--model-id` names it.
pub const MODEL_ID: &str = "SmolLM2-135M-Instruct";

/// `p` as a command-line argument (temporary paths are UTF-8).
pub fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

/// The GGUF file of [`MODEL_ID`]; fails with how to get it when it is missing.
pub fn model() -> PathBuf {
    let model = repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.is_file(),
        "{} missing: run `make setup`",
        model.display()
    );
    model
}

/// Runs a workspace binary to completion: exit code, stdout, stderr.
pub fn run(binary: &str, args: &[&str]) -> (i32, String, String) {
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

/// Writes `contents` to `dir/name` with mode 0600.
pub fn secret_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path
}

/// A child process killed (and reaped) on drop, whatever the test did.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `child`'s stream line by line on a thread, forever (so the child never blocks on a
/// full pipe), and sends every line to the returned receiver.
pub fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits up to `limit` for a line for which `pick` returns something.
pub fn wait_for_line<T>(
    lines: &mpsc::Receiver<String>,
    limit: Duration,
    mut pick: impl FnMut(&str) -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(std::time::Instant::now())?;
        let line = lines.recv_timeout(left).ok()?;
        if let Some(found) = pick(&line) {
            return Some(found);
        }
    }
}

/// A real anvil from the pinned npm package (`make setup`), on a port the OS picks.
#[derive(Debug)]
pub struct Anvil {
    _child: KillOnDrop,
    /// Its JSON-RPC URL.
    pub url: String,
}

impl Anvil {
    /// Starts anvil with `extra` arguments and waits until it listens.
    pub fn start(extra: &[&str]) -> Anvil {
        Anvil::start_on(0, extra)
    }

    /// Starts anvil on `port` (0: one the OS picks) with `extra` arguments and waits until
    /// it listens: for a chain that comes up after a server was pointed at it.
    pub fn start_on(port: u16, extra: &[&str]) -> Anvil {
        let dir = repo_root().join("anvil/node_modules/@foundry-rs");
        let binary = std::fs::read_dir(&dir)
            .ok()
            .and_then(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path().join("bin/anvil"))
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| panic!("no anvil under {}: run `make setup`", dir.display()));
        let mut child = Command::new(binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start anvil");
        let lines = lines_of(child.stdout.take().expect("piped stdout"));
        let child = KillOnDrop(child);
        let addr = wait_for_line(&lines, Duration::from_secs(30), |line| {
            line.strip_prefix("Listening on ")
                .map(|a| a.trim().to_owned())
        })
        .expect("anvil printed its address");
        Anvil {
            _child: child,
            url: format!("http://{addr}"),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the url ends in a port")
    }
}
