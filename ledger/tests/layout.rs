//! The store's rows on disk: packs of entry rows, request-id buckets, stores written by
//! earlier versions, damaged rows and packs.

use std::path::Path;

use sha2::{Digest, Sha256};
use sworn_ledger::entry::EntryBody;
use sworn_ledger::merkle::{CompactRange, Hash, hash_leaf, verify_consistency, verify_inclusion};
use sworn_ledger::{AppendRequest, Ledger, StoreError, StoredContent};

use crate::store::{check_receipt, config, request};

/// Everything a reader can see of the first `size` entries.
pub(crate) fn snapshot(ledger: &Ledger, size: u64) -> Vec<String> {
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

pub(crate) fn key(prefix: u8, index: u64) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// The slots of a stored pack: version 1, first slot, count, u32 BE row ends, rows.
pub(crate) fn pack_rows(value: &[u8]) -> (u8, Vec<Vec<u8>>) {
    assert_eq!(value[0], 1, "pack version");
    let (first, count) = (value[1], usize::from(value[2]));
    let data = &value[3 + 4 * count..];
    let mut start = 0;
    let rows = (0..count)
        .map(|i| {
            let end = u32::from_be_bytes(value[3 + 4 * i..7 + 4 * i].try_into().unwrap()) as usize;
            let row = data[start..end].to_vec();
            start = end;
            row
        })
        .collect();
    (first, rows)
}

/// The hashes a full pack carries after its rows: the subtrees (levels 4, 5, …) that its
/// last entry completes.
fn completed_hashes(value: &[u8]) -> Vec<u8> {
    let count = usize::from(value[2]);
    let end = u32::from_be_bytes(
        value[3 + 4 * (count - 1)..3 + 4 * count]
            .try_into()
            .unwrap(),
    );
    value[3 + 4 * count + end as usize..].to_vec()
}

fn pack_value(first: u8, rows: &[Vec<u8>]) -> Vec<u8> {
    let mut value = vec![1, first, rows.len() as u8];
    let mut end = 0u32;
    for row in rows {
        end += row.len() as u32;
        value.extend_from_slice(&end.to_be_bytes());
    }
    for row in rows {
        value.extend_from_slice(row);
    }
    value
}

/// Opens the sled database of the ledger in data directory `dir` (see `store::config`)
/// that was just dropped. sled's I/O threads hand back the directory lock a moment after
/// the last flush is acknowledged, so the first tries may find it held; nothing else holds
/// it here.
pub(crate) fn raw_db(dir: &Path) -> sled::Db {
    let path = dir.join("ledger");
    let mut tries = 0;
    loop {
        match sled::open(&path) {
            Ok(db) => return db,
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                tries += 1;
                assert!(tries < 1_000_000, "the lock was never released: {e}");
                std::thread::yield_now();
            }
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    }
}

/// Keys in the `log` tree starting with `prefix`.
pub(crate) fn keys_with(log: &sled::Tree, prefix: u8) -> Vec<Vec<u8>> {
    log.scan_prefix([prefix])
        .map(|item| item.unwrap().0.to_vec())
        .collect()
}

/// Rewrites the store at `path` into the row layout of versions before packs and compact
/// rows: a row per entry (signature ‖ JSON body), hash rows at every level (leaves too),
/// salts only in content rows, a row per request id, no model rows or layout keys.
fn rewrite_as_earlier_layout(path: &Path, entries: &[(u64, Vec<u8>, Option<StoredContent>)]) {
    let db = raw_db(path);
    let log = db.open_tree("log").unwrap();
    let mut batch = sled::Batch::default();
    for prefix in [b'a', b'd', b'p', b'b', b'h', b'c'] {
        for k in keys_with(&log, prefix) {
            batch.remove(k);
        }
    }
    batch.remove(&b"mpacks_from"[..]);
    batch.remove(&b"mrequest_buckets"[..]);
    let mut range = CompactRange::new();
    for (index, row, content) in entries {
        batch.insert(key(b'e', *index), row.clone());
        for node in range.push(hash_leaf(&row[64..])).unwrap() {
            let mut hash_key = vec![b'h', node.level];
            hash_key.extend_from_slice(&node.index.to_be_bytes());
            batch.insert(hash_key, &node.hash.0[..]);
        }
        if let Ok(EntryBody::Receipt(body)) = EntryBody::parse_canonical(&row[64..]) {
            let mut request_key = vec![b'r'];
            request_key.extend_from_slice(body.request_id.as_bytes());
            batch.insert(request_key, &index.to_be_bytes()[..]);
        }
        if let Some(c) = content {
            let mut value = c.prompt_salt.0.to_vec();
            value.extend_from_slice(&c.response_salt.0);
            value.extend_from_slice(&(c.prompt.len() as u32).to_be_bytes());
            value.extend_from_slice(&c.prompt);
            value.extend_from_slice(&c.response);
            batch.insert(key(b'c', *index), value);
        }
    }
    log.apply_batch(batch).unwrap();
    db.flush().unwrap();
}

/// Every entry as an earlier version stored it, with its content.
fn as_earlier_rows(ledger: &Ledger) -> Vec<(u64, Vec<u8>, Option<StoredContent>)> {
    (0..ledger.size())
        .map(|i| {
            let e = ledger.entry(i).unwrap().unwrap();
            let mut row = e.signature.to_bytes().to_vec();
            row.extend_from_slice(&e.body);
            (i, row, ledger.content(i).unwrap())
        })
        .collect()
}

/// Checks every inclusion proof at `size` and consistency proofs into it against a tree
/// rebuilt here from the entries' bodies.
pub(crate) fn check_all_proofs(ledger: &Ledger, size: u64) {
    let leaves: Vec<Hash> = (0..size)
        .map(|i| hash_leaf(&ledger.entry(i).unwrap().unwrap().body))
        .collect();
    let mut range = CompactRange::new();
    let mut roots = Vec::new();
    for leaf in &leaves {
        range.push(*leaf).unwrap();
        roots.push(range.root());
    }
    let root = ledger.root(size).unwrap();
    assert_eq!(root, roots[size as usize - 1]);
    for (i, leaf) in leaves.iter().enumerate() {
        let proof = ledger.inclusion_proof(i as u64, size).unwrap();
        verify_inclusion(leaf, i as u64, size, &proof.path, &root).unwrap();
    }
    for old in 1..size {
        let proof = ledger.consistency_proof(old, size).unwrap();
        verify_consistency(old, size, &roots[old as usize - 1], &root, &proof.path).unwrap();
    }
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
        as_earlier_rows(&ledger)
    };
    // Five entries: all in the open pack (pack 0). Receipt bodies are compact: well under
    // half their JSON.
    {
        let db = raw_db(dir.path());
        let log = db.open_tree("log").unwrap();
        for prefix in [b'p', b'e', b'r'] {
            assert!(keys_with(&log, prefix).is_empty(), "{}", prefix as char);
        }
        let open = log.get(b"a").unwrap().unwrap();
        assert_eq!(open[..8], 0u64.to_be_bytes(), "pack 0 is open");
        let (first, rows) = pack_rows(&open[8..]);
        assert_eq!((first, rows.len()), (0, 5));
        for (index, json_row, _) in &entries[..4] {
            let stored = &rows[*index as usize];
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
    {
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
        assert!(matches!(
            ledger.append(request("k-0")),
            Err(StoreError::DuplicateRequestId { .. })
        ));
        // Packs begin at 5 (k-2's erasure event): pack 0 holds slots 5-15, pack 1 all of
        // its entries, pack 2 is open.
        for i in 5..40 {
            let r = ledger.append(request(&format!("k-{i}"))).unwrap();
            check_receipt(&ledger, &r);
        }
        ledger.erase("k-20").unwrap();
        check_all_proofs(&ledger, ledger.size());
    }
    {
        let db = raw_db(dir.path());
        let log = db.open_tree("log").unwrap();
        assert_eq!(keys_with(&log, b'p'), vec![key(b'p', 0), key(b'p', 1)]);
        let (first, rows) = pack_rows(&log.get(key(b'p', 0)).unwrap().unwrap());
        assert_eq!((first, rows.len()), (5, 11));
        let rows: Vec<u64> = keys_with(&log, b'e')
            .iter()
            .map(|k| u64::from_be_bytes(k[1..].try_into().unwrap()))
            .collect();
        assert_eq!(
            rows,
            (0..5).collect::<Vec<_>>(),
            "rows of the earlier layout"
        );
        let open = log.get(b"a").unwrap().unwrap();
        assert_eq!(open[..8], 2u64.to_be_bytes());
        assert_eq!(pack_rows(&open[8..]).1.len(), 10);
    }
    let ledger = Ledger::open(config(dir.path())).unwrap();
    assert_eq!(ledger.size(), 42);
    assert_eq!(ledger.content(2).unwrap(), None);
    assert_eq!(
        ledger.receipt_by_request_id("k-20").unwrap().unwrap().salts,
        None
    );
    assert_eq!(ledger.index_of("k-3").unwrap(), Some(3));
    assert_eq!(ledger.index_of("k-39").unwrap(), Some(40));
    check_all_proofs(&ledger, 42);
}

#[test]
fn packs_hold_many_groups_and_erasures_and_reopen_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // A tiny memtable: the request-id index writes runs and merges them.
    cfg.request_memtable = 5;
    let before = {
        let ledger = Ledger::open(cfg).unwrap();
        // Groups of varying size: four appenders at once, then one at a time.
        std::thread::scope(|s| {
            for t in 0..4 {
                let ledger = &ledger;
                s.spawn(move || {
                    for i in 0..20 {
                        ledger.append(request(&format!("g-{t}-{i}"))).unwrap();
                    }
                });
            }
        });
        for i in 0..13 {
            ledger.append(request(&format!("s-{i}"))).unwrap();
        }
        // Erase inside full packs and in the open one.
        for id in ["g-0-0", "g-3-19", "s-12"] {
            ledger.erase(id).unwrap();
        }
        assert_eq!(ledger.size(), 96);
        check_all_proofs(&ledger, 96);
        snapshot(&ledger, 96)
    };
    // Reopened with another memtable size: the runs are read as they are.
    let mut cfg = config(dir.path());
    cfg.request_memtable = 1000;
    let ledger = Ledger::open(cfg).unwrap();
    assert_eq!(snapshot(&ledger, 96), before);
    check_all_proofs(&ledger, 96);
    drop(ledger);
    let db = raw_db(dir.path());
    let log = db.open_tree("log").unwrap();
    assert_eq!(keys_with(&log, b'p').len(), 6, "96 entries in 6 packs");
    assert!(!keys_with(&log, b'x').is_empty() && !keys_with(&log, b'y').is_empty());
    for prefix in [b'a', b'e', b'r'] {
        assert!(keys_with(&log, prefix).is_empty(), "{}", prefix as char);
    }
    assert!(
        keys_with(&log, b'h').is_empty(),
        "subtree hashes live in the packs"
    );
    // Pack g completes the level-4 subtree g, and one level more per trailing 1 bit of g.
    for (pack, levels) in [(0, 1), (1, 2), (2, 1), (3, 3), (5, 2)] {
        let value = log.get(key(b'p', pack)).unwrap().unwrap();
        assert_eq!(completed_hashes(&value).len(), 32 * levels, "pack {pack}");
    }
}

/// The request-id fingerprint, as the store derives it.
fn fingerprint(request_id: &str) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(b"sworn.request-id\0")
        .chain_update(request_id.as_bytes())
        .finalize();
    digest[..8].try_into().unwrap()
}

