//! Batched decoding and chunked prefill give what one sequence alone gives.

use sworn_service::engine::model::{DecodeInput, Logits};

use crate::common::*;

/// Same-math-different-shape tolerance: batching changes GEMM shapes, hence rounding.
const BATCH_TOL: f32 = 1e-4;

#[test]
fn decode_batch_of_unequal_sequences_matches_each_alone() {
    let goldens = tiny_goldens("tiny-llama");
    let model = tiny_model("tiny-llama", 256);
    let steps = 12;
    // Alone: each case in its own cache.
    let mut alone = Vec::new();
    for case in &goldens.cases {
        let mut kv = model.new_kv_slots(1, 256).unwrap();
        let slot = kv.acquire().unwrap();
        let mut rows = vec![to_vec(
            &model
                .prefill(&mut kv, slot, &case.prompt_ids, Logits::Last)
                .unwrap(),
        )];
        for _ in 0..steps {
            let token = argmax(rows.last().unwrap());
            rows.push(to_vec(
                &model
                    .decode(&mut kv, &[DecodeInput { slot, token }])
                    .unwrap(),
            ));
        }
        alone.push(rows);
    }
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
