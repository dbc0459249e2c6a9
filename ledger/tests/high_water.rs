//! The high-water record beside the store: a missing, damaged or foreign record, or a
//! store that holds less than it acknowledged or signed, refuses to start and says why; a
//! store ahead of its record (a crash between sled's flush and the record's) and a store
//! written before records open.

use std::path::Path;

use sworn_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use sworn_ledger::merkle::Hash;
use sworn_ledger::{Ledger, StoreError};

use crate::layout::raw_db;
use crate::store::{config, request, seed_key};

/// Opens the ledger in `dir` and appends receipts `first..first + count`, sealing a
/// checkpoint after them when `seal`.
fn append(dir: &Path, first: u64, count: u64, seal: bool) -> u64 {
    let ledger = Ledger::open(config(dir)).unwrap();
    for i in first..first + count {
        ledger.append(request(&format!("hw-{i}"))).unwrap();
    }
    if seal {
        ledger.seal_now().unwrap().unwrap();
    }
    ledger.size()
}

fn record_path(dir: &Path) -> std::path::PathBuf {
    dir.join("ledger.high-water")
}

fn refusal(dir: &Path) -> StoreError {
    match Ledger::open(config(dir)) {
        Ok(ledger) => panic!("opened with {} entries", ledger.size()),
        Err(e) => e,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &to.join(item.file_name()));
        } else {
            std::fs::copy(item.path(), to.join(item.file_name())).unwrap();
        }
    }
}

/// Replaces the sled directory in `dir` with the one saved in `backup`.
fn restore_sled_dir(backup: &Path, dir: &Path) {
    std::fs::remove_dir_all(dir.join("ledger")).unwrap();
    copy_dir(backup, &dir.join("ledger"));
}

#[test]
fn the_record_lies_beside_the_sled_directory_and_opening_keeps_the_history() {
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), 0, 20, true);
    let ledger = Ledger::open(config(dir.path())).unwrap();
    assert_eq!(ledger.high_water_path(), record_path(dir.path()));
    assert_eq!(
        std::fs::metadata(record_path(dir.path())).unwrap().len(),
        8192
    );
    assert_eq!(ledger.size(), 20);
    assert_eq!(ledger.append(request("hw-20")).unwrap().entry.index, 20);
    drop(ledger);
    // The configuration can name another place.
    let elsewhere = tempfile::tempdir().unwrap();
    let mut cfg = config(elsewhere.path());
    cfg.high_water = Some(elsewhere.path().join("records").join("log.hw"));
    std::fs::create_dir(elsewhere.path().join("records")).unwrap();
    let ledger = Ledger::open(cfg).unwrap();
    ledger.append(request("x")).unwrap();
    assert_eq!(
        ledger.high_water_path(),
        elsewhere.path().join("records/log.hw")
    );
    assert!(ledger.high_water_path().exists());
    assert!(!record_path(elsewhere.path()).exists());
}

#[test]
fn a_store_that_lost_acknowledged_entries_refuses_to_start_and_names_them() {
    // An operator restores a backup of the sled directory older than the record.
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    append(dir.path(), 0, 12, false);
    copy_dir(&dir.path().join("ledger"), backup.path());
    append(dir.path(), 12, 9, false);
    restore_sled_dir(backup.path(), dir.path());
    let e = refusal(dir.path());
    let StoreError::HistoryLost { what } = &e else {
        panic!("expected HistoryLost, got {e:?}");
    };
    let path = record_path(dir.path());
    assert!(
        what.contains("the store holds 12 entries, but 21 were acknowledged")
            && what.contains(&format!("high-water record at {}", path.display()))
            && what.contains("entries 12..21 are lost")
            && what.contains("restore the data directory from a backup, do not delete the record"),
        "{e}"
    );
    // Refusing changed nothing: it refuses again, and the record still says 21.
    assert!(matches!(
        refusal(dir.path()),
        StoreError::HistoryLost { .. }
    ));
    // Deleting the record does not get past it either.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        refusal(dir.path()),
        StoreError::HighWaterRecord { .. }
    ));
}

#[test]
fn a_store_ahead_of_its_record_opens_and_the_record_catches_up() {
    // A crash after sled's flush and before the record's leaves the store ahead.
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    append(dir.path(), 0, 10, false);
    copy_dir(&dir.path().join("ledger"), backup.path());
    let old_record = std::fs::read(record_path(dir.path())).unwrap();
    append(dir.path(), 10, 10, true);
    std::fs::write(record_path(dir.path()), &old_record).unwrap();
    let ledger = Ledger::open(config(dir.path())).unwrap();
    assert_eq!(ledger.size(), 20);
    assert_eq!(ledger.append(request("hw-20")).unwrap().entry.index, 20);
    drop(ledger);
    // Opening recorded the 20 it found (and the 21st was recorded before it returned):
    // a store with 10 is now refused.
    restore_sled_dir(backup.path(), dir.path());
    let e = refusal(dir.path());
    assert!(
        e.to_string()
            .contains("the store holds 10 entries, but 21 were acknowledged"),
        "{e}"
    );
}

#[test]
fn a_missing_or_changed_signed_checkpoint_refuses_to_start() {
    let tamper = |change: &dyn Fn(&sled::Tree, u64)| {
        let dir = tempfile::tempdir().unwrap();
        let size = append(dir.path(), 0, 9, true);
        {
            let db = raw_db(dir.path());
            change(&db.open_tree("checkpoints").unwrap(), size);
            db.flush().unwrap();
        }
        refusal(dir.path()).to_string()
    };
    let what = tamper(&|tree, size| {
        tree.remove(size.to_be_bytes()).unwrap();
    });
    assert!(
        what.contains("the checkpoint signed at size 9 is missing from the store")
            && what.contains("ledger.high-water"),
        "{what}"
    );
    // Another checkpoint at the same size, validly signed by the log key, is not the one
    // that was signed and published.
    let what = tamper(&|tree, size| {
        let other = SignedCheckpoint::sign(
            Checkpoint::new(crate::store::ORIGIN, size, Hash([9; 32])),
            &seed_key(),
        )
        .unwrap();
        tree.insert(size.to_be_bytes(), other.note.as_bytes())
            .unwrap();
    });
    assert!(
        what.contains("the store's checkpoint at size 9 is not the one signed"),
        "{what}"
    );
}

