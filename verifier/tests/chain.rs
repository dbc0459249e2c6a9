//! The anchor and finality layers against a real Anvil (one per test, from the pinned npm
//! package), the committed contract artifact, and ledger's own anchorer writing the
//! anchor record — nothing on the chain side is simulated.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use serde_json::{Value, json};
use sworn_ledger::anchor::{
    AnchorConfig, Anchorer, Deployment, StepOutcome, deploy_with, register_log_with,
};
use sworn_ledger::key_history::KeyHistory;
use sworn_ledger::{Ledger, LedgerConfig};
use sworn_verifier::audit::{AuditOptions, audit_export};
use sworn_verifier::chain::{ChainPins, ChainReader};
use sworn_verifier::cli::KeyArgs;
use sworn_verifier::commands::{chain_view, verify_bundle_bytes};
use sworn_verifier::report::{EXIT_FAILED, EXIT_OK, EXIT_PENDING, Layer, Report};

use crate::fixture::{ORIGIN, key, request, vkey};

/// Anvil's development account 0: a published key, for local chains only.
const DEV_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// How long anvil may take to print its address.
const START_DEADLINE: Duration = Duration::from_secs(30);

struct Anvil {
    child: Child,
    url: String,
}

impl Anvil {
    /// Anvil with one slot per epoch (finalized = latest − 2) and no block time: blocks
    /// come only with transactions or when the test mines.
    fn start() -> Anvil {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../anvil/node_modules/@foundry-rs");
        let binary = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin/anvil"))
            .find(|p| p.is_file())
            .expect("the pinned anvil (run `make setup`)");
        let mut child = Command::new(binary)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--slots-in-an-epoch",
                "1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Keep draining after the address so anvil never blocks on a full pipe.
                if let Some(addr) = line.strip_prefix("Listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_string());
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(START_DEADLINE)
            .expect("anvil prints its address");
        Anvil {
            child,
            url: format!("http://{addr}"),
        }
    }

    async fn raw(&self, method: &str, params: Value) -> Value {
        let provider = ProviderBuilder::new().connect_http(self.url.parse().unwrap());
        provider
            .raw_request(method.to_string().into(), params)
            .await
            .unwrap()
    }

    async fn mine(&self, blocks: u64) {
        self.raw("anvil_mine", json!([blocks])).await;
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn deploy(url: &str) -> Deployment {
    let owner: PrivateKeySigner = DEV_KEY_0.parse().unwrap();
    let deployment = deploy_with(url, owner.clone()).await.unwrap();
    register_log_with(
        url,
        owner.clone(),
        deployment.address,
        ORIGIN,
        key().public_key_bytes(),
        owner.address(),
    )
    .await
    .unwrap();
    deployment
}

/// A log of 7 receipts with a checkpoint, anchored as seq 1 by ledger's anchorer (one
/// step: signed, recorded, broadcast, instantly mined).
struct Anchored {
    anvil: Anvil,
    deployment: Deployment,
    ledger: Arc<Ledger>,
    _dir: tempfile::TempDir,
}

async fn anchored_log() -> Anchored {
    let anvil = Anvil::start();
    let deployment = deploy(&anvil.url).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = LedgerConfig::new(dir.path().join("db"), ORIGIN, key());
    config.sealer = false;
    let ledger = Arc::new(Ledger::open(config).unwrap());
    let l = Arc::clone(&ledger);
    tokio::task::spawn_blocking(move || {
        for i in 0..7 {
            l.append(request(i)).unwrap();
        }
        l.seal_now().unwrap();
    })
    .await
    .unwrap();
    let mut anchor_config = AnchorConfig::new(&anvil.url, deployment.address, ORIGIN);
    anchor_config.deploy_block = deployment.deploy_block;
    let mut anchorer = Anchorer::new(
        anchor_config,
        DEV_KEY_0.parse().unwrap(),
        Arc::clone(&ledger),
    )
    .unwrap();
    let step = anchorer.step().await.unwrap();
    assert!(
        matches!(step, StepOutcome::Submitted { seq: 1, .. }),
        "{step:?}"
    );
    // Let the anchorer see the inclusion so its record carries the block.
    let step = anchorer.step().await.unwrap();
    assert!(
        matches!(step, StepOutcome::Waiting { seq: 1, .. }),
        "{step:?}"
    );
    Anchored {
        anvil,
        deployment,
        ledger,
        _dir: dir,
    }
}

fn bundle_with_record(a: &Anchored) -> Value {
    let receipt = a.ledger.receipt_by_request_id("req-6").unwrap().unwrap();
    let cp = a.ledger.latest_checkpoint().unwrap().unwrap();
    let proof = a.ledger.inclusion_proof(6, cp.checkpoint.size).unwrap();
    let record: Value =
        serde_json::from_slice(&a.ledger.get_anchor_record(1).unwrap().unwrap()).unwrap();
    json!({
        "receipt": receipt.to_json(),
        "inclusion": {"index": 6, "tree_size": proof.tree_size, "hashes": proof.path.iter().map(|h| h.to_hex()).collect::<Vec<_>>()},
        "checkpoint": {"size": cp.checkpoint.size, "root_hash": cp.checkpoint.root.to_hex(), "note": cp.note},
        "anchor": record,
    })
}

fn reader(
    url: &str,
    contract: Address,
    chain_id: Option<u64>,
    from: u64,
) -> (ChainReader, ChainPins) {
    (
        ChainReader::new(url, contract, Duration::from_secs(10)).unwrap(),
        ChainPins {
            chain_id,
            from_block: from,
        },
    )
}

fn key_args() -> KeyArgs {
    KeyArgs {
        key: Some(vkey()),
        from_chain: false,
        origin: None,
    }
}

async fn verify(bundle: &Value, chain: &(ChainReader, ChainPins), keys: KeyArgs) -> Report {
    let bytes = serde_json::to_vec(bundle).unwrap();
    let chain = (chain.0.clone(), chain.1.clone());
    tokio::task::spawn_blocking(move || {
        let rt = sworn_verifier::commands::runtime().unwrap();
        verify_bundle_bytes(&bytes, &keys, Some(&chain), &rt).unwrap()
    })
    .await
    .unwrap()
}

fn status(r: &Report, layer: Layer) -> &'static str {
    r.outcome(layer).map_or("absent", |o| o.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchored_receipt_is_pending_until_final_then_ok() {
    let a = anchored_log().await;
    let chain = reader(
        &a.anvil.url,
        a.deployment.address,
        Some(31337),
        a.deployment.deploy_block,
    );
    let bundle = bundle_with_record(&a);
    let r = verify(&bundle, &chain, key_args()).await;
    assert_eq!(status(&r, Layer::Anchor), "ok", "{r:#?}");
    assert_eq!(status(&r, Layer::Finality), "pending", "{r:#?}");
    assert_eq!(r.exit_code(), EXIT_PENDING);
    a.anvil.mine(3).await;
    let r = verify(&bundle, &chain, key_args()).await;
    assert_eq!(r.exit_code(), EXIT_OK, "{r:#?}");
    // Without the anchor record, the event is found by the checkpoint's hash.
    let mut bare = bundle.clone();
    bare.as_object_mut().unwrap().remove("anchor");
    let r = verify(&bare, &chain, key_args()).await;
    assert_eq!(r.exit_code(), EXIT_OK, "{r:#?}");
    // The key can come from the contract instead of the command line.
    let from_chain = KeyArgs {
        key: None,
        from_chain: true,
        origin: Some(ORIGIN.to_string()),
    };
    let r = verify(&bundle, &chain, from_chain).await;
    assert_eq!(r.exit_code(), EXIT_OK, "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_chain_or_contract_fails_the_anchor_layer() {
    let a = anchored_log().await;
    a.anvil.mine(3).await;
    let bundle = bundle_with_record(&a);
    // Pinned to another chain id than the endpoint's.
    let chain = reader(&a.anvil.url, a.deployment.address, Some(1), 0);
    let r = verify(&bundle, &chain, key_args()).await;
    assert_eq!(status(&r, Layer::Anchor), "failed", "{r:#?}");
    // Another SwornAnchor on the same chain: the record names a contract not pinned.
    let other = deploy(&a.anvil.url).await;
    let chain = reader(&a.anvil.url, other.address, None, 0);
    let r = verify(&bundle, &chain, key_args()).await;
    assert_eq!(status(&r, Layer::Anchor), "failed", "{r:#?}");
    assert_eq!(r.exit_code(), EXIT_FAILED);
    // The committed row-13 vector: a record for chain 1 and contract 0x…dead.
    let vector: Value = serde_json::from_slice(
        &std::fs::read(crate::vectors::dir().join("13-anchor-other-chain.bundle.json")).unwrap(),
    )
    .unwrap();
    let material = crate::vectors::committed_material();
    let keys = KeyArgs {
        key: Some(material["vkey"].as_str().unwrap().to_string()),
        from_chain: false,
        origin: None,
    };
    let chain = reader(&a.anvil.url, a.deployment.address, None, 0);
    let r = verify(&vector, &chain, keys).await;
    assert_eq!(status(&r, Layer::Anchor), "failed", "{r:#?}");
    assert_eq!(status(&r, Layer::Signature), "ok", "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_that_drops_the_anchor_is_never_reported_anchored() {
    let a = anchored_log().await;
    let chain = reader(&a.anvil.url, a.deployment.address, Some(31337), 0);
    let bundle = bundle_with_record(&a);
    // Replace the anchoring block with an empty one (provenance.md §7 row 14).
    a.anvil
        .raw("anvil_reorg", json!([1, Vec::<(Bytes, u64)>::new()]))
        .await;
    a.anvil.mine(3).await;
    let r = verify(&bundle, &chain, key_args()).await;
    assert_eq!(status(&r, Layer::Anchor), "pending", "{r:#?}");
    assert_ne!(status(&r, Layer::Finality), "ok", "{r:#?}");
    assert_eq!(r.exit_code(), EXIT_PENDING, "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_with_anchors_reproduces_them_and_catches_a_truncated_export() {
    let a = anchored_log().await;
    a.anvil.mine(3).await;
    let (reader, pins) = reader(&a.anvil.url, a.deployment.address, Some(31337), 0);
    let view = chain_view(&reader, &pins, ORIGIN).await.unwrap();
    assert_eq!(view.events.len(), 1);
    let export = {
        let mut out = Vec::new();
        sworn_ledger::export::write_export(&a.ledger, &mut out).unwrap();
        out
    };
    let key = a.ledger.public_key();
    let clean = audit_export(
        &KeyHistory::single(key.clone()),
        &export[..],
        Some(&view),
        &AuditOptions::default(),
    )
    .unwrap();
    assert_eq!(clean.findings.total, 0, "{:?}", clean.findings.kept);
    assert_eq!(clean.report.exit_code(), EXIT_OK, "{:#?}", clean.report);
    assert_eq!(clean.summary.anchors_reproduced, 1);
    // An export that stops after entry 3 (checkpoints and end adjusted by a dishonest
    // operator would not help): the anchor covers 7 entries.
    let text = String::from_utf8(export).unwrap();
    let short: Vec<&str> = text
        .lines()
        .filter(|l| {
            !l.contains("\"type\":\"entry\"")
                || ["\"index\":0,", "\"index\":1,", "\"index\":2,"]
                    .iter()
                    .any(|i| l.contains(i))
        })
        .collect();
    let short = short.join("\n") + "\n";
    let found = audit_export(
        &KeyHistory::single(key),
        short.as_bytes(),
        Some(&view),
        &AuditOptions::default(),
    )
    .unwrap();
    assert!(
        found
            .findings
            .kept
            .iter()
            .any(|f| f.kind == "beyond-export" && f.index == Some(7)),
        "{:?}",
        found.findings.kept
    );
    assert_eq!(found.report.exit_code(), EXIT_FAILED);
}

/// With chain flags the anchor layer vouches for a checkpoint's tree; a bundle that never
/// shows the receipt in that tree (no inclusion proof, or no checkpoint) must fail, not
/// borrow the anchor's "ok".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_chain_flags_inclusion_and_checkpoint_are_required() {
    let a = anchored_log().await;
    a.anvil.mine(3).await;
    let chain = reader(&a.anvil.url, a.deployment.address, Some(31337), 0);
    let bundle = bundle_with_record(&a);
    let r = verify(&bundle, &chain, key_args()).await;
    assert_eq!(r.exit_code(), EXIT_OK, "{r:#?}");
    for section in ["inclusion", "checkpoint"] {
        let mut cut = bundle.clone();
        cut.as_object_mut().unwrap().remove(section);
        let r = verify(&cut, &chain, key_args()).await;
        assert_eq!(r.exit_code(), EXIT_FAILED, "without {section}: {r:#?}");
        assert!(r.failures().contains(&Layer::Inclusion), "{r:#?}");
    }
}

/// `checkpoint --state-dir --rpc`: a checkpoint the log signed but the chain contradicts
/// (another root at an anchored size) fails and is not remembered — so the honest
/// checkpoint that follows is accepted, not failed as "equivocation" against the fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_the_chain_contradicts_never_becomes_the_remembered_checkpoint() {
    use sworn_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
    use sworn_ledger::merkle::hash_leaf;
    let a = anchored_log().await;
    a.anvil.mine(3).await;
    let honest = a.ledger.latest_checkpoint().unwrap().unwrap();
    let fork = SignedCheckpoint::sign(
        Checkpoint::new(
            ORIGIN,
            honest.checkpoint.size,
            hash_leaf(b"another history"),
        ),
        &key(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let contract = a.deployment.address.to_string();
    let check = |note: &str, name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, note).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sworn-verify"))
            .args(["checkpoint", path.to_str().unwrap(), "--key", &vkey()])
            .args(["--state-dir", state.to_str().unwrap()])
            .args(["--rpc", &a.anvil.url, "--contract", &contract, "--json"])
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), report)
    };
    let (code, report) = check(&fork.note, "fork.note");
    assert_eq!(code, Some(EXIT_FAILED), "{report}");
    assert!(report.to_string().contains("equivocat"), "{report}");
    assert_eq!(std::fs::read_dir(&state).map_or(0, |d| d.count()), 0);
    let (code, report) = check(&honest.note, "honest.note");
    assert_eq!(code, Some(EXIT_OK), "{report}");
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 1);
    // The fork is still refused, now also against what the auditor remembers.
    let (code, _) = check(&fork.note, "fork.note");
    assert_eq!(code, Some(EXIT_FAILED));
}
