//! One flipped byte in sled's files must never shorten the history silently.
//!
//! A store of a few hundred receipts, erasures and checkpoints is built and closed. Then,
//! for one offset in every 4 KiB page of every file sled keeps (`db`, `conf`, snapshots,
//! blobs; the offset inside the page drawn from a fixed seed), a fresh copy of the data
//! directory (the sled directory and the high-water record beside it) gets that one byte
//! XORed and is opened. Each trial must either open with the identical history (same size,
//! root, entries, checkpoints, every request id at its index, and the next append at the
//! next index) or refuse to open with an error that names the damage. A trial that opens
//! with anything else is a silent loss, and fails the test.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use sworn_ledger::merkle::Hash;
use sworn_ledger::{Ledger, StoreError};

use crate::store::{config, request};

/// Receipts in the store (a few hundred, in groups of varying size).
const APPENDERS: usize = 8;
const APPENDS_EACH: usize = 20;
/// Fewest trials the test accepts; offsets drawn over all files make up any shortfall.
const MIN_TRIALS: usize = 240;
const PAGE: u64 = 4096;

/// Everything a client or auditor could have seen of the closed store.
#[derive(Debug, PartialEq)]
struct History {
    size: u64,
    root: Hash,
    leaves: Vec<Hash>,
    request_ids: BTreeMap<String, u64>,
    checkpoints: Vec<String>,
}

fn history(ledger: &Ledger) -> Result<History, StoreError> {
    let size = ledger.size();
    let mut leaves = Vec::new();
    for entry in ledger.entries(0, size) {
        let entry = entry?;
        entry
            .verify(&ledger.public_key())
            .map_err(|e| StoreError::Corrupt {
                what: format!("entry {}: {e}", entry.index),
            })?;
        leaves.push(entry.leaf_hash());
    }
    let mut checkpoints = Vec::new();
    for cp in ledger.checkpoints() {
        checkpoints.push(cp?.note);
    }
    Ok(History {
        size,
        root: ledger.root(size)?,
        leaves,
        request_ids: BTreeMap::new(),
        checkpoints,
    })
}

/// Appends `APPENDERS × APPENDS_EACH` receipts from concurrent threads (so groups vary in
/// size), sealing a checkpoint every 4 of one thread's appends; returns request id → index.
fn append_some(ledger: &Ledger, session: usize) -> BTreeMap<String, u64> {
    let threads: Vec<_> = (0..APPENDERS)
        .map(|t| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..APPENDS_EACH {
                    let id = format!("flip-{session}-{t}-{i}");
                    let r = ledger.append(request(&id)).unwrap();
                    ids.push((id, r.entry.index));
                    if t == 0 && i % 4 == 3 {
                        ledger.seal_now().unwrap();
                    }
                }
                ids
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

/// Builds the store under `root/ledger` in two sessions and returns what it acknowledged.
/// sled writes its snapshot when it opens, so the first session's writes lie before the
/// last snapshot and the second's after it (where sled reads a bad checksum as a torn
/// tail).
fn build_store(root: &Path) -> History {
    let mut request_ids = BTreeMap::new();
    for session in 0..2 {
        let ledger = Ledger::open(config(root)).unwrap();
        request_ids.extend(append_some(&ledger, session));
        ledger.erase(&format!("flip-{session}-1-3")).unwrap();
        ledger.shutdown().unwrap();
        if session == 1 {
            let mut acknowledged = history(&ledger).unwrap();
            acknowledged.request_ids = request_ids;
            assert!(acknowledged.checkpoints.len() > 5);
            return acknowledged;
        }
    }
    unreachable!("two sessions")
}

/// Every regular file under `dir`, with its length, in a stable order.
fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for item in std::fs::read_dir(&d).unwrap() {
            let item = item.unwrap();
            let kind = item.file_type().unwrap();
            if kind.is_dir() {
                stack.push(item.path());
            } else if kind.is_file() {
                files.push((item.path(), item.metadata().unwrap().len()));
            }
        }
    }
    files.sort();
    files
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), &target).unwrap();
        }
    }
}

/// The offsets to flip: one in every 4 KiB page of every file (a file under a page gets
/// one), drawn inside the page from a fixed seed; then offsets spread over all bytes of
/// all files until there are `MIN_TRIALS`.
fn offsets(files: &[(PathBuf, u64)]) -> Vec<(usize, u64)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xf11b);
    let mut out = Vec::new();
    for (f, &(_, len)) in files.iter().enumerate() {
        let mut page = 0;
        while page < len {
            let end = (page + PAGE).min(len);
            out.push((f, rng.gen_range(page..end)));
            page += PAGE;
        }
    }
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    while out.len() < MIN_TRIALS {
        let mut at = rng.gen_range(0..total);
        for (f, &(_, len)) in files.iter().enumerate() {
            if at < len {
                out.push((f, at));
                break;
            }
            at -= len;
        }
    }
    out
}

