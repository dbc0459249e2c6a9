//! Engine throughput on the CPU with the default model (SmolLM2-135M-Instruct, Q4_1 GGUF,
//! dense or kept 4-bit): load time, prefill tokens/s, and decode tokens/s at batch 1 and
//! batch 16 (DESIGN §9 compares these with llama.cpp on the same file), then the engine
//! side of the served load (`benches/peer/cpu_peer.sh`): 1 or 16 prompts prefilled and
//! decoded to 128 tokens each, output tokens/s. Peak resident memory and the KV cache size
//! are printed at the end.
//!
//! Run: `cargo bench -p sworn-benches --bench engine` (model path: `SWORN_BENCH_MODEL`,
//! default `models/SmolLM2-135M-Instruct.Q4_1.gguf`; threads: `SWORN_BENCH_THREADS`,
//! default all cores; dtype: `SWORN_BENCH_DTYPE=bf16`, default float32; weights:
//! `SWORN_BENCH_WEIGHTS=int4` keeps the file's 4-bit weights 4-bit, default dense).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sworn_service::engine::kv_cache::KvSlots;
use sworn_service::engine::model::{DecodeInput, LlamaModel, Logits};
use sworn_service::engine::runner::{
    DeviceChoice, DtypeChoice, Engine, EngineOptions, WeightsChoice,
};
use sworn_service::engine::sampling::argmax;

/// Context allocated per slot: room for the prompt plus a long decode run.
const MAX_CTX: usize = 512;
/// Prompt length for the prefill benchmark and for seeding decode slots.
const PROMPT: usize = 128;
/// Concurrent sequences in the batched decode benchmark (DESIGN §9's "16 parallel").
const BATCH: usize = 16;
/// Tokens generated per request in the served-load round (the load generator's default).
const OUTPUT: usize = 128;

fn model_path() -> Option<PathBuf> {
    let path = std::env::var_os("SWORN_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if path.is_file() || path.is_dir() {
        Some(path)
    } else {
        eprintln!(
            "engine bench skipped: {} absent (run `make setup`)",
            path.display()
        );
        None
    }
}

fn threads() -> i32 {
    std::env::var("SWORN_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as i32))
}

fn prompt(vocab: usize, len: usize, salt: usize) -> Vec<u32> {
    (0..len)
        .map(|i| ((i * 7919 + salt * 104_729 + 11) % vocab) as u32)
        .collect()
}

/// Peak resident set size of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    sworn_benches::proc_status_kib("VmHWM:").map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

/// CPU time (user + system) this process has used, from /proc/self/stat (clock ticks,
/// assumed 100 Hz as on every Linux configuration we run).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Wall and CPU time of `f`, for throughput figures that a loaded machine distorts less.
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    f();
    (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu)
}

/// Prefills a prompt into each of `slots` and returns each one's greedy first token.
fn prefill_all(model: &LlamaModel, kv: &mut KvSlots, slots: &[usize], salt: usize) -> Vec<u32> {
    let vocab = model.config().vocab_size;
    let mut next = Vec::with_capacity(slots.len());
    for (i, &slot) in slots.iter().enumerate() {
        let logits = model
            .prefill(kv, slot, &prompt(vocab, PROMPT, salt + i), Logits::Last)
            .expect("prefill");
        let row = Vec::<f32>::try_from(logits.flatten(0, -1)).expect("logits");
        next.push(argmax(&row).expect("argmax"));
    }
    next
}

/// Runs `steps` greedy decode steps over `slots`, truncating each slot back to its
/// prompt when it would fill up, so every step costs about the same.
fn decode_steps(
    model: &LlamaModel,
    kv: &mut KvSlots,
    slots: &[usize],
    next: &mut [u32],
    steps: u64,
) {
    let vocab = model.config().vocab_size;
    for _ in 0..steps {
        for &slot in slots {
            if kv.len(slot).expect("slot") + 1 >= kv.max_ctx() {
                kv.truncate(slot, PROMPT).expect("truncate");
            }
        }
        let batch: Vec<DecodeInput> = slots
            .iter()
            .zip(next.iter())
            .map(|(&slot, &token)| DecodeInput { slot, token })
            .collect();
        let logits = model.decode(kv, &batch).expect("decode");
        let rows = Vec::<f32>::try_from(logits.flatten(0, -1)).expect("logits");
        for (row, token) in rows.chunks_exact(vocab).zip(next.iter_mut()) {
            *token = argmax(row).expect("argmax");
        }
    }
}

