//! The engine on a GPU, checked against itself on the CPU and timed.
//!
//! `benches/gpu/check.py` writes a random-weight checkpoint with SmolLM2-135M's
//! dimensions, runs this program on it, and compares everything it writes with Hugging
//! Face transformers on the same weights. This program knows nothing of transformers: it
//! runs the engine's own forward passes (the ones `sworn serve` runs) in three variants,
//!
//! * `cpu_f32`: the CPU in float32, the path the golden fixtures hold to transformers;
//! * `gpu_f32`: the target device in float32 (separates kernel differences from bf16's);
//! * `gpu_bf16`: the target device in bfloat16, what `sworn serve` uses on CUDA,
//!
//! and for each writes last-position prefill logits, teacher-forced logits of batched
//! decode steps (slots given in a shuffled order, so the gathered-slot path runs) and a
//! greedy continuation. Then it times prefill and decode at batch 1, 16 and 64 on the
//! target device, each decode step ending with its logits on the host and an argmax per
//! row, as serving samples.
//!
//! On the target device the decode numerics run a second time through the decode step's
//! CUDA graphs (`DecodeGraphs`; on the CPU dry run the same fixed-shape step uncaptured),
//! each step split so that a padded bucket runs, into `<variant>_graphs.decode.f32`.
//! The sampled rows of one decode step are drawn both of the engine's ways (whole rows on
//! the host, reduced on the device), which must agree token for token, and each is timed.
//! Last, the serving engine's own step (`Engine::step`) is timed at batch 1, 16, 64 and
//! 256 with `--cuda-graphs off` and `on`, greedy and at temperature 1 (drawn on the
//! device), and the greedy tokens of the two are compared.
//!
//! Run: `gpu_check <checkpoint dir> <out dir> [--device cuda|cpu]`. `--device cpu` makes
//! the CPU stand in for the GPU (a dry run of the whole check on a machine without one).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};
use sworn_service::engine::config::{HfConfig, ModelConfig};
use sworn_service::engine::cuda_graph::{CudaGraphs, DecodeGraphs};
use sworn_service::engine::kv_cache::KvSlots;
use sworn_service::engine::model::{DecodeInput, LlamaModel, Logits};
use sworn_service::engine::runner::{
    DeviceChoice, DtypeChoice, Engine, EngineOptions, draw_tokens,
};
use sworn_service::engine::sampling::{SamplingRequest, argmax, sample};
use sworn_service::engine::weights::{WeightSet, safetensors};
use tch::{Device, Kind, Tensor};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Prompt lengths of the numerics check: a lone token, short, medium and long prompts.
const PROMPT_LENS: [usize; 4] = [1, 17, 64, 211];
/// Teacher-forced decode steps after each prompt.
const FORCED_STEPS: usize = 8;
/// Order in which the four slots are passed to each decode step (not 0, 1, 2, 3, so the
/// cache is read through the gathered-slot path rather than as a view).
const SLOT_ORDER: [usize; 4] = [2, 0, 3, 1];
/// Greedy tokens generated per prompt.
const GREEDY_TOKENS: usize = 32;
/// Context per slot.
const MAX_CTX: usize = 512;
/// Prompt length for the throughput runs.
const BENCH_PROMPT: usize = 128;
/// Timed decode steps per batch size.
const BENCH_STEPS: usize = 128;
/// Decode batch sizes timed.
const BENCH_BATCHES: [usize; 3] = [1, 16, 64];
/// Batch sizes of the serving engine's step, eager against CUDA graphs.
const ENGINE_BATCHES: [usize; 4] = [1, 16, 64, 256];
/// Each teacher-forced step through the graphs runs as these two batches: three rows in
/// the bucket of 4 (one padding row), then one in the bucket of 1.
const GRAPH_SPLIT: [&[usize]; 2] = [&[2, 0, 3], &[1]];

/// splitmix64: token ids that do not depend on any library's RNG.
struct Ids(u64);

impl Ids {
    fn next(&mut self, vocab: usize) -> u32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % vocab as u64) as u32
    }

    fn take(&mut self, n: usize, vocab: usize) -> Vec<u32> {
        (0..n).map(|_| self.next(vocab)).collect()
    }
}

