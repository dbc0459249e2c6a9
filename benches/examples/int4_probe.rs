//! Whether libtorch's weight-only int4 CPU kernel can hold a Q4_1 GGUF's weights as they
//! are, and what it costs against float32 at SmolLM2-135M's decode shapes.
//!
//! Q4_1 stores each block of 32 weights as 4-bit codes `q` with a scale `d` and a minimum
//! `m`: `w = q·d + m`. ATen's `_weight_int4pack_mm_for_cpu` dequantises group-wise as
//! `w = (q − 8)·scale + zero`, so `scale = d` and `zero = m + 8·d` give the same weights.
//! The probe checks that identity against a float32 matmul of the dequantised weights for
//! each activation dtype the kernel takes, then times the forms on the model's layer
//! shapes (30 layers of fused q/k/v, o, fused gate/up and down; the head stays dense, as
//! the model's tied Q8_0 embedding has no exact int4 form) at batch 1, 4 and 16,
//! and at prefill's 128 rows.
//!
//! Run: `cargo run --release -p sworn-benches --example int4_probe [threads]`.

use std::time::Instant;

use tch::{Device, Kind, Tensor};

/// SmolLM2-135M: hidden, intermediate, layers.
const H: i64 = 576;
const I: i64 = 1536;
const LAYERS: usize = 30;
const GROUP: i64 = 32;
const VOCAB: i64 = 49_152;

/// One linear layer, dense and packed.
struct Linear {
    f32: Tensor,
    bf16: Tensor,
    packed: Tensor,
    /// `[k / group, n, 2]`: scale then zero, in float32, bfloat16 and float16.
    scales_zeros: [Tensor; 3],
}

impl Linear {
    /// Random Q4_1-style weights `[n, k]`: codes, per-block scale and minimum.
    fn random(n: i64, k: i64) -> Linear {
        let codes = Tensor::randint(16, [n, k], (Kind::Int, Device::Cpu));
        let d = Tensor::rand([n, k / GROUP], (Kind::Float, Device::Cpu)) * 0.02 + 0.001;
        let m = Tensor::rand([n, k / GROUP], (Kind::Float, Device::Cpu)) * -0.15;
        let dense = codes.to_kind(Kind::Float).view([n, k / GROUP, GROUP]) * d.unsqueeze(-1)
            + m.unsqueeze(-1);
        let f32 = dense.view([n, k]).contiguous();
        let zero = &m + &d * 8.0;
        let scales_zeros =
            Tensor::stack(&[d.transpose(0, 1), zero.transpose(0, 1)], 2).contiguous();
        let packed = codes.internal_convert_weight_to_int4pack_for_cpu(1);
        Linear {
            bf16: f32.to_kind(Kind::BFloat16),
            f32,
            packed,
            scales_zeros: [Kind::Float, Kind::BFloat16, Kind::Half]
                .map(|k| scales_zeros.to_kind(k)),
        }
    }

    /// The int4 kernel with activations in `act` and scales/zeros in `meta`.
    fn int4(&self, x: &Tensor, act: Kind, meta: Kind) -> Result<Tensor, tch::TchError> {
        let meta = match meta {
            Kind::Float => &self.scales_zeros[0],
            Kind::BFloat16 => &self.scales_zeros[1],
            _ => &self.scales_zeros[2],
        };
        x.to_kind(act)
            .f_internal_weight_int4pack_mm_for_cpu(&self.packed, GROUP, meta)
            .map(|y| y.to_kind(Kind::Float))
    }
}

