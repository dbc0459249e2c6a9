#!/usr/bin/env python3
"""The engine on a GPU: numerics against transformers, and decode speed against it.

Run on a machine with an NVIDIA GPU, libtorch's Python wheel (torch 2.11.0) and
transformers, with the two release binaries built elsewhere (see benches/gpu/run.sh):

1. writes a random-weight Llama checkpoint with SmolLM2-135M's dimensions (the real
   file is too large to carry; its dimensions are what matter for speed);
2. runs `gpu_check` (benches/examples/gpu_check.rs): the engine's prefill, batched
   decode and greedy generation on the CPU in float32 and on the GPU in float32 and
   bfloat16, and its throughput on the GPU;
3. computes the same logits with transformers: float32 on the CPU (the reference) and
   bfloat16 on the GPU (the peer, whose own bf16 error sets the scale for ours);
4. times transformers' `generate` on the same GPU, same weights and batch sizes;
5. runs the `sworn` binary itself (`--version`, `generate --device cuda`);
6. times transformers' `generate` with a static cache, which transformers compiles with
   torch.compile (CUDA graphs, "reduce-overhead"), as long as the time budget allows.

The engine's decode step also runs as CUDA graphs (`--cuda-graphs`): its teacher-forced
decode logits through the graphs are held to the same reference, its greedy tokens
compared with the eager step's, and `Engine::step` timed both ways at batch 1, 16, 64
and 256 beside transformers' two decode loops, in one table.

Pass/fail: the engine's float32 logits (CPU and GPU, eager and graphs) within 1e-3
absolute of the reference, its bfloat16 relative error (eager and graphs) no more than
1.5x transformers' own bfloat16 error plus 1e-3, the graphs captured, and every sampled
row drawn on the device the token the host draws from the whole row. Results go to
<out>/gpu_check.json and the tables on stdout.

`--target cpu` runs the whole check with the CPU standing in for the GPU (bfloat16 on
the CPU), to rehearse it on a machine without one; its timings mean nothing.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

# SmolLM2-135M-Instruct, as its GGUF's metadata gives it.
SMOLLM2 = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    hidden_act="silu",
    bos_token_id=1,
    eos_token_id=2,
)
ROPE_THETA = 100000.0
SEED = 20261127
# The float32 paths must agree with the reference to this (absolute, on logits).
F32_ABS_TOL = 1e-3
# Our bfloat16 relative error may be at most this multiple of transformers' own, plus
# BF16_SLACK.
BF16_RATIO = 1.5
BF16_SLACK = 1e-3
PEER_PROMPT = 128
# The model-level timing of gpu_check (its BENCH_BATCHES).
PEER_BATCHES = (1, 16, 64)
# Engine::step eager against graphs, and transformers' two decode loops (gpu_check's
# ENGINE_BATCHES).
ENGINE_BATCHES = (1, 16, 64, 256)
PEER_SHORT, PEER_LONG = 8, 136
REPO = Path(__file__).resolve().parents[2]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def write_checkpoint(path: Path):
    """Random weights: HF's initialisation, a wider embedding (so logits spread over a
    few units as a trained model's do) and norm weights near, not at, one."""
    torch.manual_seed(SEED)
    config = LlamaConfig(
        **SMOLLM2,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
    )
    model = LlamaForCausalLM(config).float()
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(4.0)
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
    model.save_pretrained(path)
    # `sworn generate` needs a tokenizer covering every id: the tiny test checkpoint's
    # byte-level BPE, its vocabulary padded with plain-letter tokens ("w300", ...).
    tokenizer = json.loads(
        (REPO / "service/tests/fixtures/model/tiny-llama/tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    for i in range(len(vocab), config.vocab_size):
        vocab[f"w{i}"] = i
    (path / "tokenizer.json").write_text(json.dumps(tokenizer))
    return config


def load_hf(path: Path, dtype, device):
    model = LlamaForCausalLM.from_pretrained(
        path, dtype=dtype, attn_implementation="eager" if dtype == torch.float32 else "sdpa"
    )
    return model.to(device).eval()


@torch.no_grad()
def hf_logits(model, prompts, forced, device):
    """Last-position logits per prompt, [P, V], and teacher-forced decode logits,
    [S, P, V]: position len(prompt) + s of prompt + forced tokens."""
    prefill, decode = [], []
    for prompt, extra in zip(prompts, forced):
        ids = torch.tensor([prompt + extra], device=device)
        logits = model(input_ids=ids).logits[0].float().cpu().numpy()
        prefill.append(logits[len(prompt) - 1])
        decode.append(logits[len(prompt) : len(prompt) + len(extra)])
    return np.stack(prefill), np.stack(decode).transpose(1, 0, 2)


@torch.no_grad()
def generate_exactly(model, ids, new):
    """Greedy `generate()` of exactly `new` tokens (end-of-sequence ignored)."""
    return model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=False,
        pad_token_id=0,
    )


def hf_greedy(model, prompts, steps, device):
    out = []
    for prompt in prompts:
        gen = generate_exactly(model, torch.tensor([prompt], device=device), steps)
        out.append(gen[0, len(prompt) :].tolist())
    return out


def compare(ours, ref):
    """Row-wise relative error ‖a − r‖ / ‖r‖, max |a − r|, top-1 agreement."""
    a = ours.reshape(-1, ours.shape[-1]).astype(np.float64)
    r = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
    rel = np.linalg.norm(a - r, axis=1) / np.linalg.norm(r, axis=1)
    return {
        "rows": int(a.shape[0]),
        "rel_max": float(rel.max()),
        "rel_median": float(np.median(rel)),
        "abs_max": float(np.abs(a - r).max()),
        "top1_agree": float((a.argmax(1) == r.argmax(1)).mean()),
        "finite": bool(np.isfinite(a).all()),
    }


def common_prefix(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@torch.no_grad()
def hf_decode_speed(model, vocab, device, sync):
    """transformers' generate, greedy, 128-token prompts: decode tokens/s from the
    difference of a long and a short run (prefill and set-up cancel)."""
    gen = torch.Generator().manual_seed(SEED)
    results = {}
    for batch in ENGINE_BATCHES:
        ids = torch.randint(0, vocab, (batch, PEER_PROMPT), generator=gen).to(device)

        def run(new):
            sync()
            started = time.perf_counter()
            generate_exactly(model, ids, new)
            sync()
            return time.perf_counter() - started

        run(PEER_SHORT)  # warm-up
        short = statistics.median(run(PEER_SHORT) for _ in range(3))
        long = statistics.median(run(PEER_LONG) for _ in range(2))
        steps = PEER_LONG - PEER_SHORT
        results[str(batch)] = {
            "tokens_per_s": batch * steps / (long - short),
            "ms_per_step": (long - short) * 1e3 / steps,
        }
    return results


class StepClock(transformers.StoppingCriteria):
    """A stopping criterion that never stops and stamps the time of every step (generate
    waits for each step's tokens before asking it)."""

    def __init__(self):
        self.times = []

    def __call__(self, input_ids, scores, **kwargs):
        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def hf_static_compiled_speed(model, vocab, device, sync, deadline):
    """transformers' generate with a static KV cache, which it compiles (torch.compile,
    CUDA graphs) on its own: greedy, 128-token prompts, PEER_LONG new tokens. One untimed
    run per batch size compiles; the timed run's decode rate comes from per-step
    timestamps after step PEER_SHORT (prefill and the first steps excluded). Batch sizes
    that would start past `deadline` are skipped."""
    from transformers import StoppingCriteriaList

    gen = torch.Generator().manual_seed(SEED)
    results = {}
    for batch in ENGINE_BATCHES:
        if time.perf_counter() > deadline:
            results[str(batch)] = {"skipped": "time budget"}
            continue
        ids = torch.randint(0, vocab, (batch, PEER_PROMPT), generator=gen).to(device)
        try:
            def run():
                clock = StepClock()
                sync()
                model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids),
                    max_new_tokens=PEER_LONG, min_new_tokens=PEER_LONG, do_sample=False,
                    pad_token_id=0, cache_implementation="static",
                    stopping_criteria=StoppingCriteriaList([clock]),
                )
                sync()
                return clock.times

            started = time.perf_counter()
            run()  # compiles for this shape
            compile_s = time.perf_counter() - started
            times = run()
            steps = len(times) - 1 - PEER_SHORT
            seconds = times[-1] - times[PEER_SHORT]
            results[str(batch)] = {
                "tokens_per_s": batch * steps / seconds,
                "ms_per_step": seconds * 1e3 / steps,
                "first_run_s": compile_s,
            }
        except Exception as e:  # a transformers or torch.compile failure is reported
            results[str(batch)] = {"error": f"{type(e).__name__}: {e}"[:400]}
    return results