struct Variant {
    name: &'static str,
    device: Device,
    kind: Kind,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("gpu_check: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(checkpoint), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: gpu_check <checkpoint dir> <out dir> [--device cuda|cpu]".into());
    };
    let target = match (args.next().as_deref(), args.next().as_deref()) {
        (None, _) | (Some("--device"), Some("cuda")) => "cuda",
        (Some("--device"), Some("cpu")) => "cpu",
        _ => return Err("--device must be cuda or cpu".into()),
    };
    let (checkpoint, out) = (PathBuf::from(checkpoint), PathBuf::from(out));
    std::fs::create_dir_all(&out)?;

    let cuda = sworn_service::device::load_cuda();
    let gpu = if target == "cuda" {
        if tch::Cuda::device_count() == 0 {
            return Err(format!("no CUDA device visible (backend: {cuda:?})").into());
        }
        Device::Cuda(0)
    } else {
        Device::Cpu
    };
    eprintln!(
        "gpu_check: target {gpu:?}, CUDA backend {cuda:?}, {} CUDA device(s), {} CPU threads",
        tch::Cuda::device_count(),
        tch::get_num_threads()
    );

    let config = HfConfig::from_json(&std::fs::read(checkpoint.join("config.json"))?)?.resolve()?;
    let vocab = config.vocab_size;
    let mut ids = Ids(0x5eed_0001);
    let prompts: Vec<Vec<u32>> = PROMPT_LENS.iter().map(|&n| ids.take(n, vocab)).collect();
    let forced: Vec<Vec<u32>> = PROMPT_LENS
        .iter()
        .map(|_| ids.take(FORCED_STEPS, vocab))
        .collect();
    write_json(
        &out.join("prompts.json"),
        &json!({ "prompts": prompts, "forced": forced, "slot_order": SLOT_ORDER }),
    )?;

    let variants = [
        Variant {
            name: "cpu_f32",
            device: Device::Cpu,
            kind: Kind::Float,
        },
        Variant {
            name: "gpu_f32",
            device: gpu,
            kind: Kind::Float,
        },
        Variant {
            name: "gpu_bf16",
            device: gpu,
            kind: Kind::BFloat16,
        },
    ];
    let mut results = serde_json::Map::new();
    for variant in &variants {
        let started = Instant::now();
        let model = load(&checkpoint, &config, variant)?;
        let load_s = started.elapsed().as_secs_f64();
        let numerics = numerics(&model, &prompts, &forced, &out, variant.name)?;
        let (timings, graphs) = if variant.device == gpu {
            let graphs = graph_numerics(&model, &prompts, &forced, &out, variant.name)
                .unwrap_or_else(|e| json!({ "error": e.to_string() }));
            (throughput(&model)?, graphs)
        } else {
            (json!(null), json!(null))
        };
        eprintln!("gpu_check: {} done", variant.name);
        results.insert(
            variant.name.to_owned(),
            json!({
                "device": format!("{:?}", variant.device),
                "kind": format!("{:?}", variant.kind),
                "load_s": load_s,
                "greedy": numerics,
                "graphs": graphs,
                "throughput": timings,
            }),
        );
    }
    let mut engine = serde_json::Map::new();
    for (name, cuda_graphs) in [("eager", CudaGraphs::Off), ("graphs", CudaGraphs::On)] {
        let steps = engine_steps(&checkpoint, target, cuda_graphs)
            .unwrap_or_else(|e| json!({ "error": e.to_string() }));
        eprintln!("gpu_check: engine steps ({name}) done");
        engine.insert(name.to_owned(), steps);
    }
    let engine = Value::Object(engine);
    write_json(
        &out.join("result.json"),
        &json!({ "target": target, "variants": results, "engine_step": engine }),
    )?;
    Ok(())
}

fn load(checkpoint: &Path, config: &ModelConfig, variant: &Variant) -> Result<LlamaModel> {
    let mut weights = WeightSet::default();
    safetensors::load_checkpoint_dir(checkpoint, &mut weights)?;
    Ok(LlamaModel::load(
        config.clone(),
        weights,
        variant.device,
        variant.kind,
        MAX_CTX,
    )?)
}

