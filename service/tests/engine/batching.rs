//! Batched decoding and chunked prefill give what one sequence alone gives.

use sworn_service::engine::model::{DecodeInput, LlamaModel, Logits};

use crate::common::*;

/// Same-math-different-shape tolerance: batching changes GEMM shapes, hence rounding.
const BATCH_TOL: f32 = 1e-4;

/// The logits of `prompt` prefilled alone in a cache of its own, then of `steps` greedy
/// decode steps: the reference batched work is held to.
fn greedy_alone(model: &LlamaModel, prompt: &[u32], steps: usize) -> Vec<Vec<f32>> {
    let mut kv = model.new_kv_slots(1, 256).unwrap();
    let slot = kv.acquire().unwrap();
    let mut rows = vec![to_vec(
        &model.prefill(&mut kv, slot, prompt, Logits::Last).unwrap(),
    )];
    for _ in 0..steps {
        let token = argmax(rows.last().unwrap());
        rows.push(to_vec(
            &model
                .decode(&mut kv, &[DecodeInput { slot, token }])
                .unwrap(),
        ));
    }
    rows
}

#[test]
fn decode_batch_of_unequal_sequences_matches_each_alone() {
    let goldens = tiny_goldens("tiny-llama");
    let model = tiny_model("tiny-llama", 256);
    let steps = 12;
    // Alone: each case in its own cache.
    let alone: Vec<_> = (goldens.cases.iter())
        .map(|case| greedy_alone(&model, &case.prompt_ids, steps))
        .collect();
    // Together: slots 0, 2 and 3 (slot 1 released: the cache is read by gathering), the
    // sequences at different positions, listed in a shuffled order.
    let mut kv = model.new_kv_slots(4, 256).unwrap();
    let slots: Vec<usize> = (0..4).map(|_| kv.acquire().unwrap()).collect();
    kv.release(slots[1]).unwrap();
    let used = [slots[0], slots[2], slots[3]];
    for (case, &slot) in goldens.cases.iter().zip(&used) {
        let _ = model
            .prefill(&mut kv, slot, &case.prompt_ids, Logits::Last)
            .unwrap();
    }
    let order = [2usize, 0, 1];
    let mut worst = 0.0f32;
    for step in 1..=steps {
        let batch: Vec<DecodeInput> = order
            .iter()
            .map(|&i| DecodeInput {
                slot: used[i],
                token: argmax(&alone[i][step - 1]),
            })
            .collect();
        let logits = model.decode(&mut kv, &batch).unwrap();
        let flat = to_vec(&logits);
        for (row, &i) in flat.chunks(flat.len() / order.len()).zip(&order) {
            let diff = max_abs_diff(row, &alone[i][step]);
            worst = worst.max(diff);
            assert!(
                diff < BATCH_TOL,
                "sequence {i} step {step}: batched logits differ by {diff}"
            );
            assert_eq!(
                argmax(row),
                argmax(&alone[i][step]),
                "sequence {i} step {step}: greedy token differs"
            );
        }
    }
    eprintln!("batched vs alone: max |Δ| = {worst:e} over {steps} steps");
}

#[test]
fn chunked_prefill_matches_one_shot() {
    let goldens = tiny_goldens("tiny-qwen2");
    let model = tiny_model("tiny-qwen2", 256);
    let case = &goldens.cases[0];
    let (head, tail) = case.prompt_ids.split_at(case.prompt_ids.len() / 2);
    let mut kv = model.new_kv_slots(1, 256).unwrap();
    let slot = kv.acquire().unwrap();
    let _ = model.prefill(&mut kv, slot, head, Logits::Last).unwrap();
    let chunked = to_vec(&model.prefill(&mut kv, slot, tail, Logits::All).unwrap());
    let vocab = case.vocab;
    let expected = &case.logits[head.len() * vocab..];
    let diff = max_abs_diff(&chunked, expected);
    eprintln!("chunked prefill vs transformers: max |Δ| = {diff:e}");
    assert!(diff < TINY_LOGITS_TOL, "chunked prefill differs by {diff}");
    assert_eq!(kv.len(slot).unwrap(), case.prompt_ids.len());
}