#[test]
fn another_history_of_the_same_size_refuses_to_start() {
    // Two stores of the same log (origin and key) with different entries: one's record
    // beside the other's sled directory.
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    append(ours.path(), 0, 16, false);
    let ledger = Ledger::open(config(theirs.path())).unwrap();
    for i in 0..16 {
        ledger.append(request(&format!("other-{i}"))).unwrap();
    }
    drop(ledger);
    std::fs::copy(record_path(ours.path()), record_path(theirs.path())).unwrap();
    let what = refusal(theirs.path()).to_string();
    assert!(
        what.contains("the store's first 16 entries do not hash to the root"),
        "{what}"
    );
}

#[test]
fn a_deleted_damaged_or_foreign_record_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), 0, 5, true);
    let path = record_path(dir.path());
    let good = std::fs::read(&path).unwrap();

    std::fs::remove_file(&path).unwrap();
    let e = refusal(dir.path());
    assert!(
        matches!(&e, StoreError::HighWaterRecord { path: p, reason }
            if *p == path && reason.contains("it is missing")),
        "{e}"
    );
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");

    // Both copies damaged: refused as damaged.
    let mut bad = good.clone();
    bad[60] ^= 0x01;
    bad[4096 + 60] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    let e = refusal(dir.path());
    assert!(
        matches!(&e, StoreError::HighWaterRecord { reason, .. }
            if reason.contains("damaged") && reason.contains("checksum")),
        "{e}"
    );
    // Cut short: damaged too.
    std::fs::write(&path, &good[..4096]).unwrap();
    let e = refusal(dir.path());
    assert!(e.to_string().contains("damaged"), "{e}");

    // A record of another log (another key) beside this store.
    let other = tempfile::tempdir().unwrap();
    let mut cfg = config(other.path());
    cfg.key = sworn_ledger::keys::LogKey::from_seed([6; 32]);
    let ledger = Ledger::open(cfg).unwrap();
    ledger.append(request("x")).unwrap();
    drop(ledger);
    std::fs::copy(record_path(other.path()), &path).unwrap();
    let e = refusal(dir.path());
    assert!(e.to_string().contains("belongs to another log"), "{e}");

    // The good record back: the store opens as it was.
    std::fs::write(&path, &good).unwrap();
    assert_eq!(Ledger::open(config(dir.path())).unwrap().size(), 5);
}

#[test]
fn one_damaged_copy_of_the_record_is_survived_and_rewritten() {
    // A write torn by a power loss spoils one copy; the other holds the record before it.
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), 0, 5, false);
    let path = record_path(dir.path());
    let seq_at = |bytes: &[u8], copy: usize| {
        u64::from_be_bytes(bytes[copy + 8..copy + 16].try_into().unwrap())
    };
    let bytes = std::fs::read(&path).unwrap();
    // The older copy first: opening finds nothing new to record, and must still rewrite
    // the damaged copy, or damaging the other one next leaves no record.
    let mut copies = [0, 4096];
    copies.sort_by_key(|&c| seq_at(&bytes, c));
    for copy in copies {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[copy + 20] ^= 0x80;
        std::fs::write(&path, &bytes).unwrap();
        let ledger = Ledger::open(config(dir.path())).unwrap();
        assert_eq!(ledger.size(), 5);
    }
    assert_eq!(Ledger::open(config(dir.path())).unwrap().size(), 5);
}

#[test]
fn a_store_written_before_records_gets_one_once() {
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), 0, 7, true);
    let path = record_path(dir.path());
    // What a store written before this version looks like: no record, no marker.
    std::fs::remove_file(&path).unwrap();
    {
        let db = raw_db(dir.path());
        db.open_tree("log").unwrap().remove(b"mhigh_water").unwrap();
        db.flush().unwrap();
    }
    let ledger = Ledger::open(config(dir.path())).unwrap();
    assert_eq!(ledger.size(), 7);
    assert!(path.exists(), "the record was created");
    ledger.append(request("hw-7")).unwrap();
    drop(ledger);
    // From now on the store needs its record.
    std::fs::remove_file(&path).unwrap();
    let e = refusal(dir.path());
    assert!(e.to_string().contains("it is missing"), "{e}");
}

#[test]
fn a_record_without_its_marker_is_completed_not_refused() {
    // A crash after the record is created and before the store's marker is flushed.
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), 0, 3, false);
    {
        let db = raw_db(dir.path());
        db.open_tree("log").unwrap().remove(b"mhigh_water").unwrap();
        db.flush().unwrap();
    }
    assert_eq!(Ledger::open(config(dir.path())).unwrap().size(), 3);
    let db = raw_db(dir.path());
    assert!(
        db.open_tree("log")
            .unwrap()
            .contains_key(b"mhigh_water")
            .unwrap()
    );
}

#[test]
fn an_emptied_store_is_not_taken_for_a_new_one() {
    // sled recovers nothing at all (not even the log's identity): the record still says
    // what was acknowledged.
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), 0, 4, false);
    std::fs::remove_dir_all(dir.path().join("ledger")).unwrap();
    let e = refusal(dir.path());
    assert!(
        e.to_string()
            .contains("the store holds 0 entries, but 4 were acknowledged"),
        "{e}"
    );
}
