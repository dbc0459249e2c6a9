//! The `sworn` binary as a newcomer first meets it.

use std::process::Command;

use sworn_e2e::{Anvil, DEV_KEY_0, secret_file};
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

/// `sworn chain deploy` puts SwornAnchor on a real chain and `sworn chain register`
/// registers a log on it; a world-readable chain key is refused.
#[test]
fn chain_deploy_and_register_against_anvil() {
    let anvil = Anvil::start(&[]);
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
