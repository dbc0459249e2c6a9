//! A real Anvil per test (from the pinned npm package, on a port the OS picks) and what
//! the chain tests do with it.

use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use sworn_e2e::Anvil;
use sworn_ledger::anchor::{Deployment, deploy_with, register_log_with};

pub(crate) use sworn_e2e::{DEV_KEY_0, DEV_KEY_1};

pub(crate) fn signer(key: &str) -> PrivateKeySigner {
    key.parse().unwrap()
}

/// Starts anvil (the workspace's one helper, `sworn_e2e::Anvil`) with one slot per epoch,
/// so finalized = latest − 2, plus `extra` args.
pub(crate) fn start_anvil(extra: &[&str]) -> Anvil {
    Anvil::start(&[&["--slots-in-an-epoch", "1"], extra].concat())
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
