//! Receipt verification throughput (DESIGN §9 target: ≥ 50,000 receipts/s): strict
//! canonical parse, leaf hash, index/origin checks and Ed25519 `verify_strict`, from the
//! JSON bundle a client holds. Measured on one thread and on every core, one receipt per
//! call and in bulk (`Receipt::verify_json_each`, what audits use).

mod ledger_common;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sworn_ledger::Ledger;
use sworn_ledger::entry::{EntryBody, Receipt};

fn verify(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = ledger_common::config(dir.path());
    cfg.sealer = false;
    let ledger = Ledger::open(cfg).expect("open");
    let bundles: Vec<Vec<u8>> = (0..1024)
        .map(|i| {
            let r = ledger
                .append(ledger_common::request(&format!("v-{i}"), true))
                .expect("append");
            serde_json::to_vec(&r.to_json()).expect("json")
        })
        .collect();
    let key = ledger.public_key();
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(10));
    let mut i = 0usize;
    group.bench_function("verify_receipt_1_thread", |b| {
        b.iter(|| {
            i = (i + 1) % bundles.len();
            Receipt::verify_json(&bundles[i], &key).expect("verifies")
        })
    });
    // The two parts of that cost, apart: the strict body parse and the signature check.
    let entries: Vec<Receipt> = bundles
        .iter()
        .map(|b| Receipt::verify_json(b, &key).expect("verifies"))
        .collect();
    group.bench_function("parse_canonical_body_only", |b| {
        b.iter(|| {
            i = (i + 1) % entries.len();
            EntryBody::parse_canonical(&entries[i].entry.body).expect("canonical")
        })
    });
    group.bench_function("ed25519_verify_strict_only", |b| {
        b.iter(|| {
            i = (i + 1) % entries.len();
            let entry = &entries[i].entry;
            key.verify(&entry.body, &entry.signature)
                .expect("signature")
        })
    });
    // The peer: ed25519-dalek's own `verify_strict`, which the pinned key's check matches.
    let dalek = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key_bytes()).expect("key");
    group.bench_function("ed25519_dalek_verify_strict_peer", |b| {
        b.iter(|| {
            i = (i + 1) % entries.len();
            let entry = &entries[i].entry;
            dalek
                .verify_strict(&entry.body, &entry.signature)
                .expect("signature")
        })
    });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    group.bench_function(format!("verify_receipt_{threads}_threads"), |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(threads);
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..threads {
                    let (bundles, key) = (&bundles, &key);
                    s.spawn(move || {
                        for j in 0..per_thread {
                            let k = ((t * per_thread + j) as usize) % bundles.len();
                            Receipt::verify_json(&bundles[k], key).expect("verifies");
                        }
                    });
                }
            });
            start
                .elapsed()
                .mul_f64(iters as f64 / (per_thread * threads) as f64)
        })
    });
    // In bulk, as an auditor verifies: 64 receipts per call, each checked on its own, sharing
    // only the final point encoding's field inversion (`Receipt::verify_json_each`).
    const BULK: usize = 64;
    for threads in [1, threads] {
        group.bench_function(format!("verify_receipts_in_bulk_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let per_thread = (iters.div_ceil(threads) as usize).div_ceil(BULK) * BULK;
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads as usize {
                        let (bundles, key) = (&bundles, &key);
                        s.spawn(move || {
                            for j in (0..per_thread).step_by(BULK) {
                                let from = (t * per_thread + j) % (bundles.len() - BULK);
                                let batch = bundles[from..from + BULK].iter().map(Vec::as_slice);
                                for verdict in Receipt::verify_json_each(batch, key) {
                                    verdict.expect("verifies");
                                }
                            }
                        });
                    }
                });
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_thread as u64 * threads) as f64)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
