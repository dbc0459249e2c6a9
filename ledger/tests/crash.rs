//! Crash recovery: a child process appends from several threads and is SIGKILLed at
//! random moments. After each kill the store is reopened: every index the child reported
//! durable is present with the same leaf hash, the stored tree matches a tree recomputed
//! from the entries, checkpoints still verify, and appends continue.
//!
//! The child is this test binary re-executed on the ignored test `crash::crash_child`
//! with `SWORN_CRASH_DIR` set. It prints `DURABLE <index> <leaf hash> <request id>` only
//! after `append` returned. Its request-id index writes a run every 16 appends and merges
//! runs every 64, 256, 1,024, so kills also land inside index flushes and merges; after
//! each, every entry's request id must lead back to it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use rand::{Rng, SeedableRng};
use sworn_ledger::Ledger;
use sworn_ledger::checkpoint::SignedCheckpoint;
use sworn_ledger::entry::EntryBody;
use sworn_ledger::merkle::{Hash, MemoryTree, root, verify_inclusion};

use crate::store::{ORIGIN, config, request};

const ROUNDS: u32 = 22;
const CHILD_THREADS: usize = 8;
/// Appends per child thread if it is never killed (keeps a broken parent from hanging).
const CHILD_APPENDS_PER_THREAD: usize = 2_000;

#[test]
#[ignore = "child process of crash_recovery_after_sigkill; does nothing when run by hand"]
fn crash_child() {
    let Ok(dir) = std::env::var("SWORN_CRASH_DIR") else {
        return;
    };
    let round = std::env::var("SWORN_CRASH_ROUND").unwrap_or_default();
    let mut cfg = config(std::path::Path::new(&dir));
    cfg.sealer = true;
    cfg.seal_every_entries = 25;
    cfg.request_memtable = 16;
    let ledger = Ledger::open(cfg).unwrap();
    let threads: Vec<_> = (0..CHILD_THREADS)
        .map(|t| {
            let ledger = ledger.clone();
            let round = round.clone();
            std::thread::spawn(move || {
                for i in 0..CHILD_APPENDS_PER_THREAD {
                    let id = format!("c{round}-{t}-{i}");
                    let r = ledger.append(request(&id)).unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "DURABLE {} {} {id}", r.entry.index, r.leaf_hash).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn check_store(dir: &std::path::Path, reported: &BTreeMap<u64, (Hash, String)>) -> u64 {
    let ledger = Ledger::open(config(dir)).unwrap();
    let size = ledger.size();
    if let Some((&max, _)) = reported.last_key_value() {
        assert!(
            size > max,
            "recovered size {size} lost reported index {max}"
        );
    }
    let mut tree = MemoryTree::new();
    for entry in ledger.entries(0, size) {
        let entry = entry.unwrap();
        entry.verify(&ledger.public_key()).unwrap();
        if let Some((h, _)) = reported.get(&entry.index) {
            assert_eq!(entry.leaf_hash(), *h, "entry {} changed", entry.index);
        }
        // Every receipt, reported or not, is found by its request id.
        if let Ok(EntryBody::Receipt(body)) = EntryBody::parse_canonical(&entry.body) {
            assert_eq!(
                ledger.index_of(&body.request_id).unwrap(),
                Some(entry.index),
                "request id {}",
                body.request_id
            );
        }
        tree.push(entry.leaf_hash());
    }
    assert_eq!(ledger.root(size).unwrap(), root(&tree, size).unwrap());
    for (&i, (_, id)) in reported {
        assert_eq!(ledger.index_of(id).unwrap(), Some(i), "reported {id}");
    }
    for (&i, (h, _)) in reported.iter().step_by(97) {
        let p = ledger.inclusion_proof(i, size).unwrap();
        verify_inclusion(h, i, size, &p.path, &ledger.root(size).unwrap()).unwrap();
    }
    for cp in ledger.checkpoints() {
        let cp = cp.unwrap();
        SignedCheckpoint::verify(&cp.note, &ledger.public_key(), ORIGIN).unwrap();
        assert_eq!(cp.checkpoint.root, root(&tree, cp.checkpoint.size).unwrap());
    }
    size
}

#[test]
fn crash_recovery_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);
    let mut reported: BTreeMap<u64, (Hash, String)> = BTreeMap::new();
    let mut kills = 0;
    for round in 0..ROUNDS {
        let kill_after: usize = rng.gen_range(1..120);
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SWORN_CRASH_DIR", dir.path())
            .env("SWORN_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("DURABLE ") else {
                continue;
            };
            let mut fields = rest.split(' ');
            let (Some(index), Some(hash), Some(id)) = (fields.next(), fields.next(), fields.next())
            else {
                panic!("bad child line {line:?}");
            };
            let index: u64 = index.parse().unwrap();
            let hash = Hash::from_hex(hash).unwrap();
            assert!(
                reported.insert(index, (hash, id.to_string())).is_none(),
                "index {index} reported twice"
            );
            seen += 1;
            if seen == kill_after {
                child.kill().unwrap(); // SIGKILL on Unix.
                kills += 1;
                break;
            }
        }
        child.wait().unwrap();
        let size = check_store(dir.path(), &reported);
        assert!(size >= reported.len() as u64);
    }
    assert_eq!(kills, ROUNDS, "every round ended in a SIGKILL");
    let ledger = Ledger::open(config(dir.path())).unwrap();
    let before = ledger.size();
    let r = ledger.append(request("after-crashes")).unwrap();
    assert_eq!(r.entry.index, before);
    println!(
        "crash test: {ROUNDS} SIGKILLs, {} reported-durable entries checked, final size {}",
        reported.len(),
        before + 1
    );
}
