//! Token selection on SmolLM2-sized rows (49,152 logits): greedy argmax and seeded
//! sampling of one row on the host at the shapes requests use; and a decode step's batch
//! of sampled rows drawn the engine's two ways, whole rows on the host or reduced where
//! the logits are (`engine::runner::draw_tokens`; on this machine's CPU tensors here, on
//! a GPU in `benches/gpu`). BENCHMARKS.md, Engine.
//!
//! Run: `cargo bench -p sworn-benches --bench sampling`.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use sworn_service::engine::runner::draw_tokens;
use sworn_service::engine::sampling::{SamplingParams, SamplingRequest, argmax, sample};

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

fn params(temperature: f64, top_p: Option<f64>, top_k: Option<u64>, seed: u64) -> SamplingParams {
    SamplingRequest {
        temperature: Some(temperature),
        top_p,
        top_k,
        seed: Some(seed),
        ..Default::default()
    }
    .validate(u32::MAX)
    .expect("valid request")
}

/// A batch of rows: the spread row, each shifted so that the rows differ.
fn batch(rows: usize) -> tch::Tensor {
    let base = tch::Tensor::from_slice(&row()).view([1, VOCAB as i64]);
    let shifts = tch::Tensor::arange(rows as i64, (tch::Kind::Float, tch::Device::Cpu))
        .view([rows as i64, 1])
        * 0.01;
    (base + shifts).contiguous()
}

fn drawing(c: &mut Criterion) {
    let mut group = c.benchmark_group("draw");
    let shapes = [
        ("temperature_1", 1.0, None, None),
        ("temperature_0.7_top_p_0.9", 0.7, Some(0.9), None),
        ("temperature_1_top_k_40", 1.0, None, Some(40)),
    ];
    for rows in [1usize, 16, 64] {
        let logits = batch(rows);
        for (name, temperature, top_p, top_k) in shapes {
            let all: Vec<SamplingParams> = (0..rows as u64)
                .map(|i| params(temperature, top_p, top_k, i))
                .collect();
            for (way, reduce) in [("host", false), ("reduced", true)] {
                let mut step = 0u64;
                group.bench_function(format!("{rows}x49152_{name}_{way}"), |b| {
                    b.iter(|| {
                        step += 1;
                        let which: Vec<(&SamplingParams, u64)> =
                            all.iter().map(|p| (p, step)).collect();
                        draw_tokens(black_box(&logits), &which, reduce).expect("finite rows")
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, sampling, drawing);
criterion_main!(benches);
