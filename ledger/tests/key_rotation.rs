//! Key rotation in the store, on disk: the two-step record, what a reopened store signs
//! with and refuses, and that old and new signatures verify under the history.

use sworn_ledger::entry::Receipt;
use sworn_ledger::keys::LogKey;
use sworn_ledger::{Ledger, LedgerConfig, StoreError};

use crate::store::{ORIGIN, config, request, seed_key};

fn new_key() -> LogKey {
    LogKey::from_seed([6; 32])
}

fn config_with(dir: &std::path::Path, key: LogKey) -> LedgerConfig {
    let mut c = LedgerConfig::new(dir.join("ledger"), ORIGIN, key);
    c.sealer = false;
    c
}

/// A store of 5 entries sealed at 5, rotated to `new_key` from seq 3 (begun only).
fn begun(dir: &std::path::Path) -> Vec<Receipt> {
    let ledger = Ledger::open(config(dir)).unwrap();
    let old: Vec<Receipt> = (0..5)
        .map(|i| ledger.append(request(&format!("old-{i}"))).unwrap())
        .collect();
    let pinned_new = new_key().pinned(ORIGIN).unwrap();
    // Not every entry is sealed yet: refused.
    assert!(matches!(
        ledger.begin_key_rotation(&pinned_new, 3),
        Err(StoreError::KeyRotation { .. })
    ));
    ledger.seal_now().unwrap().unwrap();
    // The current key again: refused.
    assert!(matches!(
        ledger.begin_key_rotation(&seed_key().pinned(ORIGIN).unwrap(), 3),
        Err(StoreError::KeyRotation { .. })
    ));
    let epoch = ledger.begin_key_rotation(&pinned_new, 3).unwrap();
    assert_eq!((epoch.from_size, epoch.from_seq), (5, 3));
    assert_eq!(ledger.pending_key_rotation().unwrap(), Some(epoch));
    old
}

#[test]
fn a_pending_rotation_keeps_the_log_from_opening_until_completed_or_aborted() {
    let dir = tempfile::tempdir().unwrap();
    begun(dir.path());
    // Neither key opens it for serving while the rotation is pending.
    for key in [seed_key(), new_key()] {
        let err = Ledger::open(config_with(dir.path(), key)).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::KeyRotationPending {
                    from_size: 5,
                    from_seq: 3,
                    ..
                }
            ),
            "{err}"
        );
    }
    // The rotation command opens it with the old key and aborts.
    let mut c = config(dir.path());
    c.allow_pending_key_rotation = true;
    let ledger = Ledger::open(c).unwrap();
    assert!(ledger.abort_key_rotation().unwrap().is_some());
    drop(ledger);
    // Aborted: the old key serves on, the new one is unknown.
    let ledger = Ledger::open(config(dir.path())).unwrap();
    assert!(!ledger.key_history().rotated());
    drop(ledger);
    assert!(matches!(
        Ledger::open(config_with(dir.path(), new_key())),
        Err(StoreError::IdentityMismatch { .. })
    ));
}

#[test]
fn after_a_rotation_the_new_key_signs_and_the_retired_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let old = begun(dir.path());
    let mut c = config(dir.path());
    c.allow_pending_key_rotation = true;
    let ledger = Ledger::open(c).unwrap();
    let history = ledger.complete_key_rotation().unwrap();
    assert_eq!(history.epochs().len(), 2);
    assert!(ledger.pending_key_rotation().unwrap().is_none());
    drop(ledger);

    // The retired key no longer opens the log.
    let err = Ledger::open(config(dir.path())).unwrap_err();
    assert!(
        matches!(err, StoreError::RetiredKey { from_size: 5, .. }),
        "{err}"
    );

    // The new key does; the old checkpoint (signed by the old key) still reads.
    let ledger = Ledger::open(config_with(dir.path(), new_key())).unwrap();
    let keys = ledger.key_history().clone();
    assert_eq!(&keys, &history);
    assert_eq!(ledger.public_key(), new_key().pinned(ORIGIN).unwrap());
    assert_eq!(
        ledger.latest_checkpoint().unwrap().unwrap().checkpoint.size,
        5
    );
    let new: Vec<Receipt> = (0..3)
        .map(|i| ledger.append(request(&format!("new-{i}"))).unwrap())
        .collect();
    let sealed = ledger.seal_now().unwrap().unwrap();
    assert_eq!(sealed.checkpoint.size, 8);
    // The new checkpoint is the new key's; the old one stays the old key's.
    assert_eq!(keys.verify_checkpoint(&sealed.note).unwrap().1.from_size, 5);
    let old_cp = ledger.checkpoint_at(5).unwrap().unwrap();
    assert_eq!(keys.verify_checkpoint(&old_cp.note).unwrap().1.from_size, 0);
    assert!(
        sworn_ledger::checkpoint::SignedCheckpoint::verify(
            &sealed.note,
            &seed_key().pinned(ORIGIN).unwrap(),
            ORIGIN
        )
        .is_err()
    );

    // Every receipt verifies under the key its index takes, and only under it.
    for r in old.iter().chain(&new) {
        let json = serde_json::to_vec(&r.to_json()).unwrap();
        let key = keys.key_for_entry(r.entry.index);
        Receipt::verify_json(&json, key).unwrap();
        let other = if r.entry.index < 5 {
            new_key().pinned(ORIGIN).unwrap()
        } else {
            seed_key().pinned(ORIGIN).unwrap()
        };
        assert!(Receipt::verify_json(&json, &other).is_err());
    }
    drop(ledger);
    // Reopened: the high-water record (named by the first key) and both checkpoints hold.
    let ledger = Ledger::open(config_with(dir.path(), new_key())).unwrap();
    assert_eq!(ledger.size(), 8);
    assert_eq!(ledger.key_history(), &history);
}
