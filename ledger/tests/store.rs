//! The sled-backed ledger, for real on disk: appends, reads, proofs, recovery, sealing,
//! erasure, identity checks, side tables.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use sworn_ledger::commitment::{Domain, opens};
use sworn_ledger::entry::{EntryBody, Receipt};
use sworn_ledger::keys::LogKey;
use sworn_ledger::merkle::{hash_leaf, verify_consistency, verify_inclusion};
use sworn_ledger::receipt::{ModelInfo, ParamValue};
use sworn_ledger::{AppendRequest, Ledger, LedgerConfig, StoreError, StoredContent};
use time::OffsetDateTime;

pub(crate) const ORIGIN: &str = "sworn.example/store-test";

pub(crate) fn seed_key() -> LogKey {
    LogKey::from_seed([5; 32])
}

pub(crate) fn config(path: &Path) -> LedgerConfig {
    let mut c = LedgerConfig::new(path, ORIGIN, seed_key());
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

fn check_receipt(ledger: &Ledger, receipt: &Receipt) {
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
    let other_key = LedgerConfig::new(dir.path(), ORIGIN, LogKey::from_seed([6; 32]));
    assert!(matches!(
        Ledger::open(other_key),
        Err(StoreError::IdentityMismatch { what: "public key" })
    ));
    let other_origin = LedgerConfig::new(dir.path(), "sworn.example/other", seed_key());
    assert!(matches!(
        Ledger::open(other_origin),
        Err(StoreError::IdentityMismatch { what: "origin" })
    ));
    let bad_origin = LedgerConfig::new(dir.path(), "has space", seed_key());
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

/// Everything a reader can see of the first `size` entries.
fn snapshot(ledger: &Ledger, size: u64) -> Vec<String> {
    let mut seen = vec![format!("root {:?}", ledger.root(size).unwrap())];
    for i in 0..size {
        let entry = ledger.entry(i).unwrap().unwrap();
        let content = ledger.content(i).unwrap();
        seen.push(format!(
            "{i}: {entry:?} {content:?} {:?}",
            ledger.erasure_of(i).unwrap()
        ));
        if let Ok(EntryBody::Receipt(body)) = EntryBody::parse_canonical(&entry.body) {
            let receipt = ledger.receipt_by_request_id(&body.request_id).unwrap();
            seen.push(format!("{receipt:?}"));
        }
    }
    seen
}

/// Rewrites the store at `path` into the row layout of earlier versions: signature ‖ JSON
/// body, leaf hashes in level-0 hash rows, salts only in content rows, no model rows.
fn rewrite_as_earlier_layout(path: &Path, entries: &[(u64, Vec<u8>, Option<StoredContent>)]) {
    let db = sled::open(path).unwrap();
    let log = db.open_tree("log").unwrap();
    let mut batch = sled::Batch::default();
    for item in log.scan_prefix(b"d") {
        batch.remove(item.unwrap().0);
    }
    for (index, row, content) in entries {
        let key = |prefix: u8| {
            let mut k = vec![prefix];
            k.extend_from_slice(&index.to_be_bytes());
            k
        };
        batch.insert(key(b'e'), row.clone());
        let mut hash_key = vec![b'h', 0];
        hash_key.extend_from_slice(&index.to_be_bytes());
        batch.insert(hash_key, &hash_leaf(&row[64..]).0[..]);
        if let Some(c) = content {
            let mut value = c.prompt_salt.0.to_vec();
            value.extend_from_slice(&c.response_salt.0);
            value.extend_from_slice(&(c.prompt.len() as u32).to_be_bytes());
            value.extend_from_slice(&c.prompt);
            value.extend_from_slice(&c.response);
            batch.insert(key(b'c'), value);
        }
    }
    log.apply_batch(batch).unwrap();
    db.flush().unwrap();
}

#[test]
fn rows_read_back_the_same_across_models_empty_content_erasure_and_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let other_model = |mut r: AppendRequest| {
        r.model.id = "another-model".into();
        r
    };
    let empty = |mut r: AppendRequest| {
        r.prompt.clear();
        r.response.clear();
        r
    };
    let (receipts, before) = {
        let ledger = Ledger::open(config(dir.path())).unwrap();
        let receipts = [
            ledger.append(request("k-0")).unwrap(),
            ledger.append(empty(request("k-1"))).unwrap(),
            ledger.append(empty(other_model(request("k-2")))).unwrap(),
            ledger.append(other_model(request("k-3"))).unwrap(),
        ];
        for r in &receipts {
            check_receipt(&ledger, r);
            let read = ledger.entry(r.entry.index).unwrap().unwrap();
            assert_eq!(read, r.entry);
        }
        // Empty content still has its salts, and opens its commitments.
        let c2 = ledger
            .content(2)
            .unwrap()
            .expect("salts of an empty answer");
        assert_eq!(receipts[2].salts.unwrap().prompt, c2.prompt_salt);
        assert!(c2.prompt.is_empty() && c2.response.is_empty());
        // Erasing empty content drops the salts from the entry row.
        ledger.erase("k-1").unwrap();
        assert_eq!(ledger.content(1).unwrap(), None);
        assert_eq!(
            ledger.receipt_by_request_id("k-1").unwrap().unwrap().salts,
            None
        );
        assert!(matches!(
            ledger.erase("k-1"),
            Err(StoreError::AlreadyErased { .. })
        ));
        let before = snapshot(&ledger, 5);
        (receipts, before)
    };
    // Reopened: the model dictionary comes back from disk.
    let entries = {
        let ledger = Ledger::open(config(dir.path())).unwrap();
        assert_eq!(snapshot(&ledger, 5), before);
        (0..5)
            .map(|i| {
                let e = ledger.entry(i).unwrap().unwrap();
                let mut row = e.signature.to_bytes().to_vec();
                row.extend_from_slice(&e.body);
                (i, row, ledger.content(i).unwrap())
            })
            .collect::<Vec<_>>()
    };
    // Receipt bodies are stored compactly: well under half their JSON.
    {
        let db = sled::open(dir.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        for (index, json_row, _) in &entries[..4] {
            let mut key = vec![b'e'];
            key.extend_from_slice(&index.to_be_bytes());
            let stored = log.get(key).unwrap().unwrap();
            let salts = if *index == 1 { 0 } else { 64 };
            let stored_body = stored.len() - 64 - 2 - 32 - salts;
            assert!(
                stored_body * 2 < json_row.len() - 64,
                "entry {index}: {stored_body} bytes"
            );
        }
    }
    // A store written by an earlier version reads the same, and erasure works on it.
    rewrite_as_earlier_layout(dir.path(), &entries);
    let ledger = Ledger::open(config(dir.path())).unwrap();
    assert_eq!(snapshot(&ledger, 5), before);
    for r in &receipts {
        check_receipt(&ledger, r);
    }
    ledger.erase("k-2").unwrap();
    assert_eq!(ledger.content(2).unwrap(), None);
    assert!(matches!(
        ledger.erase("k-1"),
        Err(StoreError::AlreadyErased { .. })
    ));
    let r = ledger.append(request("k-5")).unwrap();
    check_receipt(&ledger, &r);
    assert_eq!(ledger.entry(6).unwrap().unwrap(), r.entry);
}

#[test]
fn damaged_entry_rows_are_typed_errors_not_wrong_bodies() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = Ledger::open(config(dir.path())).unwrap();
        for i in 0..4 {
            ledger.append(request(&format!("d-{i}"))).unwrap();
        }
    }
    let row_key = |index: u64| {
        let mut k = vec![b'e'];
        k.extend_from_slice(&index.to_be_bytes());
        k
    };
    {
        let db = sled::open(dir.path()).unwrap();
        let log = db.open_tree("log").unwrap();
        // Entry 1: one byte of the compact body changed; whichever field it lands in, the
        // rebuilt body no longer matches the stored leaf hash.
        let mut row = log.get(row_key(1)).unwrap().unwrap().to_vec();
        let at = row.len() - 10;
        row[at] ^= 0x01;
        log.insert(row_key(1), row).unwrap();
        // Entry 2: a flag this version does not know.
        let mut row = log.get(row_key(2)).unwrap().unwrap().to_vec();
        row[65] |= 0x80;
        log.insert(row_key(2), row).unwrap();
        db.flush().unwrap();
    }
    let ledger = Ledger::open(config(dir.path())).unwrap();
    assert!(ledger.entry(0).unwrap().is_some());
    for index in [1, 2] {
        match ledger.entry(index) {
            Err(StoreError::Corrupt { .. }) => {}
            other => panic!("entry {index}: expected a corruption error, got {other:?}"),
        }
    }
    assert!(ledger.entry(3).unwrap().is_some());
}