fn engine_benches(c: &mut Criterion) {
    let Some(path) = model_path() else { return };
    tch::set_num_threads(threads());
    let dtype = match std::env::var("SWORN_BENCH_DTYPE").as_deref() {
        Ok("bf16") => DtypeChoice::BFloat16,
        _ => DtypeChoice::Float32,
    };
    let weights = match std::env::var("SWORN_BENCH_WEIGHTS").as_deref() {
        Ok("int4") => WeightsChoice::Int4,
        _ => WeightsChoice::Dense,
    };
    let options = EngineOptions {
        device: DeviceChoice::Cpu,
        dtype,
        weights,
        slots: BATCH,
        max_ctx: MAX_CTX,
        ..EngineOptions::default()
    };

    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("load_gguf", |b| {
        b.iter(|| {
            Engine::load(
                &path,
                &EngineOptions {
                    slots: 1,
                    ..options
                },
            )
            .expect("load")
        })
    });

    let started = Instant::now();
    // The engine's own cache is one slot; the benchmark allocates the batch's.
    let engine = Engine::load(
        &path,
        &EngineOptions {
            slots: 1,
            ..options
        },
    )
    .expect("load");
    let load_secs = started.elapsed().as_secs_f64();
    let model = engine.model();
    let vocab = model.config().vocab_size;
    let mut kv = model.new_kv_slots(BATCH, MAX_CTX).expect("kv");

    group.throughput(Throughput::Elements(PROMPT as u64));
    group.bench_function("prefill_128_tokens", |b| {
        let ids = prompt(vocab, PROMPT, 0);
        b.iter(|| {
            let slot = kv.acquire().expect("free slot");
            let logits = model
                .prefill(&mut kv, slot, &ids, Logits::Last)
                .expect("prefill");
            let _ = criterion::black_box(logits);
            kv.release(slot).expect("release");
        })
    });

    let mut summary = Vec::new();
    for batch in [1usize, BATCH] {
        let slots: Vec<usize> = (0..batch)
            .map(|_| kv.acquire().expect("free slot"))
            .collect();
        let mut next = prefill_all(model, &mut kv, &slots, 0);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("decode_batch_{batch}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                decode_steps(model, &mut kv, &slots, &mut next, iters);
                start.elapsed()
            })
        });
        // The same work timed once more by wall clock and by CPU time.
        let steps = 32u64;
        let (wall, cpu) = timed(|| decode_steps(model, &mut kv, &slots, &mut next, steps));
        let tokens = (steps as usize * batch) as f64;
        summary.push(format!(
            "decode batch {batch}: {:.1} tok/s wall, {:.1} tok/s per CPU-second",
            tokens / wall,
            tokens / cpu
        ));
        for slot in slots {
            kv.release(slot).expect("release");
        }
    }
    group.finish();
    let ids = prompt(vocab, PROMPT, 99);
    let slot = kv.acquire().expect("free slot");
    let (wall, cpu) = timed(|| {
        let logits = model
            .prefill(&mut kv, slot, &ids, Logits::Last)
            .expect("prefill");
        let _ = criterion::black_box(logits);
    });
    summary.push(format!(
        "prefill {PROMPT} tokens: {:.1} tok/s wall, {:.1} tok/s per CPU-second",
        PROMPT as f64 / wall,
        PROMPT as f64 / cpu
    ));
    kv.release(slot).expect("release");
    // What the served load (benches/peer/cpu_peer.sh) asks of the engine: `batch` prompts
    // arriving together, each prefilled alone as the scheduler does, then decoded
    // together until each has OUTPUT tokens; the served output tok/s's engine-side peer.
    for batch in [1usize, BATCH] {
        let (wall, _) = timed(|| {
            let slots: Vec<usize> = (0..batch)
                .map(|_| kv.acquire().expect("free slot"))
                .collect();
            let mut next = prefill_all(model, &mut kv, &slots, 7);
            decode_steps(model, &mut kv, &slots, &mut next, OUTPUT as u64 - 1);
            for slot in slots {
                kv.release(slot).expect("release");
            }
        });
        summary.push(format!(
            "served-load round ({batch} x {PROMPT} tokens in, {OUTPUT} out): {:.1} output tok/s",
            (batch * OUTPUT) as f64 / wall
        ));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    summary.push(format!(
        "machine load average while measuring: {}",
        load.trim()
    ));
    for line in &summary {
        eprintln!("engine: {line}");
    }

    let info = engine.info();
    eprintln!(
        "engine: {} ({}, {} on {}), {} threads; load {load_secs:.2} s; KV cache {} slots x {} positions = {:.1} MiB; \
         peak RSS {:.0} MiB",
        info.id,
        info.architecture,
        info.dtype,
        info.device,
        tch::get_num_threads(),
        kv.slots(),
        kv.max_ctx(),
        kv.bytes() as f64 / (1 << 20) as f64,
        peak_rss_mib()
    );
}

criterion_group!(benches, engine_benches);
criterion_main!(benches);
