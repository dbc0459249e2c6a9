//! The sled-backed ledger, for real on disk: appends, reads, proofs, recovery, sealing,
//! erasure, identity checks, side tables.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use sworn_ledger::commitment::{Domain, opens};
use sworn_ledger::entry::{EntryBody, Receipt};
use sworn_ledger::keys::LogKey;
use sworn_ledger::merkle::{verify_consistency, verify_inclusion};
use sworn_ledger::receipt::{ModelInfo, ParamValue};
use sworn_ledger::{AppendRequest, Ledger, LedgerConfig, StoreError};
use time::OffsetDateTime;

pub(crate) const ORIGIN: &str = "sworn.example/store-test";

pub(crate) fn seed_key() -> LogKey {
    LogKey::from_seed([5; 32])
}

/// A ledger in the data directory `dir`: the sled directory `dir/ledger` and, beside it,
/// its high-water record `dir/ledger.high-water` (so both go with the test's directory).
pub(crate) fn config(dir: &Path) -> LedgerConfig {
    let mut c = LedgerConfig::new(dir.join("ledger"), ORIGIN, seed_key());
    c.sealer = false;
    c
}

pub(crate) fn request(id: &str) -> AppendRequest {
    let mut params = BTreeMap::new();
    params.insert("temperature".to_string(), ParamValue::Str("0.7".into()));
    params.insert("max_tokens".to_string(), ParamValue::Int(16));
    AppendRequest {
        request_id: id.to_string(),
        tenant: "tenant-1".into(),
        model: ModelInfo {
            id: "m".into(),
            sha256: "0".repeat(64),
            dtype: "f32".into(),
            device: "cpu".into(),
            engine: "sworn test".into(),
            libtorch: "2.11.0".into(),
        },
        params,
        prompt: format!("[\"prompt of {id}\"]").into_bytes(),
        prompt_tokens: 3,
        response: format!("response to {id}").into_bytes(),
        response_tokens: 4,
        finish_reason: "stop".into(),
        time: OffsetDateTime::now_utc(),
    }
}

pub(crate) fn check_receipt(ledger: &Ledger, receipt: &Receipt) {
    let key = ledger.public_key();
    let json = serde_json::to_vec(&receipt.to_json()).unwrap();
    let verified = Receipt::verify_json(&json, &key).unwrap();
    assert_eq!(verified.leaf_hash, receipt.leaf_hash);
    let size = ledger.size();
    let proof = ledger.inclusion_proof(receipt.entry.index, size).unwrap();
    verify_inclusion(
        &receipt.leaf_hash,
        receipt.entry.index,
        size,
        &proof.path,
        &ledger.root(size).unwrap(),
    )
    .unwrap();
}

#[test]
fn appended_receipts_are_durable_verifiable_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(config(dir.path())).unwrap();
    let mut receipts = Vec::new();
    for i in 0..20 {
        let r = ledger.append(request(&format!("r-{i}"))).unwrap();
        assert_eq!(r.entry.index, i);
        assert_eq!(ledger.size(), i + 1, "append returns only once durable");
        receipts.push(r);
    }
    for r in &receipts {
        check_receipt(&ledger, r);
        assert_eq!(ledger.entry(r.entry.index).unwrap().unwrap(), r.entry);
        let again = ledger
            .receipt_by_request_id(&r.body.request_id)
            .unwrap()
            .unwrap();
        assert_eq!(&again, r);
        let content = ledger.content(r.entry.index).unwrap().unwrap();
        assert!(opens(
            &r.body.prompt.commitment,
            Domain::Prompt,
            &content.prompt_salt,
            &content.prompt
        ));
        assert!(opens(
            &r.body.response.commitment,
            Domain::Response,
            &content.response_salt,
            &content.response
        ));
    }
    assert_eq!(ledger.entry(20).unwrap(), None);
    assert!(ledger.receipt_by_request_id("nope").unwrap().is_none());
    assert!(matches!(
        ledger.inclusion_proof(0, 21),
        Err(StoreError::InvalidProofRequest { .. })
    ));
    assert!(matches!(
        ledger.inclusion_proof(20, 20),
        Err(StoreError::InvalidProofRequest { .. })
    ));
    for old in 1..=20 {
        let p = ledger.consistency_proof(old, 20).unwrap();
        verify_consistency(
            old,
            20,
            &ledger.root(old).unwrap(),
            &ledger.root(20).unwrap(),
            &p.path,
        )
        .unwrap();
    }
}

