//! The fixed-shape decode step (what a CUDA graph captures), run uncaptured on the CPU,
//! against the eager decode step, on random weights with SmolLM2-135M's proportions.

use tch::{Device, Kind, Tensor};

use super::*;
use crate::engine::config::{Architecture, ModelConfig};
use crate::engine::cuda_graph::{DecodeGraphs, GraphError};
use crate::engine::model::Logits;
use crate::engine::weights::WeightSet;

/// Slots of the test caches: buckets 1, 2, 4 and 6, so the last bucket is not a power of
/// two and padding happens inside both kinds.
const SLOTS: usize = 6;
const MAX_CTX: usize = 40;
/// Float32 logits of the two paths may differ only by rounding: the fixed step reduces
/// over all `MAX_CTX` keys (the masked ones contribute exact zeros) where the eager one
/// reduces over the batch's span, so sums are grouped differently. The logits here reach
/// ~20, where a float32 ulp is 1.9e-6; measured differences are 1–3 ulps (≤ 5.7e-6), and
/// the bound is ~16 ulps.
const LOGIT_TOL: f64 = 3e-5;

/// SmolLM2-135M's shape scaled down: 3:1 grouped-query attention, head_dim 16, tied head,
/// its RoPE base and RMSNorm epsilon.
fn smollm2_like() -> ModelConfig {
    ModelConfig {
        architecture: Architecture::Llama,
        vocab_size: 384,
        hidden_size: 96,
        intermediate_size: 256,
        num_layers: 3,
        num_heads: 6,
        num_kv_heads: 2,
        head_dim: 16,
        rms_norm_eps: 1e-5,
        rope_theta: 100000.0,
        rope_scaling: None,
        max_position_embeddings: 8192,
        tie_word_embeddings: true,
        qkv_bias: false,
        o_bias: false,
    }
}

/// splitmix64: values that depend on no library's global generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-scale, scale).
    fn tensor(&mut self, shape: &[i64], scale: f32, offset: f32) -> Tensor {
        let n: i64 = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| offset + scale * ((self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0))
            .collect();
        Tensor::from_slice(&values).view(shape)
    }

    fn tokens(&mut self, n: usize, vocab: usize) -> Vec<u32> {
        (0..n)
            .map(|_| (self.next() % vocab as u64) as u32)
            .collect()
    }
}

fn random_model(seed: u64) -> LlamaModel {
    let c = smollm2_like();
    let mut rng = Rng(seed);
    let (h, i) = (c.hidden_size as i64, c.intermediate_size as i64);
    let (q, kv) = (
        (c.num_heads * c.head_dim) as i64,
        (c.num_kv_heads * c.head_dim) as i64,
    );
    let mut w = WeightSet::default();
    // A wide embedding spreads the logits over a few units, as a trained model's are.
    w.insert(
        "model.embed_tokens.weight".into(),
        rng.tensor(&[c.vocab_size as i64, h], 0.5, 0.0),
    );
    for l in 0..c.num_layers {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", [q, h]),
            ("self_attn.k_proj.weight", [kv, h]),
            ("self_attn.v_proj.weight", [kv, h]),
            ("self_attn.o_proj.weight", [h, q]),
            ("mlp.gate_proj.weight", [i, h]),
            ("mlp.up_proj.weight", [i, h]),
            ("mlp.down_proj.weight", [h, i]),
        ] {
            let scale = 1.0 / (shape[1] as f32).sqrt();
            w.insert(format!("{p}.{name}"), rng.tensor(&shape, scale, 0.0));
        }
        for norm in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
            w.insert(format!("{p}.{norm}"), rng.tensor(&[h], 0.1, 1.0));
        }
    }
    w.insert("model.norm.weight".into(), rng.tensor(&[h], 0.1, 1.0));
    LlamaModel::load(c, w, Device::Cpu, Kind::Float, 64).unwrap()
}

