//! The engine API the server drives (add / step / remove) on the tiny Llama checkpoint
//! with its tokenizer: seeding, batch independence, limits, cancel; and stop strings,
//! which the scheduler applies over it.

use std::ops::ControlFlow;
use std::time::Instant;

use sworn_service::engine::runner::{
    DeviceChoice, Engine, EngineError, EngineOptions, FinishReason, Prefilled,
};
use sworn_service::engine::sampling::{SamplingParams, SamplingRequest};
use sworn_service::scheduler::Scheduler;
use sworn_service::scheduler::engine_adapter::EngineGenerator;
use sworn_service::scheduler::request::{self, GenerationEvent, GenerationRequest};

use crate::common::*;

fn engine(slots: usize, max_ctx: usize) -> Engine {
    let options = EngineOptions {
        device: DeviceChoice::Cpu,
        slots,
        max_ctx,
        ..Default::default()
    };
    Engine::load(&fixtures().join("tiny-llama"), &options).unwrap()
}

fn sampled(seed: u64, max_tokens: u32) -> SamplingParams {
    SamplingRequest {
        temperature: Some(1.0),
        top_p: Some(0.95),
        seed: Some(seed),
        max_tokens: Some(max_tokens),
        ..Default::default()
    }
    .validate(256)
    .unwrap()
}

fn prompt(i: usize) -> Vec<u32> {
    tiny_goldens("tiny-llama").cases[i].prompt_ids.clone()
}

fn run(engine: &mut Engine, ids: &[u32], params: SamplingParams) -> Vec<u32> {
    generate_alone(engine, ids, params, |_| ControlFlow::Continue(()))
        .unwrap()
        .tokens
}