/// Prefill and teacher-forced decode logits to files; returns the greedy continuations.
fn numerics(
    model: &LlamaModel,
    prompts: &[Vec<u32>],
    forced: &[Vec<u32>],
    out: &Path,
    name: &str,
) -> Result<Value> {
    let vocab = model.config().vocab_size;
    let mut kv = acquired_slots(model, prompts.len())?;
    let mut prefill = Vec::with_capacity(prompts.len() * vocab);
    for (slot, prompt) in prompts.iter().enumerate() {
        let logits = model.prefill(&mut kv, slot, prompt, Logits::Last)?;
        prefill.extend(host_rows(&logits)?);
    }
    write_f32(&out.join(format!("{name}.prefill.f32")), &prefill)?;

    // Step s feeds forced[p][s] to every prompt p's slot; rows are stored in prompt order.
    let mut decode = vec![0f32; FORCED_STEPS * prompts.len() * vocab];
    for (step, step_rows) in decode.chunks_exact_mut(prompts.len() * vocab).enumerate() {
        let batch: Vec<DecodeInput> = SLOT_ORDER
            .iter()
            .map(|&slot| DecodeInput {
                slot,
                token: forced[slot][step],
            })
            .collect();
        let rows = host_rows(&model.decode(&mut kv, &batch)?)?;
        for (row, &slot) in rows.chunks_exact(vocab).zip(SLOT_ORDER.iter()) {
            step_rows[slot * vocab..(slot + 1) * vocab].copy_from_slice(row);
        }
    }
    write_f32(&out.join(format!("{name}.decode.f32")), &decode)?;

    // Greedy: every prompt from a fresh slot, all slots decoded together.
    let mut kv = acquired_slots(model, prompts.len())?;
    let mut tokens: Vec<Vec<u32>> = Vec::with_capacity(prompts.len());
    for (slot, prompt) in prompts.iter().enumerate() {
        let logits = model.prefill(&mut kv, slot, prompt, Logits::Last)?;
        tokens.push(vec![argmax(&host_rows(&logits)?)?]);
    }
    for _ in 1..GREEDY_TOKENS {
        let batch: Vec<DecodeInput> = tokens
            .iter()
            .enumerate()
            .map(|(slot, seq)| DecodeInput {
                slot,
                token: seq[seq.len() - 1],
            })
            .collect();
        let rows = host_rows(&model.decode(&mut kv, &batch)?)?;
        for (row, seq) in rows.chunks_exact(vocab).zip(tokens.iter_mut()) {
            seq.push(argmax(row)?);
        }
    }
    Ok(json!(tokens))
}

/// A cache of `n` slots, all acquired: slot `i` is numbered `i`.
fn acquired_slots(model: &LlamaModel, n: usize) -> Result<KvSlots> {
    let mut kv = model.new_kv_slots(n, MAX_CTX)?;
    for expected in 0..n {
        if kv.acquire() != Some(expected) {
            return Err(format!("slot {expected} was not handed out in order").into());
        }
    }
    Ok(kv)
}