def run_sworn(binary: Path, checkpoint: Path, device: str, env):
    started = time.perf_counter()
    proc = subprocess.run(
        [str(binary), "generate", "--model", str(checkpoint), "--prompt", "Hello, auditor",
         "--max-tokens", "16", "--device", device, "--seed", "1"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    return {
        "exit": proc.returncode,
        "seconds": time.perf_counter() - started,
        "stdout": proc.stdout[-400:],
        "stderr_tail": proc.stderr[-600:],
    }


def rate(entry):
    """`tok/s (ms)` of a timing entry, or why there is none."""
    if not entry:
        return "—"
    if "tokens_per_s" in entry:
        return f"{entry['tokens_per_s']:.0f} ({entry['ms_per_step']:.2f})"
    return entry.get("skipped") or "error"


def print_engine_table(report, engine_steps, agreement):
    """The decode step on the card, bfloat16, tok/s (ms/step): Engine::step eager and as
    CUDA graphs, beside transformers' generate (dynamic cache) and static cache +
    torch.compile; greedy, then temperature 1 (sworn only)."""
    eager, graphs = engine_steps.get("eager", {}), engine_steps.get("graphs", {})
    dynamic = report.get("transformers_decode", {})
    compiled = report.get("transformers_static_compiled", {})
    print(f"\nEngine::step eager: {eager.get('decode', eager.get('error'))}")
    print(f"Engine::step graphs: {graphs.get('decode', graphs.get('error'))}")
    head = ("decode bf16 tok/s (ms/step)", "sworn eager", "sworn graphs", "graphs/eager",
            "hf generate", "hf static+compile", "graphs/best hf", "greedy same")
    print(f"{head[0]:30} {head[1]:>17} {head[2]:>17} {head[3]:>12} {head[4]:>17} "
          f"{head[5]:>19} {head[6]:>14} {head[7]:>11}")
    for mode in ("greedy", "temperature_1"):
        for batch in map(str, ENGINE_BATCHES):
            e, g = eager.get(mode, {}).get(batch), graphs.get(mode, {}).get(batch)
            speedup = (f"{g['tokens_per_s'] / e['tokens_per_s']:.2f}x" if e and g else "—")
            hf_d = dynamic.get(batch) if mode == "greedy" else None
            hf_c = compiled.get(batch) if mode == "greedy" else None
            best = max((x["tokens_per_s"] for x in (hf_d, hf_c) if x and "tokens_per_s" in x),
                       default=None)
            vs_hf = f"{g['tokens_per_s'] / best:.2f}x" if g and best else "—"
            same = agreement.get(batch, {}).get("identical") if mode == "greedy" else None
            same = f"{same:.2f}" if same is not None else "—"
            print(f"{mode + ', batch ' + batch:30} {rate(e):>17} {rate(g):>17} {speedup:>12} "
                  f"{rate(hf_d) if mode == 'greedy' else '—':>17} "
                  f"{rate(hf_c) if mode == 'greedy' else '—':>19} {vs_hf:>14} {same:>11}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", type=Path, required=True, help="folder with gpu_check and sworn")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/sworn-gpu-check"))
    ap.add_argument("--target", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--budget-s", type=float, default=360,
                    help="seconds after which transformers' compiled runs are skipped")
    args = ap.parse_args()
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.work, ignore_errors=True)
    checkpoint, raw = args.work / "checkpoint", args.work / "raw"
    report = {"transformers": transformers.__version__, "torch": torch.__version__}

    gpu = torch.device("cuda" if args.target == "cuda" else "cpu")
    sync = torch.cuda.synchronize if args.target == "cuda" else (lambda: None)
    if args.target == "cuda":
        report["card"] = torch.cuda.get_device_name(0)
    log(f"check: {report}")

    config = write_checkpoint(checkpoint)
    vocab = config.vocab_size

    log("check: engine (gpu_check)")
    env = dict(os.environ)
    started = time.perf_counter()
    proc = subprocess.run(
        [str(args.bin / "gpu_check"), str(checkpoint), str(raw), "--device", args.target],
        env=env, timeout=420,
    )
    report["engine_seconds"] = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"gpu_check exited {proc.returncode}")
    ours = json.loads((raw / "result.json").read_text())
    inputs = json.loads((raw / "prompts.json").read_text())
    prompts, forced = inputs["prompts"], inputs["forced"]
    steps = len(forced[0])

    def ours_logits(name):
        prefill = np.fromfile(raw / f"{name}.prefill.f32", dtype="<f4").reshape(len(prompts), vocab)
        decode = np.fromfile(raw / f"{name}.decode.f32", dtype="<f4").reshape(steps, len(prompts), vocab)
        return prefill, decode

    log("check: transformers float32 on the CPU (reference)")
    ref_model = load_hf(checkpoint, torch.float32, torch.device("cpu"))
    ref_prefill, ref_decode = hf_logits(ref_model, prompts, forced, torch.device("cpu"))
    greedy_steps = len(ours["variants"]["cpu_f32"]["greedy"][0])
    ref_greedy = hf_greedy(ref_model, prompts, greedy_steps, torch.device("cpu"))
    del ref_model

    log("check: transformers bfloat16 on the target (peer)")
    peer = load_hf(checkpoint, torch.bfloat16, gpu)
    peer_prefill, peer_decode = hf_logits(peer, prompts, forced, gpu)
    peer_greedy = hf_greedy(peer, prompts, greedy_steps, gpu)

    numerics = {}
    failures = []
    for name in ("cpu_f32", "gpu_f32", "gpu_bf16"):
        prefill, decode = ours_logits(name)
        numerics[name] = {
            "prefill": compare(prefill, ref_prefill),
            "decode": compare(decode, ref_decode),
            "greedy_prefix_vs_ref": [
                common_prefix(a, b) for a, b in zip(ours["variants"][name]["greedy"], ref_greedy)
            ],
        }
    # The decode step through the CUDA graphs (decode only: prefill is not graphed).
    for name in ("gpu_f32", "gpu_bf16"):
        graphs = ours["variants"][name].get("graphs") or {}
        if "error" in graphs or not graphs:
            failures.append(f"{name} graphs: {graphs.get('error', 'not run')}")
            continue
        if args.target == "cuda" and not graphs["captured"]:
            failures.append(f"{name} graphs: not captured")
        decode = np.fromfile(raw / f"{name}_graphs.decode.f32", dtype="<f4").reshape(
            steps, len(prompts), vocab)
        numerics[name + "_graphs"] = {
            "decode": compare(decode, ref_decode),
            "greedy_prefix_vs_ref": [common_prefix(a, b) for a, b in zip(graphs["greedy"], ref_greedy)],
            "vs_eager": compare(decode, ours_logits(name)[1]),
            "greedy_prefix_vs_eager": [
                common_prefix(a, b) for a, b in zip(graphs["greedy"], ours["variants"][name]["greedy"])
            ],
        }
    numerics["transformers_bf16"] = {
        "prefill": compare(peer_prefill, ref_prefill),
        "decode": compare(peer_decode, ref_decode),
        "greedy_prefix_vs_ref": [common_prefix(a, b) for a, b in zip(peer_greedy, ref_greedy)],
    }
    report["numerics"] = numerics

    for name in ("cpu_f32", "gpu_f32", "gpu_f32_graphs"):
        for part in ("prefill", "decode"):
            m = numerics.get(name, {}).get(part)
            if m is not None and (not m["finite"] or m["abs_max"] > F32_ABS_TOL):
                failures.append(f"{name} {part}: max |Δ| {m['abs_max']:.3e} > {F32_ABS_TOL:e}")
    for name in ("gpu_bf16", "gpu_bf16_graphs"):
        for part in ("prefill", "decode"):
            m, p = numerics.get(name, {}).get(part), numerics["transformers_bf16"][part]
            bound = BF16_RATIO * p["rel_max"] + BF16_SLACK
            if m is not None and (not m["finite"] or m["rel_max"] > bound):
                failures.append(f"{name} {part}: rel {m['rel_max']:.3e} > {bound:.3e}")

    log("check: transformers generate speed (peer)")
    report["transformers_decode"] = hf_decode_speed(peer, vocab, gpu, sync)
    if args.target == "cuda":
        report["transformers_max_memory_allocated"] = torch.cuda.max_memory_allocated()
        log("check: transformers static cache + torch.compile speed (peer)")
        report["transformers_static_compiled"] = hf_static_compiled_speed(
            peer, vocab, gpu, sync, t0 + args.budget_s)
    del peer
    report["engine"] = ours
    engine_steps = ours.get("engine_step", {})
    for mode in ("eager", "graphs"):
        if "error" in engine_steps.get(mode, {"error": "not run"}) and (
                mode == "eager" or args.target == "cuda"):
            failures.append(f"Engine::step {mode}: {engine_steps.get(mode, {}).get('error', 'not run')}")
    agreement = {}
    if all("greedy_tokens" in engine_steps.get(m, {}) for m in ("eager", "graphs")):
        for b in map(str, ENGINE_BATCHES):
            eager_t = engine_steps["eager"]["greedy_tokens"][b]
            graph_t = engine_steps["graphs"]["greedy_tokens"][b]
            prefixes = [common_prefix(x, y) for x, y in zip(eager_t, graph_t)]
            agreement[b] = {
                "identical": sum(x == y for x, y in zip(eager_t, graph_t)) / len(eager_t),
                "mean_common_prefix": statistics.mean(prefixes),
                "tokens_per_sequence": statistics.mean(len(x) for x in eager_t),
            }
    report["engine_greedy_graphs_vs_eager"] = agreement

    log("check: the sworn binary")
    version = subprocess.run([str(args.bin / "sworn"), "--version"], capture_output=True,
                             text=True, env=env, timeout=120)
    report["sworn_version"] = version.stdout + version.stderr
    report["sworn_generate"] = {
        device: run_sworn(args.bin / "sworn", checkpoint, device, env)
        for device in (("cuda", "cpu") if args.target == "cuda" else ("cpu",))
    }
    for device, result in report["sworn_generate"].items():
        if result["exit"] != 0:
            failures.append(f"sworn generate --device {device} exited {result['exit']}")
    if args.target == "cuda" and "cuda: 0 device" in report["sworn_version"]:
        failures.append("sworn --version sees no CUDA device")

    # Batched prefill is the same arithmetic in other GEMM shapes: float32 holds it to the
    # tolerance the numerics above use.
    f32_burst = ours["variants"]["gpu_f32"]["throughput"]["prefill_burst"]
    if f32_burst["max_abs_logit_diff"] > F32_ABS_TOL:
        failures.append(f"f32 batched prefill: max |Δ| {f32_burst['max_abs_logit_diff']:.3e} "
                        f"> {F32_ABS_TOL:e} from one by one")

    # Sampled rows drawn on the device must be the tokens the host draws from whole rows.
    for name in ("gpu_f32", "gpu_bf16"):
        for shape, d in ours["variants"][name]["throughput"]["draws"].items():
            if d["agree"] != d["rows"]:
                failures.append(f"{name} draws {shape}: {d['rows'] - d['agree']} of "
                                f"{d['rows']} rows differ between host and device")

    report["failures"] = failures
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))

    print(f"\ncard: {report.get('card', 'none (dry run on the CPU)')}, "
          f"torch {report['torch']}, transformers {report['transformers']}")
    print(f"{'logits vs transformers f32 CPU':34} {'rel max':>9} {'rel med':>9} {'|Δ| max':>9} {'top-1':>6}  greedy prefix")
    for name, parts in numerics.items():
        for part in ("prefill", "decode"):
            if part not in parts:
                continue
            m = parts[part]
            first = "prefill" if "prefill" in parts else "decode"
            prefix = parts["greedy_prefix_vs_ref"] if part == first else ""
            print(f"{name + ' ' + part:34} {m['rel_max']:9.2e} {m['rel_median']:9.2e} "
                  f"{m['abs_max']:9.2e} {m['top1_agree']:6.2f}  {prefix}")
    for name in ("gpu_f32_graphs", "gpu_bf16_graphs"):
        if name in numerics:
            m = numerics[name]["vs_eager"]
            print(f"{name + ' vs eager decode':34} {m['rel_max']:9.2e} {m['rel_median']:9.2e} "
                  f"{m['abs_max']:9.2e} {m['top1_agree']:6.2f}  {numerics[name]['greedy_prefix_vs_eager']}")
    bf16 = ours["variants"]["gpu_bf16"]["throughput"]
    f32 = ours["variants"]["gpu_f32"]["throughput"]
    print(f"\n{'decode tok/s (ms/step)':24} {'sworn bf16':>18} {'sworn f32':>18} {'transformers bf16':>20} {'ratio bf16':>10}")
    for batch in PEER_BATCHES:
        b = str(batch)
        ob, of, pt = bf16["decode"][b], f32["decode"][b], report["transformers_decode"][b]
        print(f"{'batch ' + b:24} {ob['tokens_per_s']:9.0f} ({ob['ms_per_step']:5.2f}) "
              f"{of['tokens_per_s']:9.0f} ({of['ms_per_step']:5.2f}) "
              f"{pt['tokens_per_s']:11.0f} ({pt['ms_per_step']:5.2f}) "
              f"{ob['tokens_per_s'] / pt['tokens_per_s']:9.2f}x")
    print("same steps, argmax on the device (only ids cross to the host): "
          + ", ".join(f"batch {b}: bf16 {bf16['decode'][str(b)]['device_argmax_tokens_per_s']:.0f}"
                      f" ({bf16['decode'][str(b)]['device_argmax_ms_per_step']:.2f} ms)"
                      for b in PEER_BATCHES))
    print("same steps, temperature 1 sampled on the host: "
          + ", ".join(f"batch {b}: bf16 {bf16['decode'][str(b)]['sampled_t1_tokens_per_s']:.0f}"
                      f" ({bf16['decode'][str(b)]['sampled_t1_ms_per_step']:.2f} ms)"
                      for b in PEER_BATCHES))
    draws = bf16["draws"]
    print("one step's sampled rows (64), logits to tokens, whole rows to the host vs reduced on "
          "the device: " + ", ".join(
              f"{shape} {d['host_ms']:.2f} vs {d['reduced_ms']:.2f} ms ({d['agree']}/{d['rows']} same)"
              for shape, d in draws.items()))
    print_engine_table(report, engine_steps, agreement)
    print(f"prefill {bf16['prefill_tokens']} tokens: bf16 {bf16['prefill_tokens_per_s']:.0f} tok/s, "
          f"f32 {f32['prefill_tokens_per_s']:.0f} tok/s; KV cache {bf16['kv_cache_bytes'] / 2**20:.0f} MiB (bf16, 64 slots x 512)")
    for dtype, figures in (("bf16", bf16), ("f32", f32)):
        burst = figures["prefill_burst"]
        print(f"prefill burst ({dtype}), {burst['prompts']} prompts / {burst['tokens']} tokens: "
              f"one by one {burst['one_by_one_ms']:.1f} ms, batched {burst['batched_ms']:.1f} ms "
              f"({burst['batched_speedup']:.2f}x), max |logit diff| {burst['max_abs_logit_diff']:.2e}")
    for device, result in report["sworn_generate"].items():
        print(f"sworn generate --device {device}: exit {result['exit']}, {result['seconds']:.1f} s")
    print("version:", " | ".join(report["sworn_version"].strip().splitlines()[:4]))
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("PASSED")


if __name__ == "__main__":
    main()