#[test]
fn greedy_generation_follows_transformers() {
    let mut engine = engine(1, 256);
    let case = &tiny_goldens("tiny-llama").cases[0];
    let out = generate_alone(
        &mut engine,
        &case.prompt_ids,
        SamplingParams::greedy(case.greedy.len() as u32),
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    // The tiny model's EOS (id 1) may appear; the reference greedy path never stops.
    let n = out.tokens.len();
    assert_greedy_matches(
        &out.tokens,
        &case.greedy[..n],
        &case.greedy_gaps,
        "engine tiny-llama",
    );
    assert_eq!(
        out.text,
        engine.tokenizer().decode(&out.tokens, true).unwrap()
    );
}

#[test]
fn seeded_sampling_is_reproducible() {
    let mut engine = engine(1, 256);
    let a = run(&mut engine, &prompt(0), sampled(11, 24));
    let b = run(&mut engine, &prompt(0), sampled(11, 24));
    let c = run(&mut engine, &prompt(0), sampled(12, 24));
    assert_eq!(a, b);
    assert_ne!(a, c, "seeds 11 and 12 drew the same 24 tokens");
}

#[test]
fn seeded_sequence_ignores_its_batch_neighbours() {
    let mut alone = engine(1, 256);
    let expected = run(&mut alone, &prompt(0), sampled(5, 20));

    let mut shared = engine(3, 256);
    let first = shared.add(&prompt(1), sampled(99, 30)).unwrap();
    let mine = shared.add(&prompt(0), sampled(5, 20)).unwrap();
    let mut tokens = vec![mine.token];
    let mut collect = |events: Vec<sworn_service::engine::runner::SeqEvent>| {
        tokens.extend(events.iter().filter(|e| e.id == mine.id).map(|e| e.token));
    };
    collect(shared.step().unwrap());
    // A third sequence joins mid-flight.
    let _late = shared.add(&prompt(2), SamplingParams::greedy(30)).unwrap();
    while shared.running() > 0 {
        collect(shared.step().unwrap());
    }
    let out = shared.remove(mine.id).unwrap();
    assert_eq!(out.tokens, expected, "neighbours changed a seeded sequence");
    assert_eq!(tokens, expected, "streamed events match the output");
    shared.remove(first.id).unwrap();
}

#[test]
fn max_tokens_ends_with_length() {
    let mut engine = engine(1, 256);
    let out = generate_alone(&mut engine, &prompt(1), sampled(3, 7), |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    if out.finish_reason == FinishReason::Length {
        assert_eq!(out.completion_tokens, 7);
    } else {
        assert_eq!(out.finish_reason, FinishReason::Stop);
        assert!(
            engine
                .tokenizer()
                .eos_ids()
                .contains(out.tokens.last().unwrap())
        );
    }
}

#[test]
fn full_slot_ends_with_length() {
    let ids = prompt(2);
    let max_ctx = ids.len() + 5;
    let mut engine = engine(1, max_ctx);
    let out = generate_alone(&mut engine, &ids, SamplingParams::greedy(100), |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let eos = engine.tokenizer().eos_ids().to_vec();
    if !out.tokens.iter().any(|t| eos.contains(t)) {
        assert_eq!(out.finish_reason, FinishReason::Length);
        // Prefill holds the prompt; each further token needs one more position.
        assert_eq!(out.completion_tokens, max_ctx - ids.len() + 1);
    }
}

/// Stop strings are the scheduler's: over the real engine and tokenizer, one spanning
/// several tokens ends the answer just before it, and no part of it is streamed.
#[test]
fn stop_string_spanning_tokens_is_trimmed() {
    let mut reference = engine(1, 256);
    let full = generate_alone(
        &mut reference,
        &prompt(0),
        SamplingParams::greedy(30),
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    let chars: Vec<char> = full.text.chars().collect();
    assert!(chars.len() >= 12, "need some text to cut: {:?}", full.text);
    // A stop string from the middle of the text, spanning several tokens.
    let stop: String = chars[6..11].iter().collect();
    let cut = full.text.find(&stop).unwrap();
    let (scheduler, engine_thread) =
        Scheduler::start(EngineGenerator::new(engine(1, 256)), 1).unwrap();
    let mut events = scheduler
        .submit(GenerationRequest {
            prompt_tokens: prompt(0),
            params: SamplingRequest {
                temperature: Some(0.0),
                max_tokens: Some(30),
                stop: vec![stop],
                seed: Some(0),
                ..SamplingRequest::default()
            }
            .validate(u32::MAX)
            .unwrap(),
            constraint: None,
            enqueued_at: Instant::now(),
            choices: 1,
        })
        .unwrap();
    let mut streamed = String::new();
    let (reason, completion_tokens) = loop {
        match events
            .blocking_recv()
            .expect("the engine thread ended early")
        {
            GenerationEvent::Started { .. } => {}
            GenerationEvent::Text { text, .. } => streamed.push_str(&text),
            GenerationEvent::Finished {
                reason,
                completion_tokens,
            } => break (reason, completion_tokens),
        }
    };
    drop(scheduler);
    engine_thread.join();
    assert_eq!(reason, request::FinishReason::Stop);
    assert_eq!(
        streamed,
        full.text[..cut],
        "the text before the stop string, and no part of it"
    );
    assert!((completion_tokens as usize) < full.tokens.len());
}

#[test]
fn removing_a_running_sequence_cancels_it_and_frees_the_slot() {
    let mut engine = engine(1, 256);
    let mut seen = 0;
    let out = generate_alone(&mut engine, &prompt(0), SamplingParams::greedy(50), |_| {
        seen += 1;
        if seen == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    assert_eq!(out.completion_tokens, 3);
    assert_eq!(engine.free_slots(), 1);
}

#[test]
fn slots_and_context_are_enforced() {
    let mut engine = engine(1, 32);
    let a = engine.add(&prompt(0), SamplingParams::greedy(10)).unwrap();
    assert!(matches!(
        engine.add(&prompt(1), SamplingParams::greedy(10)),
        Err(EngineError::NoFreeSlot { slots: 1 })
    ));
    let out = engine.remove(a.id).unwrap();
    assert_eq!(out.finish_reason, FinishReason::Cancelled);
    assert!(matches!(
        engine.remove(a.id),
        Err(EngineError::UnknownSequence { .. })
    ));
    assert!(matches!(
        engine.add(&[], SamplingParams::greedy(1)),
        Err(EngineError::EmptyPrompt)
    ));
    let long = vec![5u32; 32];
    assert!(matches!(
        engine.add(&long, SamplingParams::greedy(1)),
        Err(EngineError::ContextLengthExceeded {
            tokens: 32,
            max: 32
        })
    ));
    assert!(
        engine.add(&prompt(1), SamplingParams::greedy(2)).is_ok(),
        "the slot was freed"
    );
}

#[test]
fn engine_can_move_to_the_engine_thread() {
    // The server owns the engine on a dedicated thread: it must be `Send`.
    fn assert_send<T: Send>() {}
    assert_send::<Engine>();
}

#[test]
fn batched_admission_draws_what_each_draws_alone() {
    let mut alone = engine(1, 256);
    let params = [sampled(5, 20), sampled(6, 16), SamplingParams::greedy(12)];
    let expected: Vec<Vec<u32>> = (0..3)
        .map(|i| run(&mut alone, &prompt(i), params[i].clone()))
        .collect();

    let mut shared = engine(4, 256);
    let prompts: Vec<Vec<u32>> = (0..3).map(prompt).collect();
    let jobs = (0..3)
        .map(|i| (prompts[i].as_slice(), params[i].clone(), None))
        .collect();
    let firsts = shared.add_batch(jobs).unwrap();
    assert_eq!(firsts.len(), 3);
    let mut tokens: Vec<Vec<u32>> = firsts.iter().map(|e| vec![e.token]).collect();
    while shared.running() > 0 {
        for event in shared.step().unwrap() {
            let i = firsts.iter().position(|f| f.id == event.id).unwrap();
            tokens[i].push(event.token);
        }
    }
    for (i, first) in firsts.iter().enumerate() {
        let out = shared.remove(first.id).unwrap();
        assert_eq!(
            out.tokens, expected[i],
            "request {i}: batched prefill changed it"
        );
        assert_eq!(tokens[i], expected[i], "request {i}: streamed events");
    }
    assert_eq!(shared.free_slots(), 4, "every slot back");
    // More prompts than free slots: refused whole, nothing held.
    let jobs = (0..5)
        .map(|i| (prompts[i % 3].as_slice(), SamplingParams::greedy(4), None))
        .collect();
    assert!(matches!(
        shared.add_batch(jobs),
        Err(EngineError::NoFreeSlot { .. })
    ));
    assert_eq!(shared.free_slots(), 4);
}

#[test]
fn a_prompt_prefilled_in_chunks_between_steps_draws_what_it_draws_whole() {
    let mut alone = engine(1, 256);
    let long = prompt(2);
    assert!(long.len() > 10, "the prompt must span several chunks");
    let expected = run(&mut alone, &long, sampled(7, 16));
    let neighbour_expected = run(&mut alone, &prompt(0), sampled(8, 24));

    let mut shared = engine(2, 256);
    let all_free = shared.free_slots();
    let neighbour = shared.add(&prompt(0), sampled(8, 24)).unwrap();
    let mut neighbour_tokens = vec![neighbour.token];
    // Chunks of 4 positions, the neighbour decoding a token between each.
    let free = shared.free_slots();
    let mut pending = shared.begin_prefill(&long, sampled(7, 16), None).unwrap();
    assert_eq!(
        shared.free_slots() + 1,
        free,
        "the pending prompt holds its slot"
    );
    let first = loop {
        match shared.continue_prefill(pending, 4).unwrap() {
            Prefilled::More(more) => {
                assert!(more.remaining() > 0);
                pending = more;
                let events = shared.step().unwrap();
                assert!(
                    events.iter().all(|e| e.id == neighbour.id),
                    "only the neighbour decodes"
                );
                neighbour_tokens.extend(events.iter().map(|e| e.token));
            }
            Prefilled::Started(first) => break first,
        }
    };
    let mut tokens = vec![first.token];
    while shared.running() > 0 {
        for event in shared.step().unwrap() {
            if event.id == first.id {
                tokens.push(event.token);
            } else {
                neighbour_tokens.push(event.token);
            }
        }
    }
    assert_eq!(tokens, expected, "chunked prefill changed the answer");
    assert_eq!(shared.remove(first.id).unwrap().tokens, expected);
    assert_eq!(
        neighbour_tokens, neighbour_expected,
        "the neighbour changed"
    );
    shared.remove(neighbour.id).unwrap();
    // A prefill abandoned half way frees its slot.
    let pending = shared.begin_prefill(&long, sampled(7, 16), None).unwrap();
    let Prefilled::More(pending) = shared.continue_prefill(pending, 4).unwrap() else {
        panic!("4 positions cannot hold the prompt");
    };
    assert_eq!(shared.free_slots() + 1, all_free);
    shared.abandon_prefill(pending);
    assert_eq!(
        shared.free_slots(),
        all_free,
        "the abandoned prompt's slot is free"
    );
}

/// The tiny checkpoint with a tokenizer that spells only its first `spelled` ids: the
/// model's logits are wider than its vocabulary, so a free draw may pick an id nobody can
/// detokenise.
fn engine_with_short_vocabulary(slots: usize, spelled: u64) -> (tempfile::TempDir, Engine) {
    let from = fixtures().join("tiny-llama");
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(from.join(file), dir.path().join(file)).unwrap();
    }
    let mut tokenizer: serde_json::Value =
        serde_json::from_slice(&std::fs::read(from.join("tokenizer.json")).unwrap()).unwrap();
    let model = &mut tokenizer["model"];
    let vocab = model["vocab"].as_object_mut().unwrap();
    vocab.retain(|_, id| id.as_u64().unwrap() < spelled);
    let kept: std::collections::HashSet<String> = vocab.keys().cloned().collect();
    let merges = model["merges"].as_array_mut().unwrap();
    merges.retain(|merge| {
        let pair: Vec<String> = match merge {
            serde_json::Value::String(s) => s.split(' ').map(str::to_string).collect(),
            other => serde_json::from_value(other.clone()).unwrap(),
        };
        kept.contains(&pair.concat()) && pair.iter().all(|p| kept.contains(p))
    });
    std::fs::write(
        dir.path().join("tokenizer.json"),
        serde_json::to_vec(&tokenizer).unwrap(),
    )
    .unwrap();
    let options = EngineOptions {
        device: DeviceChoice::Cpu,
        slots,
        max_ctx: 256,
        ..Default::default()
    };
    let engine = Engine::load(dir.path(), &options).unwrap();
    (dir, engine)
}

fn hot(seed: u64) -> SamplingParams {
    SamplingRequest {
        temperature: Some(2.0),
        seed: Some(seed),
        max_tokens: Some(4),
        ..Default::default()
    }
    .validate(256)
    .unwrap()
}

#[test]
fn a_first_token_nobody_can_spell_fails_the_whole_admission_and_holds_no_slot() {
    let (_dir, mut engine) = engine_with_short_vocabulary(4, 150);
    let prompts: Vec<Vec<u32>> = (0..3).map(prompt).collect();
    let (mut batch_failed, mut choices_failed) = (0, 0);
    for seed in 0..40 {
        let jobs = (0..3)
            .map(|i| (prompts[i].as_slice(), hot(seed * 3 + i as u64), None))
            .collect();
        match engine.add_batch(jobs) {
            Ok(events) => {
                for event in events {
                    engine.remove(event.id).unwrap();
                }
            }
            Err(EngineError::Tokenizer(_)) => batch_failed += 1,
            Err(other) => panic!("add_batch: {other}"),
        }
        assert_eq!(engine.free_slots(), 4, "add_batch, seed {seed}");
        assert_eq!(engine.running(), 0, "add_batch, seed {seed}");
        let params: Vec<SamplingParams> = (0..3).map(|i| hot(1000 + seed * 3 + i)).collect();
        match engine.add_choices(&prompts[0], &params, None) {
            Ok(events) => {
                for event in events {
                    engine.remove(event.id).unwrap();
                }
            }
            Err(EngineError::Tokenizer(_)) => choices_failed += 1,
            Err(other) => panic!("add_choices: {other}"),
        }
        assert_eq!(engine.free_slots(), 4, "add_choices, seed {seed}");
        assert_eq!(engine.running(), 0, "add_choices, seed {seed}");
    }
    // Half the ids cannot be spelled: most admissions of three draws hit one.
    assert!(batch_failed > 0 && batch_failed < 40, "{batch_failed}");
    assert!(
        choices_failed > 0 && choices_failed < 40,
        "{choices_failed}"
    );
}