fn time<F: FnMut()>(mut step: F) -> f64 {
    for _ in 0..3 {
        step();
    }
    let runs = 20;
    let start = Instant::now();
    for _ in 0..runs {
        step();
    }
    start.elapsed().as_secs_f64() / f64::from(runs)
}

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    tch::set_num_threads(threads);
    let _guard = tch::no_grad_guard();
    tch::manual_seed(7);

    let forms = [
        ("int4 f32", Kind::Float, Kind::Float),
        ("int4 bf16", Kind::BFloat16, Kind::BFloat16),
        ("int4 f16", Kind::Half, Kind::Half),
        ("int4 bf16/f32", Kind::BFloat16, Kind::Float),
    ];
    let check = Linear::random(I, H);
    let x = Tensor::randn([4, H], (Kind::Float, Device::Cpu));
    let exact = x.matmul(&check.f32.tr());
    let scale = exact.abs().max().double_value(&[]);
    println!("against float32 on the same dequantised weights (max |y| {scale:.3}):");
    for (name, act, meta) in forms {
        match check.int4(&x, act, meta) {
            Ok(y) => {
                let err = (&y - &exact).abs().max().double_value(&[]);
                println!("  {name:<14} max |diff| {err:.3e}");
            }
            Err(e) => println!(
                "  {name:<14} refused: {}",
                e.to_string().lines().next().unwrap_or("")
            ),
        }
    }

    let layers: Vec<[Linear; 4]> = (0..LAYERS)
        .map(|_| {
            [
                Linear::random(H + 2 * 192, H),
                Linear::random(H, H),
                Linear::random(2 * I, H),
                Linear::random(H, I),
            ]
        })
        .collect();
    println!("threads {threads}; the 120 layer matmuls of one decode step, ms:");
    for batch in [1i64, 4, 16, 128] {
        let xh = Tensor::randn([batch, H], (Kind::Float, Device::Cpu));
        let xi = Tensor::randn([batch, I], (Kind::Float, Device::Cpu));
        let dense = |kind: Kind| {
            let (xh, xi) = (xh.to_kind(kind), xi.to_kind(kind));
            time(|| {
                for [qkv, o, gate_up, down] in &layers {
                    let w = |l: &Linear| {
                        if kind == Kind::Float {
                            l.f32.tr()
                        } else {
                            l.bf16.tr()
                        }
                    };
                    let _ = xh.matmul(&w(qkv));
                    let _ = xh.matmul(&w(o));
                    let _ = xh.matmul(&w(gate_up));
                    let _ = xi.matmul(&w(down));
                }
            })
        };
        let mut row = format!(
            "  batch {batch:>2}: float32 {:.2}, bfloat16 {:.2}",
            dense(Kind::Float) * 1e3,
            dense(Kind::BFloat16) * 1e3
        );
        for (name, act, meta) in forms {
            // The scalar forms take seconds; past decode's rows only bfloat16 is timed.
            if check.int4(&x, act, meta).is_err() || (batch > 16 && act != Kind::BFloat16) {
                continue;
            }
            let t = time(|| {
                for [qkv, o, gate_up, down] in &layers {
                    let _ = qkv.int4(&xh, act, meta);
                    let _ = o.int4(&xh, act, meta);
                    let _ = gate_up.int4(&xh, act, meta);
                    let _ = down.int4(&xi, act, meta);
                }
            });
            row.push_str(&format!(", {name} {:.2}", t * 1e3));
        }
        println!("{row}");
    }

    // The output head, `[vocab, hidden]` (SmolLM2's tied embedding): the largest single
    // weight a decode step reads, dense in float32 or bfloat16.
    let head = Tensor::randn([VOCAB, H], (Kind::Float, Device::Cpu)) * 0.05;
    let head_bf16 = head.to_kind(Kind::BFloat16);
    println!("the output head [{VOCAB}, {H}], ms:");
    for batch in [1i64, 4, 8, 16] {
        let x = Tensor::randn([batch, H], (Kind::Float, Device::Cpu));
        let xb = x.to_kind(Kind::BFloat16);
        let f32 = time(|| {
            let _ = x.matmul(&head.tr());
        });
        let bf16 = time(|| {
            let _ = xb.matmul(&head_bf16.tr()).to_kind(Kind::Float);
        });
        println!(
            "  batch {batch:>2}: float32 {:.2}, bfloat16 {:.2}",
            f32 * 1e3,
            bf16 * 1e3
        );
    }
}