/// Prefill and decode throughput on the model's device.
fn throughput(model: &LlamaModel) -> Result<Value> {
    let vocab = model.config().vocab_size;
    let max_batch = BENCH_BATCHES.iter().copied().max().unwrap_or(1);
    let mut kv = model.new_kv_slots(max_batch, MAX_CTX)?;
    let mut ids = Ids(0xbe7c_0002);

    // Prefill: one 128-token prompt at a time, 3 warm-ups, median of 20.
    let prompt = ids.take(BENCH_PROMPT, vocab);
    let mut times = Vec::new();
    for rep in 0..23 {
        let slot = kv.acquire().ok_or("no free slot")?;
        let started = Instant::now();
        let logits = model.prefill(&mut kv, slot, &prompt, Logits::Last)?;
        let _ = host_rows(&logits)?;
        if rep >= 3 {
            times.push(started.elapsed().as_secs_f64());
        }
        kv.release(slot)?;
    }
    times.sort_by(f64::total_cmp);
    let prefill_s = times[times.len() / 2];
    let burst = prefill_burst(model, &mut kv, &mut ids)?;
    let draws = draws(model, &mut kv, &mut ids)?;

    let mut decode = serde_json::Map::new();
    for batch in BENCH_BATCHES {
        let slots: Vec<usize> = (0..batch)
            .map(|_| kv.acquire().ok_or("no free slot"))
            .collect::<std::result::Result<_, _>>()?;
        let mut next = Vec::with_capacity(batch);
        for &slot in &slots {
            let logits =
                model.prefill(&mut kv, slot, &ids.take(BENCH_PROMPT, vocab), Logits::Last)?;
            next.push(argmax(&host_rows(&logits)?)?);
        }
        decode_steps(model, &mut kv, &slots, &mut next, 8, Argmax::Host)?;
        // Each mode runs the same 128 steps from the same cache length: the host path
        // serving uses, the argmax on the device (only ids cross to the host: what
        // sampling on the device would save), and temperature 1 (the OpenAI API's
        // default) sampled on the host.
        // Each mode warms up first: CUDA loads a kernel's module on its first launch.
        let mut timed = |mode: Argmax| -> Result<f64> {
            decode_steps(model, &mut kv, &slots, &mut next, 4, mode)?;
            for &slot in &slots {
                kv.truncate(slot, BENCH_PROMPT + 8)?;
            }
            let started = Instant::now();
            decode_steps(model, &mut kv, &slots, &mut next, BENCH_STEPS, mode)?;
            Ok(started.elapsed().as_secs_f64())
        };
        let seconds = timed(Argmax::Host)?;
        let device_seconds = timed(Argmax::Device)?;
        let sampled_seconds = timed(Argmax::Sample)?;
        decode.insert(
            batch.to_string(),
            json!({
                "tokens_per_s": (batch * BENCH_STEPS) as f64 / seconds,
                "ms_per_step": seconds * 1e3 / BENCH_STEPS as f64,
                "device_argmax_tokens_per_s": (batch * BENCH_STEPS) as f64 / device_seconds,
                "device_argmax_ms_per_step": device_seconds * 1e3 / BENCH_STEPS as f64,
                "sampled_t1_tokens_per_s": (batch * BENCH_STEPS) as f64 / sampled_seconds,
                "sampled_t1_ms_per_step": sampled_seconds * 1e3 / BENCH_STEPS as f64,
                "context_at_start": BENCH_PROMPT + 8,
            }),
        );
        for slot in slots {
            kv.release(slot)?;
        }
    }
    Ok(json!({
        "prefill_tokens": BENCH_PROMPT,
        "prefill_tokens_per_s": BENCH_PROMPT as f64 / prefill_s,
        "prefill_burst": burst,
        "draws": draws,
        "decode": decode,
        "kv_cache_bytes": kv.bytes(),
    }))
}