fn flip(path: &Path, offset: u64, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[usize::try_from(offset).unwrap()] ^= mask;
    std::fs::write(path, bytes).unwrap();
}

/// What one trial did.
enum Outcome {
    Identical,
    Refused(String),
    /// Opened with a different history, or opened and then failed: a silent loss.
    Silent(String),
}

/// Whether an error from opening names damage to the store: sled's own checksum
/// failures, the store's checks of itself, or the high-water record's (as opposed to, say,
/// a configuration mistake, which would mean the trial tested nothing).
fn names_damage(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Corrupt { .. }
            | StoreError::Sled(sled::Error::Corruption { .. })
            | StoreError::HistoryLost { .. }
            | StoreError::HighWaterRecord { .. }
    )
}

fn judge(root: &Path, acknowledged: &History) -> Outcome {
    let ledger = match Ledger::open(config(root)) {
        Err(e) if names_damage(&e) => return Outcome::Refused(e.to_string()),
        Err(e) => panic!("an error that names no damage: {e:?}"),
        Ok(ledger) => ledger,
    };
    let found = match history(&ledger) {
        Ok(h) => h,
        Err(e) => return Outcome::Silent(format!("opened, then failed: {e}")),
    };
    if found.size != acknowledged.size {
        return Outcome::Silent(format!(
            "opened with {} entries of {}",
            found.size, acknowledged.size
        ));
    }
    let same = found.root == acknowledged.root
        && found.leaves == acknowledged.leaves
        && found.checkpoints == acknowledged.checkpoints;
    if !same {
        return Outcome::Silent("opened with a different history".into());
    }
    for (id, &index) in &acknowledged.request_ids {
        match ledger.index_of(id) {
            Ok(Some(i)) if i == index => {}
            other => return Outcome::Silent(format!("request id {id} at {index}: {other:?}")),
        }
    }
    match ledger.append(request("after-the-flip")) {
        Ok(r) if r.entry.index == acknowledged.size => Outcome::Identical,
        Ok(r) => Outcome::Silent(format!("the next append was signed at {}", r.entry.index)),
        Err(e) => Outcome::Silent(format!("opened, then the next append failed: {e}")),
    }
}

#[test]
fn a_flipped_byte_never_shortens_the_history_silently() {
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("original");
    let acknowledged = build_store(&original);
    let files = files_under(&original.join("ledger"));
    let trials = offsets(&files);
    assert!(trials.len() >= MIN_TRIALS);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x0b17);
    let (mut identical, mut refused, mut silent) = (0, Vec::new(), Vec::new());
    for (n, &(file, offset)) in trials.iter().enumerate() {
        let copy = work.path().join(format!("trial-{n}"));
        copy_dir(&original, &copy);
        let relative = files[file].0.strip_prefix(&original).unwrap();
        flip(&copy.join(relative), offset, rng.gen_range(1..=255));
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| judge(&copy, &acknowledged)))
            .unwrap_or_else(|p| {
                let what = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_default();
                Outcome::Silent(format!("panicked: {what}"))
            });
        let at = format!("{} @ {offset}", relative.display());
        match outcome {
            Outcome::Identical => identical += 1,
            Outcome::Refused(why) => refused.push(format!("{at}: {why}")),
            Outcome::Silent(why) => silent.push(format!("{at}: {why}")),
        }
        std::fs::remove_dir_all(&copy).unwrap();
    }
    println!(
        "byte flips: {} trials over {} files, {identical} identical, {} refused, {} silent",
        trials.len(),
        files.len(),
        refused.len(),
        silent.len()
    );
    for r in &refused {
        println!("  refused  {r}");
    }
    for s in &silent {
        println!("  SILENT   {s}");
    }
    assert!(
        silent.is_empty(),
        "{} silent losses: {silent:#?}",
        silent.len()
    );
    // Flips after sled's last snapshot shorten what it recovers, without an error from
    // sled: the high-water record must have caught some of them.
    assert!(
        refused.iter().any(|r| r.contains("were acknowledged")),
        "no trial shortened the store: the test no longer reaches sled's torn-tail recovery"
    );
}