#[test]
fn invalid_requests_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_content_bytes = 100;
    let ledger = Ledger::open(cfg).unwrap();
    ledger.append(request("dup")).unwrap();
    assert!(matches!(
        ledger.append(request("dup")),
        Err(StoreError::DuplicateRequestId { .. })
    ));
    assert!(matches!(
        ledger.append(request("has space")),
        Err(StoreError::Body(_))
    ));
    let mut r = request("big");
    r.response = vec![b'x'; 101];
    assert!(matches!(
        ledger.append(r),
        Err(StoreError::ContentTooLarge { .. })
    ));
    let mut r = request("huge-int");
    r.params.insert("n".into(), ParamValue::Int(1 << 60));
    assert!(matches!(ledger.append(r), Err(StoreError::Body(_))));
    // Failed appends take no index.
    assert_eq!(ledger.append(request("next")).unwrap().entry.index, 1);
}

#[test]
fn concurrent_appenders_get_distinct_contiguous_indices() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(config(dir.path())).unwrap();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| ledger.append(request(&format!("t{t}-{i}"))).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let receipts: Vec<Receipt> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let indices: HashSet<u64> = receipts.iter().map(|r| r.entry.index).collect();
    assert_eq!(indices, (0..400).collect());
    assert_eq!(ledger.size(), 400);
    for r in receipts.iter().step_by(37) {
        check_receipt(&ledger, r);
    }
}

#[test]
fn async_append_awaits_durability() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(config(dir.path())).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let receipts = rt.block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let ledger = ledger.clone();
                tokio::spawn(async move { ledger.append_async(request(&format!("a-{i}"))).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        out
    });
    assert_eq!(ledger.size(), 32);
    for r in &receipts {
        check_receipt(&ledger, r);
    }
}

#[test]
fn reopening_recovers_the_same_tree_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let (root, checkpoint) = {
        let ledger = Ledger::open(config(dir.path())).unwrap();
        for i in 0..37 {
            ledger.append(request(&format!("x-{i}"))).unwrap();
        }
        let cp = ledger.seal_now().unwrap().unwrap();
        ledger.append(request("after-seal")).unwrap();
        (ledger.root(38).unwrap(), cp)
    };
    let ledger = Ledger::open(config(dir.path())).unwrap();
    assert_eq!(ledger.size(), 38);
    assert_eq!(ledger.root(38).unwrap(), root);
    assert_eq!(ledger.latest_checkpoint().unwrap(), Some(checkpoint));
    let r = ledger.append(request("y")).unwrap();
    assert_eq!(r.entry.index, 38);
    check_receipt(&ledger, &r);
    assert!(matches!(
        ledger.append(request("x-3")),
        Err(StoreError::DuplicateRequestId { .. })
    ));
}

#[test]
fn store_refuses_another_origin_or_key() {
    let dir = tempfile::tempdir().unwrap();
    drop(Ledger::open(config(dir.path())).unwrap());
    let other_key = LedgerConfig::new(
        dir.path().join("ledger"),
        ORIGIN,
        LogKey::from_seed([6; 32]),
    );
    assert!(matches!(
        Ledger::open(other_key),
        Err(StoreError::IdentityMismatch { what: "public key" })
    ));
    let other_origin =
        LedgerConfig::new(dir.path().join("ledger"), "sworn.example/other", seed_key());
    assert!(matches!(
        Ledger::open(other_origin),
        Err(StoreError::IdentityMismatch { what: "origin" })
    ));
    let bad_origin = LedgerConfig::new(dir.path().join("ledger"), "has space", seed_key());
    assert!(matches!(
        Ledger::open(bad_origin),
        Err(StoreError::Config { .. })
    ));
}

#[test]
fn sealer_seals_every_n_entries_and_checkpoints_are_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.sealer = true;
    cfg.seal_every_entries = 10;
    cfg.seal_interval = Duration::from_secs(3600);
    let ledger = Ledger::open(cfg).unwrap();
    for i in 0..25 {
        ledger.append(request(&format!("s-{i}"))).unwrap();
    }
    let cp = ledger
        .wait_for_checkpoint(20, Duration::from_secs(30))
        .unwrap()
        .expect("sealed");
    assert!(cp.checkpoint.size >= 20);
    let all: Vec<_> = ledger.checkpoints().map(Result::unwrap).collect();
    assert!(all.len() >= 2, "a checkpoint at ≥10 and one at ≥20");
    let key = ledger.public_key();
    for pair in all.windows(2) {
        let (a, b) = (&pair[0].checkpoint, &pair[1].checkpoint);
        assert!(a.size < b.size);
        let p = ledger.consistency_proof(a.size, b.size).unwrap();
        verify_consistency(a.size, b.size, &a.root, &b.root, &p.path).unwrap();
    }
    for cp in &all {
        sworn_ledger::checkpoint::SignedCheckpoint::verify(&cp.note, &key, ORIGIN).unwrap();
        assert_eq!(
            ledger.checkpoint_at(cp.checkpoint.size).unwrap().as_ref(),
            Some(cp)
        );
    }
}

