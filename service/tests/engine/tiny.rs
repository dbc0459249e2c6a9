//! The tiny random Llama (Llama-3 rope scaling, untied head, GQA) and Qwen2 (q/k/v
//! biases, tied head) checkpoints against transformers' float32 logits and greedy paths.

use sworn_service::engine::model::{DecodeInput, Logits};

use crate::common::*;

fn check_prompt_logits(name: &str) {
    let goldens = tiny_goldens(name);
    let model = tiny_model(name, 256);
    let mut worst = 0.0f32;
    for case in &goldens.cases {
        let mut kv = model.new_kv_slots(1, 256).unwrap();
        let slot = kv.acquire().unwrap();
        let logits = model
            .prefill(&mut kv, slot, &case.prompt_ids, Logits::All)
            .unwrap();
        assert_eq!(
            logits.size(),
            [case.prompt_ids.len() as i64, case.vocab as i64]
        );
        let diff = max_abs_diff(&to_vec(&logits), &case.logits);
        worst = worst.max(diff);
        assert!(
            diff < TINY_LOGITS_TOL,
            "{name}: prompt logits differ by {diff}"
        );
    }
    eprintln!("{name}: prompt logits max |Δ| = {worst:e} (tolerance {TINY_LOGITS_TOL:e})");
}

fn check_greedy(name: &str) {
    let goldens = tiny_goldens(name);
    let model = tiny_model(name, 256);
    for (i, case) in goldens.cases.iter().enumerate() {
        let mut kv = model.new_kv_slots(1, 256).unwrap();
        let slot = kv.acquire().unwrap();
        let first = model
            .prefill(&mut kv, slot, &case.prompt_ids, Logits::Last)
            .unwrap();
        let mut tokens = vec![argmax(&to_vec(&first))];
        while tokens.len() < case.greedy.len() {
            let token = *tokens.last().unwrap();
            let logits = model
                .decode(&mut kv, &[DecodeInput { slot, token }])
                .unwrap();
            tokens.push(argmax(&to_vec(&logits)));
        }
        let compared = assert_greedy_matches(
            &tokens,
            &case.greedy,
            &case.greedy_gaps,
            &format!("{name} case {i}"),
        );
        eprintln!(
            "{name} case {i}: {compared}/{} greedy tokens identical",
            case.greedy.len()
        );
    }
}

#[test]
fn tiny_llama_prompt_logits_match_transformers() {
    check_prompt_logits("tiny-llama");
}

#[test]
fn tiny_llama_greedy_with_kv_cache_matches_transformers() {
    check_greedy("tiny-llama");
}

#[test]
fn tiny_qwen2_prompt_logits_match_transformers() {
    check_prompt_logits("tiny-qwen2");
}

#[test]
fn tiny_qwen2_greedy_with_kv_cache_matches_transformers() {
    check_greedy("tiny-qwen2");
}