#[test]
fn released_slot_is_reused_from_scratch() {
    let goldens = tiny_goldens("tiny-llama");
    let model = tiny_model("tiny-llama", 256);
    let mut kv = model.new_kv_slots(1, 256).unwrap();
    let slot = kv.acquire().unwrap();
    let _ = model
        .prefill(&mut kv, slot, &goldens.cases[2].prompt_ids, Logits::Last)
        .unwrap();
    kv.release(slot).unwrap();
    let slot = kv.acquire().unwrap();
    let case = &goldens.cases[1];
    let logits = to_vec(
        &model
            .prefill(&mut kv, slot, &case.prompt_ids, Logits::All)
            .unwrap(),
    );
    assert!(
        max_abs_diff(&logits, &case.logits) < TINY_LOGITS_TOL,
        "stale KV entries leaked into a new sequence"
    );
}

#[test]
fn batched_prefill_of_unequal_prompts_matches_each_alone() {
    let goldens = tiny_goldens("tiny-llama");
    let model = tiny_model("tiny-llama", 256);
    let lens: Vec<usize> = goldens.cases.iter().map(|c| c.prompt_ids.len()).collect();
    assert!(
        lens.iter().any(|&l| l != lens[0]),
        "the cases must differ in length to exercise padding: {lens:?}"
    );
    let steps = 8;
    // Alone: each prompt prefilled by itself, then greedy decode.
    let alone: Vec<_> = (goldens.cases.iter())
        .map(|case| greedy_alone(&model, &case.prompt_ids, steps))
        .collect();
    // Together: one batched prefill into slots 3, 0, 2 (out of order, slot 1 left empty),
    // then batched decode over the padding each shorter prompt left behind.
    let mut kv = model.new_kv_slots(4, 256).unwrap();
    let slots: Vec<usize> = (0..4).map(|_| kv.acquire().unwrap()).collect();
    let used = [slots[3], slots[0], slots[2]];
    let rows: Vec<(usize, &[u32])> = (used.iter().copied())
        .zip(goldens.cases.iter().map(|c| c.prompt_ids.as_slice()))
        .collect();
    let first = to_vec(&model.prefill_batch(&mut kv, &rows).unwrap());
    let vocab = first.len() / rows.len();
    let mut worst = 0.0f32;
    for (i, row) in first.chunks(vocab).enumerate() {
        let diff = max_abs_diff(row, &alone[i][0]);
        worst = worst.max(diff);
        assert!(
            diff < BATCH_TOL,
            "prompt {i}: batched prefill differs by {diff}"
        );
        assert_eq!(
            kv.len(used[i]).unwrap(),
            lens[i],
            "prompt {i}: cache length"
        );
        // And against transformers' last position.
        let golden = &goldens.cases[i].logits[(lens[i] - 1) * vocab..lens[i] * vocab];
        let diff = max_abs_diff(row, golden);
        assert!(
            diff < TINY_LOGITS_TOL,
            "prompt {i}: differs from transformers by {diff}"
        );
    }
    for step in 1..=steps {
        let batch: Vec<DecodeInput> = (0..used.len())
            .map(|i| DecodeInput {
                slot: used[i],
                token: argmax(&alone[i][step - 1]),
            })
            .collect();
        let flat = to_vec(&model.decode(&mut kv, &batch).unwrap());
        for (i, row) in flat.chunks(vocab).enumerate() {
            let diff = max_abs_diff(row, &alone[i][step]);
            worst = worst.max(diff);
            assert!(
                diff < BATCH_TOL,
                "prompt {i} step {step}: differs by {diff}"
            );
        }
    }
    eprintln!("batched prefill vs alone: max |Δ| = {worst:e}");
    // A slot that is not empty is refused, and nothing is written.
    let err = model.prefill_batch(&mut kv, &rows[..1]);
    assert!(err.is_err(), "a used slot must be refused");
}
