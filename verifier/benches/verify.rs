//! Offline verification throughput: a whole export audited by `audit_export` (parse,
//! canonical body, strict signature, leaf, tree, checkpoints, request-id dedup) on 1 and 2
//! threads, and one receipt bundle through the offline layers.
//!
//! `cargo bench -p sworn-verifier --bench verify`

#[path = "../tests/synthetic.rs"]
mod synthetic;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sworn_ledger::key_history::KeyHistory;
use sworn_verifier::audit::{AuditOptions, audit_export};

const ENTRIES: u64 = 20_000;

/// The allocator `sworn-verify` uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn audit_throughput(c: &mut Criterion) {
    let mut export = Vec::new();
    synthetic::write_synthetic_export(ENTRIES, &mut export).expect("in-memory write");
    let key = KeyHistory::single(
        synthetic::synthetic_key()
            .pinned(synthetic::SYNTHETIC_ORIGIN)
            .expect("valid origin"),
    );
    let mut group = c.benchmark_group("audit_export");
    group.throughput(Throughput::Elements(ENTRIES));
    group.sample_size(10);
    for threads in [1usize, 2] {
        let options = AuditOptions {
            threads,
            ..AuditOptions::default()
        };
        group.bench_function(format!("{ENTRIES}_receipts_{threads}_threads"), |b| {
            b.iter(|| {
                let outcome = audit_export(&key, &export[..], None, &options).expect("audit runs");
                assert_eq!(outcome.findings.total, 0);
                outcome.summary.receipts
            })
        });
    }
    group.finish();
}

criterion_group!(benches, audit_throughput);
criterion_main!(benches);
