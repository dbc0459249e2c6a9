//! Durable append + sign throughput with 64 concurrent appenders (DESIGN §9 target:
//! ≥ 20,000 receipts/s on 2 cores). Every measured append returns only after its group's
//! fsync.

mod ledger_common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sworn_ledger::Ledger;

const APPENDERS: u64 = 64;

fn append_64(c: &mut Criterion) {
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    // The target directory's disk, then RAM-backed tmpfs where fsync costs ~nothing: the
    // second figure is the code's CPU ceiling, the first what the disk allows.
    let shm = std::path::Path::new("/dev/shm");
    let mut places = vec![("disk", tempfile::tempdir().expect("tempdir"))];
    if shm.is_dir() {
        places.push((
            "tmpfs",
            tempfile::tempdir_in(shm).expect("tempdir in /dev/shm"),
        ));
    }
    for (place, dir) in &places {
        bench_appends(&mut group, place, dir.path());
    }
    group.finish();
}

fn bench_appends(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    place: &str,
    path: &std::path::Path,
) {
    let ledger = Ledger::open(ledger_common::config(path)).expect("open");
    let next_id = AtomicU64::new(0);
    group.bench_function(format!("durable_append_64_appenders_{place}"), |b| {
        b.iter_custom(|iters| {
            let per_thread = iters.div_ceil(APPENDERS);
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..APPENDERS {
                    s.spawn(|| {
                        for _ in 0..per_thread {
                            let id = next_id.fetch_add(1, Ordering::Relaxed);
                            ledger
                                .append(ledger_common::request(&format!("b-{id}"), true))
                                .expect("append");
                        }
                    });
                }
            });
            // Report the time per requested iteration, counting the rounding extra.
            start
                .elapsed()
                .mul_f64(iters as f64 / (per_thread * APPENDERS) as f64)
        })
    });
}

criterion_group!(benches, append_64);
criterion_main!(benches);