/// Max |a − b|.
fn gap(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Both caches with every slot acquired and prefilled with the same prompts.
fn prefilled(model: &LlamaModel, rng: &mut Rng) -> (KvSlots, KvSlots) {
    let mut eager = model.new_kv_slots(SLOTS, MAX_CTX).unwrap();
    let mut fixed = model.new_kv_slots_for_graphs(SLOTS, MAX_CTX).unwrap();
    let vocab = model.config().vocab_size;
    for (slot, len) in [1, 3, 7, 12, 5, 9].into_iter().enumerate() {
        assert_eq!(eager.acquire(), Some(slot));
        assert_eq!(fixed.acquire(), Some(slot));
        let prompt = rng.tokens(len, vocab);
        let a = model
            .prefill(&mut eager, slot, &prompt, Logits::Last)
            .unwrap();
        let b = model
            .prefill(&mut fixed, slot, &prompt, Logits::Last)
            .unwrap();
        assert!(a.equal(&b), "prefill is the same code on both caches");
    }
    (eager, fixed)
}

#[test]
fn fixed_shape_decode_matches_eager_decode_in_every_bucket_with_padding_rows() {
    let model = random_model(0x5eed_0018);
    let mut rng = Rng(0x70c3_0018);
    let vocab = model.config().vocab_size;
    let (mut eager, mut fixed) = prefilled(&model, &mut rng);
    let mut graphs = DecodeGraphs::uncaptured(&model, &fixed).unwrap();
    assert_eq!(graphs.buckets(), [1, 2, 4, 6]);
    assert!(!graphs.is_captured());
    // Batches of 1 (bucket 1), 3 (bucket 4: one padding row), 2 (bucket 2), 5 (bucket 6:
    // one padding row) and 6, slots out of order; twice, so the second round reads what
    // the fixed step wrote in the first.
    let batches: [&[usize]; 5] = [
        &[3],
        &[4, 0, 2],
        &[5, 1],
        &[2, 5, 0, 3, 1],
        &[1, 0, 3, 2, 5, 4],
    ];
    for round in 0..2 {
        for slots in batches {
            let batch: Vec<DecodeInput> = slots
                .iter()
                .zip(rng.tokens(slots.len(), vocab))
                .map(|(&slot, token)| DecodeInput { slot, token })
                .collect();
            let a = model.decode(&mut eager, &batch).unwrap();
            let b = graphs.decode(&model, &mut fixed, &batch).unwrap();
            assert_eq!(a.size(), [slots.len() as i64, vocab as i64]);
            assert_eq!(b.size(), a.size());
            let (err, scale) = (gap(&a, &b), a.abs().max().double_value(&[]));
            assert!(scale > 1.0, "logits spread over units ({scale})");
            assert!(
                err <= LOGIT_TOL,
                "round {round}, slots {slots:?}: max |Δ| {err:e} > {LOGIT_TOL:e} (scale {scale})"
            );
            assert_eq!(
                a.argmax(-1, false),
                b.argmax(-1, false),
                "round {round}, slots {slots:?}: greedy tokens differ"
            );
            for slot in 0..SLOTS {
                assert_eq!(eager.len(slot).unwrap(), fixed.len(slot).unwrap());
            }
        }
    }

    // Padding rows wrote only to the scratch position: every usable position matches the
    // eager cache (no write past a slot's length there either), and slot 0's scratch
    // position holds what the padding rows wrote.
    let scratch = fixed.scratch_position().unwrap() as i64;
    assert_eq!(scratch, MAX_CTX as i64);
    for layer in 0..eager.keys.len() {
        for (e, f) in [
            (&eager.keys[layer], &fixed.keys[layer]),
            (&eager.values[layer], &fixed.values[layer]),
        ] {
            let usable = f.narrow(2, 0, MAX_CTX as i64);
            assert_eq!(usable.size(), e.size());
            assert!(gap(e, &usable) <= LOGIT_TOL, "layer {layer}: caches differ");
            for slot in 0..SLOTS {
                let len = eager.len(slot).unwrap() as i64;
                let past = e
                    .narrow(0, slot as i64, 1)
                    .narrow(2, len, MAX_CTX as i64 - len);
                assert_eq!(
                    past.abs().max().double_value(&[]),
                    0.0,
                    "slot {slot} past its length"
                );
            }
            let pad = f.narrow(0, 0, 1).narrow(2, scratch, 1);
            assert!(
                pad.abs().max().double_value(&[]) > 0.0,
                "padding wrote at scratch"
            );
            let others = f.narrow(0, 1, SLOTS as i64 - 1).narrow(2, scratch, 1);
            assert_eq!(
                others.abs().max().double_value(&[]),
                0.0,
                "only slot 0's scratch"
            );
        }
    }
}

#[test]
fn rows_pack_padded_with_slot_zero_writing_at_the_scratch_position() {
    let rows = DecodeRows {
        slots: vec![4, 2],
        positions: vec![7, 3],
        tokens: vec![11, 12],
    };
    assert_eq!(
        rows.pack(4, 40).unwrap(),
        [
            11, 12, 0, 0, // TOKEN
            4, 2, 0, 0, // SLOT
            7, 3, 0, 0, // POSITION
            7, 3, 40, 40, // WRITE
        ]
    );
    assert_eq!(rows.pack(2, 40).unwrap().len(), 8);
    assert!(matches!(
        rows.pack(1, 40),
        Err(ModelError::BucketTooSmall { rows: 2, bucket: 1 })
    ));
}

#[test]
fn the_fixed_step_refuses_what_the_eager_step_refuses_and_caches_without_scratch() {
    let model = random_model(7);
    let vocab = model.config().vocab_size;
    let mut plain = model.new_kv_slots(2, 16).unwrap();
    assert_eq!(plain.scratch_position(), None);
    assert!(matches!(
        DecodeGraphs::uncaptured(&model, &plain),
        Err(ModelError::NoScratchPosition)
    ));
    let inputs = Tensor::zeros([INPUT_ROWS as i64, 1], (Kind::Int64, Device::Cpu));
    assert!(matches!(
        model.decode_fixed(&mut plain, &inputs),
        Err(ModelError::NoScratchPosition)
    ));

    let mut kv = model.new_kv_slots_for_graphs(2, 16).unwrap();
    let mut graphs = DecodeGraphs::uncaptured(&model, &kv).unwrap();
    for _ in 0..2 {
        kv.acquire().unwrap();
    }
    let _ = model.prefill(&mut kv, 0, &[1, 2], Logits::Last).unwrap();
    let _ = model.prefill(&mut kv, 1, &[3], Logits::Last).unwrap();
    let input = |slot, token| DecodeInput { slot, token };
    let mut decode = |batch: &[DecodeInput], kv: &mut KvSlots| graphs.decode(&model, kv, batch);
    assert!(matches!(
        decode(&[input(0, 1), input(0, 2)], &mut kv),
        Err(ModelError::DuplicateSlot { slot: 0 })
    ));
    assert!(matches!(
        decode(&[input(1, vocab as u32)], &mut kv),
        Err(ModelError::TokenOutOfRange { .. })
    ));
    assert!(matches!(
        decode(&[], &mut kv),
        Err(ModelError::Empty { .. })
    ));
    let mut other = model.new_kv_slots_for_graphs(2, 16).unwrap();
    other.acquire().unwrap();
    assert!(matches!(
        decode(&[input(0, 1)], &mut other),
        Err(ModelError::Graph(GraphError::OtherCache))
    ));
    // Nothing above advanced a slot; a good step still runs.
    assert_eq!((kv.len(0).unwrap(), kv.len(1).unwrap()), (2, 1));
    let logits = decode(&[input(1, 5), input(0, 6)], &mut kv).unwrap();
    assert_eq!(logits.size(), [2, vocab as i64]);
    assert_eq!((kv.len(0).unwrap(), kv.len(1).unwrap()), (3, 2));
    let bad_shape = Tensor::zeros([3, 1], (Kind::Int64, Device::Cpu));
    assert!(matches!(
        model.decode_fixed(&mut kv, &bad_shape),
        Err(ModelError::Torch(_))
    ));
}
