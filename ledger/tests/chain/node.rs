//! A real Anvil per test, from the pinned npm package, on a port the OS picks.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use sworn_ledger::anchor::{Deployment, deploy_with, register_log_with};

/// Anvil's development accounts 0 and 1: published keys, for local chains only.
pub(crate) const DEV_KEY_0: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
pub(crate) const DEV_KEY_1: &str =
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// How long anvil may take to print its listening address.
const START_DEADLINE: Duration = Duration::from_secs(30);

pub(crate) fn signer(key: &str) -> PrivateKeySigner {
    key.parse().unwrap()
}

/// The native anvil binary inside `anvil/node_modules` (the `.bin` wrapper is a Node
/// script that would outlive a kill).
fn anvil_binary() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../anvil/node_modules/@foundry-rs");
    let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin/anvil"))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => path,
        None => panic!(
            "no anvil binary under {} — these tests need the pinned Foundry: run `make setup`",
            dir.display()
        ),
    }
}

/// A running anvil, killed when dropped.
pub(crate) struct AnvilNode {
    child: Child,
    pub(crate) url: String,
}

impl AnvilNode {
    /// Starts anvil with one slot per epoch (finalized = latest - 2) plus `extra` args.
    pub(crate) fn start(extra: &[&str]) -> AnvilNode {
        let mut child = Command::new(anvil_binary())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--slots-in-an-epoch",
                "1",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start anvil: {e}; run `make setup`"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads the listening address, then keeps draining stdout so anvil never blocks
        // on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("Listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_string());
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(START_DEADLINE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("anvil did not report a listening address within {START_DEADLINE:?}");
            }
        };
        AnvilNode {
            child,
            url: format!("http://{addr}"),
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for AnvilNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deploys SwornAnchor from account 0 and registers `origin` with `public_key`,
/// submitted by account 0.
pub(crate) async fn deploy_registered(url: &str, origin: &str, public_key: [u8; 32]) -> Deployment {
    let owner = signer(DEV_KEY_0);
    let submitter: Address = owner.address();
    let deployment = deploy_with(url, owner.clone()).await.unwrap();
    register_log_with(
        url,
        owner,
        deployment.address,
        origin,
        public_key,
        submitter,
    )
    .await
    .unwrap();
    deployment
}

/// Raw Anvil control calls.
pub(crate) async fn mine(provider: &impl Provider, blocks: u64) {
    let _: serde_json::Value = provider
        .raw_request("anvil_mine".into(), (blocks,))
        .await
        .unwrap();
}
