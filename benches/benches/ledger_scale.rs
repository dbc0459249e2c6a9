//! The ledger at 1,000,000 entries: inclusion proof generation (target ≤ 100 µs),
//! consistency proofs, and — printed while the log is built — bytes on disk per receipt
//! without content (target ≤ 1 KiB) and resident memory as the log grows (bounded by the
//! configured cache, not by log size).
//!
//! `SWORN_BENCH_ENTRIES` overrides the size (default 1,000,000); `SWORN_BENCH_CONTENT=1`
//! appends receipts with ~800 bytes of prompt and response content each (the memory
//! figure then includes the content's rows; the disk figure includes the content).

mod ledger_common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sworn_ledger::Ledger;

const APPENDERS: u64 = 64;

fn build(ledger: &Ledger, total: u64, content: bool) {
    let next = AtomicU64::new(0);
    let reported = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..APPENDERS {
            s.spawn(|| {
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id >= total {
                        break;
                    }
                    ledger
                        .append(ledger_common::request(&format!("s-{id}"), content))
                        .expect("append");
                    let done = id + 1;
                    if done.is_multiple_of((total / 4).max(1))
                        && reported.fetch_max(done, Ordering::Relaxed) < done
                    {
                        eprintln!(
                            "ledger_scale: {done} appended, VmRSS {} KiB, {:.0} receipts/s so far",
                            sworn_benches::proc_status_kib("VmRSS:").unwrap_or(0),
                            done as f64 / start.elapsed().as_secs_f64()
                        );
                    }
                }
            });
        }
    });
    eprintln!(
        "ledger_scale: built {total} receipts in {:.1} s ({:.0} receipts/s, 64 appenders, durable)",
        start.elapsed().as_secs_f64(),
        total as f64 / start.elapsed().as_secs_f64()
    );
}

fn scale(c: &mut Criterion) {
    let total: u64 = std::env::var("SWORN_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = ledger_common::config(dir.path());
    let cache = cfg.cache_bytes;
    let content = std::env::var("SWORN_BENCH_CONTENT").is_ok_and(|v| v == "1");
    let ledger = Ledger::open(cfg).expect("open");
    build(&ledger, total, content);
    ledger.seal_now().expect("seal");
    let disk = sworn_benches::dir_bytes(dir.path());
    eprintln!(
        "ledger_scale: {disk} bytes on disk for {total} receipts {} content = {:.0} bytes/receipt; \
         peak RSS (VmHWM) {} KiB with a {} MiB sled cache",
        if content { "with" } else { "without" },
        disk as f64 / total as f64,
        sworn_benches::proc_status_kib("VmHWM:").unwrap_or(0),
        cache / (1024 * 1024)
    );
    let size = ledger.size();
    let mut group = c.benchmark_group("ledger");
    group.measurement_time(Duration::from_secs(10));
    // A fixed pseudo-random walk over indices (no cache-friendly order).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next_index = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % size
    };
    group.bench_function(format!("inclusion_proof_at_{size}"), |b| {
        b.iter(|| ledger.inclusion_proof(next_index(), size).expect("proof"))
    });
    group.bench_function(format!("consistency_proof_to_{size}"), |b| {
        b.iter(|| {
            ledger
                .consistency_proof(1 + next_index() % (size - 1), size)
                .expect("proof")
        })
    });
    group.finish();
}

criterion_group!(benches, scale);
criterion_main!(benches);
