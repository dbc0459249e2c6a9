//! The `sworn` binary as a newcomer first meets it.

use std::process::Command;

use sworn_service::device::DeviceReport;

fn sworn(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sworn"))
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("run sworn");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sworn --version` runs without LD_LIBRARY_PATH (rpath) and reports what libtorch itself
/// says, matching what this process's own libtorch sees.
#[test]
fn version_reports_crate_libtorch_and_devices() {
    let (ok, stdout, stderr) = sworn(&["--version"]);
    assert!(ok, "sworn --version failed: {stderr}");
    let expected = DeviceReport::probe();
    assert!(
        stdout.contains(&format!("sworn {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
    assert_eq!(expected.libtorch, "2.11.0", "libtorch's own show_config()");
    assert!(stdout.contains("libtorch 2.11.0"), "{stdout}");
    assert!(
        stdout.contains(&format!("cuda: {} device(s)", expected.cuda_devices)),
        "{stdout}"
    );
}

#[test]
fn version_json_is_machine_readable() {
    let (ok, stdout, stderr) = sworn(&["version"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(v["libtorch"], "2.11.0");
    assert!(v["cuda_devices"].is_u64());
    assert!(v["cudnn"].is_boolean());
    assert!(v["cuda_backend"].as_str().is_some_and(|s| !s.is_empty()));
}

/// Anvil's development account 0 key: published, for local chains only.
const DEV_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// A real anvil from the pinned npm package on a port the OS picks; killed on drop.
struct Anvil {
    child: std::process::Child,
    url: String,
}

impl Anvil {
    fn start() -> Anvil {
        use std::io::{BufRead, BufReader};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../anvil/node_modules/@foundry-rs");
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
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start anvil");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reports the listening address, then keeps draining so anvil never blocks.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("Listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("anvil printed its address");
        Anvil {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn secret_file(dir: &std::path::Path, name: &str, contents: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path
}

/// `sworn chain deploy` puts SwornAnchor on a real chain and `sworn chain register`
/// registers a log on it; a world-readable chain key is refused.
#[test]
fn chain_deploy_and_register_against_anvil() {
    let anvil = Anvil::start();
    let dir = tempfile::tempdir().unwrap();
    let chain_key = secret_file(dir.path(), "chain.key", DEV_KEY_0);
    let out = dir.path().join("deployment.json");

    let (ok, stdout, stderr) = sworn(&[
        "chain",
        "deploy",
        "--rpc",
        &anvil.url,
        "--chain-key",
        chain_key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "deploy failed: {stderr}");
    let address = stdout.trim();
    assert!(address.starts_with("0x") && address.len() == 42, "{stdout}");
    let deployment: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(deployment["chain_id"], 31337);
    assert_eq!(
        deployment["address"].as_str().unwrap().to_lowercase(),
        address.to_lowercase()
    );

    let log_key = dir.path().join("log.key");
    let (ok, _, stderr) = sworn(&["keygen", "--out", log_key.to_str().unwrap()]);
    assert!(ok, "keygen failed: {stderr}");
    let register = || {
        sworn(&[
            "chain",
            "register",
            "--rpc",
            &anvil.url,
            "--chain-key",
            chain_key.to_str().unwrap(),
            "--contract",
            address,
            "--origin",
            "sworn.test/cli",
            "--log-key",
            log_key.to_str().unwrap(),
        ])
    };
    let (ok, stdout, stderr) = register();
    assert!(ok, "register failed: {stderr}");
    assert!(stdout.contains("registered sworn.test/cli"), "{stdout}");

    // Registering the same origin twice is refused by the contract, as a clear error.
    let (ok, _, stderr) = register();
    assert!(!ok, "a second registration must fail");
    assert!(stderr.contains("sworn.test/cli"), "{stderr}");

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&chain_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, stderr) = sworn(&[
        "chain",
        "deploy",
        "--rpc",
        &anvil.url,
        "--chain-key",
        chain_key.to_str().unwrap(),
    ]);
    assert!(!ok, "a world-readable chain key must be refused");
    assert!(
        !stderr.contains(&DEV_KEY_0[2..]),
        "the key must never be printed"
    );
}