/// Draws of a decode step's sampled rows, [`DRAW_BATCH`] rows of real logits (one decode
/// step's, as float32), both of the engine's ways: whole rows copied to the host, and
/// reduced on the logits' device (`draw_tokens`). Per sampling shape over
/// [`DRAW_STEPS`] steps: the rows whose tokens agree (they must all) and the mean time
/// of each way, logits to tokens on the host.
fn draws(model: &LlamaModel, kv: &mut KvSlots, ids: &mut Ids) -> Result<Value> {
    let vocab = model.config().vocab_size;
    let slots: Vec<usize> = (0..DRAW_BATCH)
        .map(|_| kv.acquire().ok_or("no free slot"))
        .collect::<std::result::Result<_, _>>()?;
    let mut inputs = Vec::with_capacity(DRAW_BATCH);
    for &slot in &slots {
        let logits = model.prefill(kv, slot, &ids.take(BENCH_PROMPT, vocab), Logits::Last)?;
        let token = argmax(&host_rows(&logits)?)?;
        inputs.push(DecodeInput { slot, token });
    }
    let logits = model.decode(kv, &inputs)?.f_to_kind(Kind::Float)?;
    for slot in slots {
        kv.release(slot)?;
    }
    let mut out = serde_json::Map::new();
    for (name, temperature, top_p, top_k) in [
        ("temperature_1", 1.0, None, None),
        ("temperature_0.7_top_p_0.9", 0.7, Some(0.9), None),
        ("temperature_1_top_k_40", 1.0, None, Some(40)),
    ] {
        let params: Vec<_> = (0..DRAW_BATCH as u64)
            .map(|seed| {
                SamplingRequest {
                    temperature: Some(temperature),
                    top_p,
                    top_k,
                    seed: Some(seed),
                    ..Default::default()
                }
                .validate(u32::MAX)
            })
            .collect::<std::result::Result<_, _>>()?;
        let (mut agree, mut host_s, mut reduced_s) = (0usize, 0.0, 0.0);
        for step in 0..DRAW_STEPS as u64 {
            let rows: Vec<_> = params.iter().map(|p| (p, step)).collect();
            let started = Instant::now();
            let host = draw_tokens(&logits, &rows, false)?;
            host_s += started.elapsed().as_secs_f64();
            let started = Instant::now();
            let reduced = draw_tokens(&logits, &rows, true)?;
            reduced_s += started.elapsed().as_secs_f64();
            agree += host.iter().zip(&reduced).filter(|(a, b)| a == b).count();
        }
        out.insert(
            name.to_owned(),
            json!({
                "rows": DRAW_BATCH * DRAW_STEPS,
                "agree": agree,
                "host_ms": host_s * 1e3 / DRAW_STEPS as f64,
                "reduced_ms": reduced_s * 1e3 / DRAW_STEPS as f64,
            }),
        );
    }
    Ok(Value::Object(out))
}

/// Rows of a decode step drawn by [`draws`].
const DRAW_BATCH: usize = 64;
/// Steps (seeds) drawn per sampling shape by [`draws`].
const DRAW_STEPS: usize = 32;

/// Prompts of one burst of arrivals in [`prefill_burst`].
const BURST: usize = 16;

