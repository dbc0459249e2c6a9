//! API-key rotation and revocation without a restart: `sworn keys add` / `revoke` edit the
//! file, SIGHUP makes the running `sworn serve` reread it, and a file that no longer loads
//! leaves the keys in force.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use sworn_e2e::{KillOnDrop, lines_of, repo_root, wait_for_line, workspace_binary};

/// `GET /v1/models` with `key`: needs a valid key, generates nothing.
fn status_with(addr: &str, key: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET /v1/models HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {key}\r\n\r\n"
    )
    .expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line")
}

fn keys(args: &[&str]) -> String {
    let out = Command::new(workspace_binary("sworn"))
        .arg("keys")
        .args(args)
        .output()
        .expect("test setup");
    assert!(
        out.status.success(),
        "sworn keys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("test setup")
        .trim()
        .to_string()
}

fn hangup(pid: u32, stderr: &Receiver<String>, expect: &str) {
    let sent = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("test setup");
    assert!(sent.success());
    wait_for_line(stderr, Duration::from_secs(30), |line| {
        line.contains(expect).then_some(())
    })
    .unwrap_or_else(|| panic!("no `{expect}` after SIGHUP"));
}

#[test]
fn keys_added_and_revoked_take_effect_on_sighup_without_a_restart() {
    let model = repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.is_file(),
        "{} missing: run `make setup`",
        model.display()
    );
    let dir = tempfile::tempdir().expect("test setup");
    let file = dir.path().join("api-keys.toml");
    let file_arg = file.to_str().expect("test setup");
    let first = keys(&["add", "--file", file_arg, "--id", "team-a"]);
    let mut child = Command::new(workspace_binary("sworn"))
        .args([
            "serve",
            "--model",
            model.to_str().expect("test setup"),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--no-anchor", "--api-keys", file_arg])
        .args([
            "--data-dir",
            dir.path().join("data").to_str().expect("test setup"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("test setup");
    let stderr = lines_of(child.stderr.take().expect("test setup"));
    let pid = child.id();
    let _child = KillOnDrop(child);
    let addr = wait_for_line(&stderr, Duration::from_secs(300), |line| {
        line.split_once(" at http://")
            .map(|(_, addr)| addr.to_string())
    })
    .expect("the server reports that it serves");

    assert_eq!(status_with(&addr, &first), 200);
    let second = keys(&["add", "--file", file_arg, "--id", "team-b"]);
    assert_eq!(
        status_with(&addr, &second),
        401,
        "a key added to the file waits for SIGHUP"
    );
    hangup(pid, &stderr, "API keys reloaded");
    assert_eq!(status_with(&addr, &second), 200);

    keys(&["revoke", "--file", file_arg, "--id", "team-a"]);
    assert_eq!(
        status_with(&addr, &first),
        200,
        "revocation waits for SIGHUP"
    );
    hangup(pid, &stderr, "API keys reloaded");
    assert_eq!(status_with(&addr, &first), 401, "a revoked key is refused");
    assert_eq!(status_with(&addr, &second), 200);

    // A file that no longer loads leaves the keys in force.
    std::fs::write(&file, "not = [valid").expect("test setup");
    hangup(pid, &stderr, "API keys not reloaded");
    assert_eq!(status_with(&addr, &second), 200);
    assert_eq!(status_with(&addr, &first), 401);
}
