"""Where batch-1 decode time could go: SmolLM2-135M's matmuls alone, per token step.

The model's linear layers at decode shapes (hidden 576, intermediate 1536, 30 layers,
fused QKV and gate/up as the engine runs them, vocab 49,152 head) with random weights, on
2 threads: float32, bfloat16, and libtorch's dynamic int8 (x86/fbgemm) quantized linear.
Compare with the engine's whole decode step (BENCHMARKS.md, Engine) to see how much of it
is matmul and what int8 weights would leave.

Run with the reference environment's Python (torch 2.11.0; `make fixtures` creates it):
    ~/.cache/sworn/refvenv-*/bin/python benches/probes/int8_matmul.py
"""
import time, torch
torch.set_num_threads(2)
torch.backends.quantized.engine = "x86"
H, I, L, V = 576, 1536, 30, 49152
def layer_linears():
    # fused qkv (576 -> 576 + 2*192), o (576->576), gate_up (576 -> 2*1536), down (1536 -> 576)
    return [torch.nn.Linear(H, H + 2 * 192, bias=False), torch.nn.Linear(H, H, bias=False),
            torch.nn.Linear(H, 2 * I, bias=False), torch.nn.Linear(I, H, bias=False)]
layers = [layer_linears() for _ in range(L)]
head = torch.nn.Linear(H, V, bias=False)
def run(mods, head, x_of, n):
    with torch.no_grad():
        for _ in range(3):
            step(mods, head, x_of)
        t = time.perf_counter()
        for _ in range(n):
            step(mods, head, x_of)
        return (time.perf_counter() - t) / n
def step(mods, head, x_of):
    for qkv, o, gu, down in mods:
        x = x_of(H)
        qkv(x); o(x); gu(x); down(x_of(I))
    head(x_of(H))
for batch in (1, 16):
    xs = {H: torch.randn(batch, H), I: torch.randn(batch, I)}
    f32 = run(layers, head, lambda d: xs[d], 20)
    bl = [[m.to(torch.bfloat16) for m in l] for l in [[torch.nn.Linear(m.in_features, m.out_features, bias=False) for m in l] for l in layers]]
    bh = torch.nn.Linear(H, V, bias=False).to(torch.bfloat16)
    xb = {k: v.to(torch.bfloat16) for k, v in xs.items()}
    bf16 = run(bl, bh, lambda d: xb[d], 20)
    q = [[torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(m), {torch.nn.Linear}, dtype=torch.qint8) for m in l] for l in layers]
    qh = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(head), {torch.nn.Linear}, dtype=torch.qint8)
    i8 = run(q, qh, lambda d: xs[d], 20)
    print(f"batch {batch}: matmuls per token step f32 {f32*1e3:.1f} ms, bf16 {bf16*1e3:.1f} ms, int8 dynamic {i8*1e3:.1f} ms "
          f"-> ceilings {batch/f32:.0f} / {batch/bf16:.0f} / {batch/i8:.0f} tok/s")
