//! The anchorer against a real Anvil (one per test, from `anvil/node_modules`), with a
//! real sled ledger on disk. Each test starts its own chain on an OS-chosen port.

// Helpers shared by tests panic on failure like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod deep_reorg;
mod gas;
mod history;
mod node;
mod outage;
mod path;
mod proxy;
mod rejections;
mod reorg;
mod restart;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::B256;
use sworn_ledger::anchor::{
    AnchorConfig, AnchorRecord, AnchorStatus, AnchorStore, Anchorer, AnchorerHandle, BackoffPolicy,
    Deployment,
};
use sworn_ledger::checkpoint::SignedCheckpoint;
use sworn_ledger::keys::LogKey;
use sworn_ledger::receipt::{ModelInfo, ParamValue};
use sworn_ledger::{AppendRequest, Ledger, LedgerConfig};
use tokio::sync::watch;

pub(crate) const ORIGIN: &str = "sworn.test/chain";
/// The longest a test waits for one state; a pass takes milliseconds on Anvil.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn log_key() -> LogKey {
    LogKey::from_seed([7; 32])
}

/// A sled ledger in `dir` that seals only when told (its high-water record beside it, in
/// `dir` too).
pub(crate) fn open_ledger(dir: &Path) -> Arc<Ledger> {
    let mut config = LedgerConfig::new(dir.join("ledger"), ORIGIN, log_key());
    config.sealer = false;
    Arc::new(Ledger::open(config).unwrap())
}

/// Receipt `i` of a history: `history` goes into the prompt and answer, so two histories
/// differ from their first entry on.
fn request(history: &str, i: u64) -> AppendRequest {
    let mut params = BTreeMap::new();
    params.insert("temperature".to_string(), ParamValue::Str("0".into()));
    AppendRequest {
        request_id: format!("req-{i}"),
        tenant: "tenant-a".into(),
        model: ModelInfo {
            id: "test-model".into(),
            sha256: "0".repeat(64),
            dtype: "f32".into(),
            device: "cpu".into(),
            engine: "sworn-test".into(),
            libtorch: "2.11.0".into(),
        },
        params,
        prompt: format!("[\"{history}prompt {i}\"]").into_bytes(),
        prompt_tokens: 2,
        response: format!("{history}answer {i}").into_bytes(),
        response_tokens: 2,
        finish_reason: "stop".into(),
        time: time::OffsetDateTime::now_utc(),
    }
}

/// Appends receipts until the log holds `size` entries, then seals a checkpoint.
pub(crate) async fn grow_and_seal(ledger: &Arc<Ledger>, size: u64) -> SignedCheckpoint {
    grow_history_and_seal(ledger, "", size).await
}

/// Like [`grow_and_seal`], with the receipts of another history (`history` names it): a
/// ledger grown this way is a fork of one grown by [`grow_and_seal`], from its first entry.
pub(crate) async fn grow_history_and_seal(
    ledger: &Arc<Ledger>,
    history: &'static str,
    size: u64,
) -> SignedCheckpoint {
    let ledger = Arc::clone(ledger);
    tokio::task::spawn_blocking(move || {
        for i in ledger.size()..size {
            ledger.append(request(history, i)).unwrap();
        }
        ledger.seal_now().unwrap();
        ledger.latest_checkpoint().unwrap().unwrap()
    })
    .await
    .unwrap()
}

/// Anchorer settings for tests: quick polls, short deadlines and back-off.
pub(crate) fn config(url: &str, deployment: &Deployment) -> AnchorConfig {
    let mut config = AnchorConfig::new(url, deployment.address, ORIGIN);
    config.chain_id = Some(deployment.chain_id);
    config.deploy_block = deployment.deploy_block;
    config.poll_interval = Duration::from_millis(100);
    config.rpc_timeout = Duration::from_secs(2);
    config.backoff = BackoffPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
    };
    config
}

pub(crate) fn spawn(config: AnchorConfig, key: &str, ledger: &Arc<Ledger>) -> AnchorerHandle {
    Anchorer::new(config, node::signer(key), Arc::clone(ledger))
        .unwrap()
        .spawn()
}

/// Waits until the status satisfies `pred`, or fails the test saying what was awaited.
pub(crate) async fn wait_for(
    rx: &mut watch::Receiver<AnchorStatus>,
    what: &str,
    pred: impl FnMut(&AnchorStatus) -> bool,
) -> AnchorStatus {
    let waited = match tokio::time::timeout(WAIT, rx.wait_for(pred)).await {
        Ok(Ok(status)) => Some(status.clone()),
        _ => None,
    };
    match waited {
        Some(status) => status,
        None => panic!(
            "timed out waiting for {what}; last status: {:?}",
            *rx.borrow()
        ),
    }
}

/// Every anchor record in the ledger, checking seqs run 1, 2, 3, ... without a gap.
pub(crate) fn records(ledger: &Ledger) -> Vec<AnchorRecord> {
    let mut out = Vec::new();
    for (i, item) in ledger.anchor_records().enumerate() {
        let (seq, bytes) = item.unwrap();
        assert_eq!(seq, i as u64 + 1, "anchor records have a seq gap");
        out.push(AnchorRecord::from_bytes(seq, &bytes).unwrap());
    }
    let last = AnchorStore::last_record(ledger).unwrap();
    assert_eq!(last.as_ref(), out.last());
    out
}

pub(crate) fn root_of(checkpoint: &SignedCheckpoint) -> B256 {
    B256::from(checkpoint.checkpoint.root.0)
}