/// A burst of [`BURST`] prompts of lengths 96..128 prefilled one by one (as `sworn serve
/// --prefill-batch-tokens 0` does) and in one padded batch (`LlamaModel::prefill_batch`):
/// median seconds of each over 5 after a warm-up, and the largest difference between their
/// last-position logits.
fn prefill_burst(model: &LlamaModel, kv: &mut KvSlots, ids: &mut Ids) -> Result<Value> {
    let vocab = model.config().vocab_size;
    let prompts: Vec<Vec<u32>> = (0..BURST)
        .map(|i| ids.take(BENCH_PROMPT - 2 * i, vocab))
        .collect();
    let mut run = |batched: bool| -> Result<(f64, Vec<f32>)> {
        let slots: Vec<usize> = (0..BURST)
            .map(|_| kv.acquire().ok_or("no free slot"))
            .collect::<std::result::Result<_, _>>()?;
        let started = Instant::now();
        let mut rows = Vec::with_capacity(BURST * vocab);
        if batched {
            let jobs: Vec<(usize, &[u32])> = (slots.iter().copied())
                .zip(prompts.iter().map(Vec::as_slice))
                .collect();
            rows = host_rows(&model.prefill_batch(kv, &jobs)?)?;
        } else {
            for (&slot, prompt) in slots.iter().zip(&prompts) {
                rows.extend(host_rows(&model.prefill(
                    kv,
                    slot,
                    prompt,
                    Logits::Last,
                )?)?);
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        for slot in slots {
            kv.release(slot)?;
        }
        Ok((seconds, rows))
    };
    let mut median = |batched: bool| -> Result<(f64, Vec<f32>)> {
        let (_, rows) = run(batched)?;
        let mut times = Vec::new();
        for _ in 0..5 {
            times.push(run(batched)?.0);
        }
        times.sort_by(f64::total_cmp);
        Ok((times[times.len() / 2], rows))
    };
    let (alone_s, alone) = median(false)?;
    let (batched_s, batched) = median(true)?;
    let diff = (alone.iter().zip(&batched))
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let tokens: usize = prompts.iter().map(Vec::len).sum();
    Ok(json!({
        "prompts": BURST,
        "tokens": tokens,
        "one_by_one_ms": alone_s * 1e3,
        "batched_ms": batched_s * 1e3,
        "batched_speedup": alone_s / batched_s,
        "max_abs_logit_diff": diff,
    }))
}

/// Where a greedy step picks its tokens.
#[derive(Clone, Copy)]
enum Argmax {
    /// The whole `[batch, vocab]` logits copied to the host, argmax there (as serving).
    Host,
    /// Argmax on the logits' device; only the ids are copied.
    Device,
    /// Logits to the host, then `sample` at temperature 1 (no top-k/top-p), seeded.
    Sample,
}

/// Decode through the serving engine itself (`Engine::add` / `Engine::step`, the calls
/// the server's engine thread makes), its default dtype on `target`, decode steps as CUDA
/// graphs or not: tokens per second over 128 steps after 8, greedy and at temperature 1,
/// for each batch size; and the greedy tokens of every sequence.
fn engine_steps(checkpoint: &Path, target: &str, cuda_graphs: CudaGraphs) -> Result<Value> {
    let options = EngineOptions {
        device: if target == "cuda" {
            DeviceChoice::Cuda(0)
        } else {
            DeviceChoice::Cpu
        },
        dtype: DtypeChoice::BFloat16,
        slots: ENGINE_BATCHES.iter().copied().max().unwrap_or(1),
        max_ctx: MAX_CTX,
        cuda_graphs,
        ..EngineOptions::default()
    };
    let started = Instant::now();
    let mut engine = Engine::load(checkpoint, &options)?;
    let load_s = started.elapsed().as_secs_f64();
    let vocab = engine.config().vocab_size;
    let mut ids = Ids(0xe9e1_0003);
    let mut out = serde_json::Map::new();
    out.insert("decode".into(), json!(engine.cuda_graphs().to_string()));
    out.insert("load_s".into(), json!(load_s));
    let mut greedy_tokens = serde_json::Map::new();
    for (name, temperature) in [("greedy", 0.0), ("temperature_1", 1.0)] {
        let mut rates = serde_json::Map::new();
        for batch in ENGINE_BATCHES {
            let params = SamplingRequest {
                temperature: Some(temperature),
                seed: Some(11),
                max_tokens: Some((BENCH_STEPS + 16) as u32),
                ..Default::default()
            }
            .validate(u32::MAX)?;
            let mut running = Vec::with_capacity(batch);
            for _ in 0..batch {
                running.push(
                    engine
                        .add(&ids.take(BENCH_PROMPT, vocab), params.clone())?
                        .id,
                );
            }
            for _ in 0..8 {
                engine.step()?;
            }
            let started = Instant::now();
            let mut tokens = 0usize;
            for _ in 0..BENCH_STEPS {
                tokens += engine.step()?.len();
            }
            let seconds = started.elapsed().as_secs_f64();
            let mut generated = Vec::with_capacity(batch);
            for id in running {
                generated.push(engine.remove(id)?.tokens);
            }
            if temperature == 0.0 {
                greedy_tokens.insert(batch.to_string(), json!(generated));
            }
            rates.insert(
                batch.to_string(),
                json!({
                    "tokens_per_s": tokens as f64 / seconds,
                    "ms_per_step": seconds * 1e3 / BENCH_STEPS as f64,
                    "tokens": tokens,
                }),
            );
        }
        out.insert(name.to_owned(), Value::Object(rates));
    }
    out.insert("greedy_tokens".into(), Value::Object(greedy_tokens));
    Ok(Value::Object(out))
}

/// [`numerics`]' decode half again, through the fixed-shape decode step: captured CUDA
/// graphs on CUDA, the same step uncaptured on the CPU. Each teacher-forced step runs as
/// the batches of [`GRAPH_SPLIT`] (a padded bucket, then a full one); the logits go to
/// `<name>_graphs.decode.f32` in the layout of `<name>.decode.f32`. Returns the greedy
/// continuation of every prompt, all slots decoded together.
fn graph_numerics(
    model: &LlamaModel,
    prompts: &[Vec<u32>],
    forced: &[Vec<u32>],
    out: &Path,
    name: &str,
) -> Result<Value> {
    let vocab = model.config().vocab_size;
    let mut kv = model.new_kv_slots_for_graphs(prompts.len(), MAX_CTX)?;
    let started = Instant::now();
    let mut graphs = match model.device() {
        Device::Cuda(_) => DecodeGraphs::capture(model, &mut kv)?,
        _ => DecodeGraphs::uncaptured(model, &kv)?,
    };
    let capture_s = started.elapsed().as_secs_f64();
    let fill = |kv: &mut KvSlots| -> Result<Vec<Vec<u32>>> {
        let mut first = Vec::with_capacity(prompts.len());
        for (expected, prompt) in prompts.iter().enumerate() {
            if kv.acquire() != Some(expected) {
                return Err(format!("slot {expected} was not handed out in order").into());
            }
            let logits = model.prefill(kv, expected, prompt, Logits::Last)?;
            first.push(vec![argmax(&host_rows(&logits)?)?]);
        }
        Ok(first)
    };
    fill(&mut kv)?;
    let mut decode = vec![0f32; FORCED_STEPS * prompts.len() * vocab];
    for (step, step_rows) in decode.chunks_exact_mut(prompts.len() * vocab).enumerate() {
        for part in GRAPH_SPLIT {
            let batch: Vec<DecodeInput> = part
                .iter()
                .map(|&slot| DecodeInput {
                    slot,
                    token: forced[slot][step],
                })
                .collect();
            let rows = host_rows(&graphs.decode(model, &mut kv, &batch)?)?;
            for (row, &slot) in rows.chunks_exact(vocab).zip(part.iter()) {
                step_rows[slot * vocab..(slot + 1) * vocab].copy_from_slice(row);
            }
        }
    }
    write_f32(&out.join(format!("{name}_graphs.decode.f32")), &decode)?;

    // Greedy, on the same cache (the graphs write to it): every slot refilled.
    for slot in 0..prompts.len() {
        kv.release(slot)?;
    }
    let mut tokens = fill(&mut kv)?;
    for _ in 1..GREEDY_TOKENS {
        let batch: Vec<DecodeInput> = tokens
            .iter()
            .enumerate()
            .map(|(slot, seq)| DecodeInput {
                slot,
                token: seq[seq.len() - 1],
            })
            .collect();
        let rows = host_rows(&graphs.decode(model, &mut kv, &batch)?)?;
        for (row, seq) in rows.chunks_exact(vocab).zip(tokens.iter_mut()) {
            seq.push(argmax(row)?);
        }
    }
    Ok(json!({
        "captured": graphs.is_captured(),
        "buckets": graphs.buckets(),
        "capture_s": capture_s,
        "greedy": tokens,
    }))
}

/// `steps` greedy steps over `slots`, each ending with the next tokens on the host.
fn decode_steps(
    model: &LlamaModel,
    kv: &mut KvSlots,
    slots: &[usize],
    next: &mut [u32],
    steps: usize,
    argmax_on: Argmax,
) -> Result<()> {
    let vocab = model.config().vocab_size;
    let t1 = SamplingRequest {
        temperature: Some(1.0),
        seed: Some(7),
        ..Default::default()
    }
    .validate(u32::MAX)?;
    for step in 0..steps {
        let batch: Vec<DecodeInput> = slots
            .iter()
            .zip(next.iter())
            .map(|(&slot, &token)| DecodeInput { slot, token })
            .collect();
        let logits = model.decode(kv, &batch)?;
        match argmax_on {
            Argmax::Host => {
                let rows = host_rows(&logits)?;
                for (row, token) in rows.chunks_exact(vocab).zip(next.iter_mut()) {
                    *token = argmax(row)?;
                }
            }
            Argmax::Sample => {
                let rows = host_rows(&logits)?;
                for (row, token) in rows.chunks_exact(vocab).zip(next.iter_mut()) {
                    *token = sample(row, &t1, step as u64)?;
                }
            }
            Argmax::Device => {
                let ids = Vec::<i64>::try_from(logits.f_argmax(-1, false)?)?;
                for (id, token) in ids.into_iter().zip(next.iter_mut()) {
                    *token = u32::try_from(id)?;
                }
            }
        }
    }
    Ok(())
}

fn host_rows(logits: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(logits.f_flatten(0, -1)?)?)
}

fn write_f32(path: &Path, values: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes)?;
    Ok(())
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)?;
    Ok(())
}
