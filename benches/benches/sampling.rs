//! Host-side token selection on one SmolLM2-sized row (49,152 logits): greedy argmax and
//! seeded sampling at the shapes requests use. Serving runs one of these per sequence per
//! decode step, on the host, after the logits leave the device (BENCHMARKS.md, Engine).
//!
//! Run: `cargo bench -p sworn-benches --bench sampling`.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use sworn_service::engine::sampling::{SamplingRequest, argmax, sample};

const VOCAB: usize = 49_152;

/// Logits spread over [-10, 10) by xorshift, so no candidate dominates (the slow case
/// for top-p, which must rank far before its mass is reached).
fn row() -> Vec<f32> {
    let mut x = 0x1234_5678u64;
    (0..VOCAB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 * 20.0 - 10.0
        })
        .collect()
}

fn sampling(c: &mut Criterion) {
    let logits = row();
    let mut group = c.benchmark_group("sampling");
    group.bench_function("argmax_49152", |b| {
        b.iter(|| argmax(black_box(&logits)).expect("finite row"))
    });
    let shapes = [
        ("temperature_1", Some(1.0), None, None),
        ("temperature_0.7_top_p_0.9", Some(0.7), Some(0.9), None),
        ("temperature_1_top_k_40", Some(1.0), None, Some(40)),
    ];
    for (name, temperature, top_p, top_k) in shapes {
        let params = SamplingRequest {
            temperature,
            top_p,
            top_k,
            seed: Some(7),
            ..Default::default()
        }
        .validate(u32::MAX)
        .expect("valid request");
        let mut step = 0u64;
        group.bench_function(format!("sample_49152_{name}"), |b| {
            b.iter(|| {
                step += 1;
                sample(black_box(&logits), &params, step).expect("finite row")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sampling);
criterion_main!(benches);
