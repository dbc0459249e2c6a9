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
    assert!(stdout.contains(&format!("sworn {}", env!("CARGO_PKG_VERSION"))), "{stdout}");
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