#[test]
fn time_based_sealing_happens_without_new_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.sealer = true;
    cfg.seal_every_entries = 0;
    cfg.seal_interval = Duration::from_millis(50);
    let ledger = Ledger::open(cfg).unwrap();
    ledger.append(request("t-1")).unwrap();
    let cp = ledger
        .wait_for_checkpoint(1, Duration::from_secs(30))
        .unwrap()
        .expect("sealed by time");
    assert_eq!(cp.checkpoint.size, 1);
    assert_eq!(ledger.seal_now().unwrap(), None, "nothing new to seal");
}

#[test]
fn erasure_deletes_content_logs_an_event_and_keeps_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(config(dir.path())).unwrap();
    let receipts: Vec<_> = (0..3)
        .map(|i| ledger.append(request(&format!("e-{i}"))).unwrap())
        .collect();
    let root_before = ledger.root(3).unwrap();
    let outcome = ledger.erase("e-1").unwrap();
    assert_eq!(outcome.erased_index, 1);
    assert_eq!(outcome.event.index, 3);
    assert_eq!(ledger.size(), 4);
    assert_eq!(ledger.content(1).unwrap(), None);
    assert!(ledger.content(0).unwrap().is_some());
    assert_eq!(ledger.erasure_of(1).unwrap(), Some(3));
    let after = ledger.receipt_by_request_id("e-1").unwrap().unwrap();
    assert_eq!(after.salts, None);
    assert_eq!(after.leaf_hash, receipts[1].leaf_hash);
    // The old tree and every old proof are unchanged.
    assert_eq!(ledger.root(3).unwrap(), root_before);
    check_receipt(&ledger, &receipts[1]);
    match ledger
        .entry(3)
        .unwrap()
        .unwrap()
        .verify(&ledger.public_key())
        .unwrap()
    {
        EntryBody::Erasure(e) => {
            assert_eq!(e.erased.index, 1);
            assert_eq!(e.erased.leaf_hash, receipts[1].leaf_hash);
        }
        other => panic!("expected an erasure event, got {other:?}"),
    }
    assert!(matches!(
        ledger.erase("e-1"),
        Err(StoreError::AlreadyErased { .. })
    ));
    assert!(matches!(
        ledger.erase("missing"),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn anchor_records_and_meta_persist() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::open(config(dir.path())).unwrap();
        ledger.put_anchor_record(0, b"first").unwrap();
        ledger.put_anchor_record(1, b"second").unwrap();
        ledger.put_anchor_record(1, b"second, finalized").unwrap();
        ledger.meta_put("anchor.cursor", b"7").unwrap();
        assert!(ledger.meta_put("", b"x").is_err());
    }
    let ledger = Ledger::open(config(dir.path())).unwrap();
    assert_eq!(
        ledger.get_anchor_record(1).unwrap().as_deref(),
        Some(&b"second, finalized"[..])
    );
    assert_eq!(ledger.get_anchor_record(2).unwrap(), None);
    let all: Vec<_> = ledger.anchor_records().map(Result::unwrap).collect();
    assert_eq!(
        all,
        vec![(0, b"first".to_vec()), (1, b"second, finalized".to_vec())]
    );
    assert_eq!(ledger.last_anchor_seq().unwrap(), Some(1));
    assert_eq!(
        ledger.meta_get("anchor.cursor").unwrap().as_deref(),
        Some(&b"7"[..])
    );
}

#[test]
fn shutdown_seals_and_later_appends_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(config(dir.path())).unwrap();
    ledger.append(request("z-1")).unwrap();
    let cp = ledger.shutdown().unwrap().expect("final checkpoint");
    assert_eq!(cp.checkpoint.size, 1);
    assert!(matches!(
        ledger.append(request("z-2")),
        Err(StoreError::Closed)
    ));
}