#[test]
fn an_index_record_naming_another_entry_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.request_memtable = 2;
    {
        let ledger = Ledger::open(cfg).unwrap();
        for i in 0..5 {
            ledger.append(request(&format!("x-{i}"))).unwrap();
        }
    }
    let run_keys = |run: u64| {
        let mut chunk = vec![b'x'];
        chunk.extend_from_slice(&run.to_be_bytes());
        chunk.extend_from_slice(&0u32.to_be_bytes());
        (chunk, key(b'y', run))
    };
    {
        // A run whose only record says "ghost" is entry 1, as a fingerprint collision would.
        let db = raw_db(dir.path());
        let log = db.open_tree("log").unwrap();
        let (chunk, manifest) = run_keys(1_000);
        let mut record = fingerprint("ghost").to_vec();
        record.extend_from_slice(&1u64.to_be_bytes());
        log.insert(chunk, record).unwrap();
        let mut fences = vec![0u8];
        fences.extend_from_slice(&fingerprint("ghost"));
        log.insert(manifest, fences).unwrap();
        db.flush().unwrap();
    }
    {
        let ledger = Ledger::open(config(dir.path())).unwrap();
        assert_eq!(ledger.index_of("ghost").unwrap(), None);
        assert!(ledger.receipt_by_request_id("ghost").unwrap().is_none());
        assert!(matches!(
            ledger.erase("ghost"),
            Err(StoreError::NotFound { .. })
        ));
        let r = ledger.append(request("ghost")).unwrap();
        assert_eq!(r.entry.index, 5);
        assert_eq!(ledger.index_of("ghost").unwrap(), Some(5));
        for i in 0..5 {
            assert_eq!(ledger.index_of(&format!("x-{i}")).unwrap(), Some(i));
        }
    }
    {
        // A chunk that is not whole records is damage, reported as such.
        let db = raw_db(dir.path());
        let log = db.open_tree("log").unwrap();
        let (chunk, _) = run_keys(1_000);
        log.insert(chunk, &[0u8; 15][..]).unwrap();
        db.flush().unwrap();
    }
    let ledger = Ledger::open(config(dir.path())).unwrap();
    assert!(matches!(
        ledger.index_of("x-2"),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn damaged_entry_rows_are_typed_errors_not_wrong_bodies() {
    let damaged_store = |memtable: usize| {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.request_memtable = memtable;
        let ledger = Ledger::open(cfg).unwrap();
        for i in 0..20 {
            ledger.append(request(&format!("d-{i}"))).unwrap();
        }
        drop(ledger);
        damage(dir.path());
        dir
    };
    // The request-id index has all 20 in runs: opening reads no entry.
    let dir = damaged_store(4);
    let ledger = Ledger::open(config(dir.path())).unwrap();
    for index in 0..20 {
        match ledger.entry(index) {
            Err(StoreError::Corrupt { .. }) if [1, 2, 17].contains(&index) => {}
            Ok(Some(_)) if ![1, 2, 17].contains(&index) => {}
            other => panic!("entry {index}: got {other:?}"),
        }
    }
    // The index's memtable holds all 20, rebuilt on open from the bodies: a damaged one
    // stops the open, naming it.
    let dir = damaged_store(1_000);
    match Ledger::open(config(dir.path())) {
        Err(StoreError::Corrupt { what }) => assert!(what.contains("entry 1"), "{what}"),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

/// Damages entries 1 and 2 (pack 0, full) and 17 (the open pack) of a 20-entry store.
fn damage(path: &Path) {
    {
        let db = raw_db(path);
        let log = db.open_tree("log").unwrap();
        let stored = log.get(key(b'p', 0)).unwrap().unwrap();
        let (first, mut rows) = pack_rows(&stored);
        // Entry 1 (in a full pack): one byte of the compact body changed; whichever field it lands
        // in, the rebuilt body no longer matches the stored leaf hash.
        let at = rows[1].len() - 10;
        rows[1][at] ^= 0x01;
        // Entry 2 (in a full pack): a flag this version does not know.
        rows[2][65] |= 0x80;
        let mut value = pack_value(first, &rows);
        value.extend_from_slice(&completed_hashes(&stored));
        log.insert(key(b'p', 0), value).unwrap();
        // Entry 17 (in the open pack): the same unknown flag.
        let open = log.get(b"a").unwrap().unwrap();
        let (first, mut rows) = pack_rows(&open[8..]);
        rows[1][65] |= 0x80;
        let mut value = open[..8].to_vec();
        value.extend_from_slice(&pack_value(first, &rows));
        log.insert(b"a", value).unwrap();
        db.flush().unwrap();
    }
}

#[test]
fn packs_that_disagree_with_the_size_are_refused_at_open() {
    let twenty = |dir: &Path| {
        let ledger = Ledger::open(config(dir)).unwrap();
        for i in 0..20 {
            ledger.append(request(&format!("q-{i}"))).unwrap();
        }
    };
    let tamper = |change: &dyn Fn(&sled::Tree)| {
        let dir = tempfile::tempdir().unwrap();
        twenty(dir.path());
        {
            let db = raw_db(dir.path());
            let log = db.open_tree("log").unwrap();
            change(&log);
            db.flush().unwrap();
        }
        match Ledger::open(config(dir.path())) {
            Err(StoreError::Corrupt { what }) => what,
            Err(other) => panic!("expected a corruption error, got {other}"),
            Ok(_) => panic!("a tampered store opened"),
        }
    };
    // The size claims fewer entries than the open pack holds.
    let what = tamper(&|log| {
        log.insert(b"msize", &18u64.to_be_bytes()[..]).unwrap();
    });
    assert!(what.contains("does not end at the last entry"), "{what}");
    // The size claims entries that are nowhere.
    let what = tamper(&|log| {
        log.insert(b"msize", &40u64.to_be_bytes()[..]).unwrap();
    });
    assert!(what.contains("does not end at the last entry"), "{what}");
    let what = tamper(&|log| {
        log.insert(b"msize", &32u64.to_be_bytes()[..]).unwrap();
    });
    assert!(what.contains("open pack 1 lies past"), "{what}");
    // The size claims fewer entries than the full pack 0 holds.
    let what = tamper(&|log| {
        log.insert(b"msize", &15u64.to_be_bytes()[..]).unwrap();
    });
    assert!(what.contains("past the durable size"), "{what}");
    // The open pack is gone.
    let what = tamper(&|log| {
        log.remove(b"a").unwrap();
    });
    assert!(what.contains("missing"), "{what}");
    // Untouched, the same store opens.
    let dir = tempfile::tempdir().unwrap();
    twenty(dir.path());
    assert_eq!(Ledger::open(config(dir.path())).unwrap().size(), 20);
}
