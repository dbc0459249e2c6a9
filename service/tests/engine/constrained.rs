//! Constrained decoding (structured outputs) on SmolLM2: answers sampled at temperature 1
//! under a JSON schema are checked by an independent validator (the `jsonschema` crate),
//! free sequences beside constrained ones are unchanged, and the scheduler carries a
//! request's constraint to the engine.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use serde_json::json;
use sworn_service::engine::constraint::{Constraint, ConstraintSpec};
use sworn_service::engine::runner::{
    DeviceChoice, Engine, EngineOptions, FinishReason, GenerationOutput, SeqId, WeightsChoice,
};
use sworn_service::engine::sampling::{SamplingParams, SamplingRequest};
use sworn_service::scheduler::engine_adapter::{EngineGenerator, EnginePromptEncoder};
use sworn_service::scheduler::request::{
    ChatTurn, GenerationEvent, GenerationRequest, PromptInput, TurnRole,
};
use sworn_service::scheduler::{PromptEncoder, Scheduler};

use crate::common::*;

/// Answers sampled under the schema, and how many run at once (a finished one's slot
/// takes the next at once).
const ANSWERS: u64 = 40;
const BATCH: usize = 20;
/// Enough for any answer the schema allows to finish (its strings are bounded).
const MAX_TOKENS: u32 = 200;

/// Nested objects, an enum, an array with `minItems`, `anyOf`, a pattern and numeric
/// bounds; strings are bounded so that answers end.
fn user_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 16},
            "role": {"enum": ["admin", "editor", "viewer"]},
            "address": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "minLength": 1, "maxLength": 16},
                    "zip": {"type": "integer", "minimum": 10000, "maximum": 99999}
                },
                "required": ["city", "zip"],
                "additionalProperties": false
            },
            "tags": {
                "type": "array",
                "items": {"type": "string", "maxLength": 10},
                "minItems": 2,
                "maxItems": 3
            },
            "contact": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {"email": {"type": "string", "maxLength": 20}},
                        "required": ["email"],
                        "additionalProperties": false
                    },
                    {
                        "type": "object",
                        "properties": {"phone": {"type": "string", "pattern": "^[0-9 +-]{6,16}$"}},
                        "required": ["phone"],
                        "additionalProperties": false
                    },
                    {"type": "null"}
                ]
            }
        },
        "required": ["name", "role", "address", "tags", "contact"],
        "additionalProperties": false
    })
}

fn engine(weights: WeightsChoice, slots: usize) -> Option<Engine> {
    let path = default_gguf()?;
    let options = EngineOptions {
        device: DeviceChoice::Cpu,
        weights,
        slots,
        max_ctx: 512,
        ..Default::default()
    };
    Some(Engine::load(&path, &options).unwrap())
}

fn chat(encoder: &EnginePromptEncoder, user: &str) -> Vec<u32> {
    let turns = vec![
        ChatTurn::text(TurnRole::System, "You answer with JSON only."),
        ChatTurn::text(TurnRole::User, user),
    ];
    encoder.encode(&PromptInput::Chat(turns)).unwrap()
}

const USER_PROMPT: &str = "Invent a user of a web shop: name, role, address, a few tags and how to \
                           contact them.";

fn sampled(seed: u64, max_tokens: u32) -> SamplingParams {
    SamplingRequest {
        temperature: Some(1.0),
        seed: Some(seed),
        max_tokens: Some(max_tokens),
        ..Default::default()
    }
    .validate(u32::MAX)
    .unwrap()
}

/// Runs `jobs`, at most `width` at a time: each finished sequence's slot takes the next
/// job before the following step. Outputs come in the order of `jobs`.
fn run_all(
    engine: &mut Engine,
    jobs: Vec<(&[u32], SamplingParams, Option<Constraint>)>,
    width: usize,
) -> Vec<GenerationOutput> {
    let mut jobs = jobs.into_iter().enumerate();
    let mut running: Vec<(usize, SeqId)> = Vec::new();
    let mut finished: Vec<SeqId> = Vec::new();
    let mut outputs: Vec<Option<GenerationOutput>> = Vec::new();
    loop {
        while running.len() < width {
            let Some((i, (prompt, params, constraint))) = jobs.next() else {
                break;
            };
            outputs.push(None);
            let first = engine.add_constrained(prompt, params, constraint).unwrap();
            running.push((i, first.id));
            if first.finish.is_some() {
                finished.push(first.id);
            }
        }
        if running.is_empty() {
            break;
        }
        let events = engine.step().unwrap();
        finished.extend(events.iter().filter(|e| e.finish.is_some()).map(|e| e.id));
        running.retain(|&(i, id)| {
            let done = finished.contains(&id);
            if done {
                outputs[i] = Some(engine.remove(id).unwrap());
            }
            !done
        });
    }
    outputs.into_iter().map(Option::unwrap).collect()
}

/// Feeds `tokens` through a fresh `constraint`, asserting that each was allowed where it
/// was generated; returns the time spent computing masks.
fn replay(mut constraint: Constraint, tokens: &[u32]) -> Duration {
    let mut spent = Duration::ZERO;
    for (i, &token) in tokens.iter().enumerate() {
        let started = Instant::now();
        let mask = constraint.allowed_tokens().unwrap();
        spent += started.elapsed();
        assert!(
            mask.is_allowed(token),
            "token {i} ({token}) was not allowed"
        );
        constraint.commit(token).unwrap();
    }
    spent
}

#[test]
fn constrained_answers_match_the_schema() {
    let Some(mut engine) = engine(WeightsChoice::Auto, BATCH) else {
        return;
    };
    let encoder = EnginePromptEncoder::new(&engine);
    let spec = ConstraintSpec::JsonSchema {
        schema: user_schema(),
    };
    let started = Instant::now();
    let compiled = encoder.constrain(&spec).unwrap();
    eprintln!(
        "constraint compiler for the vocabulary and the first schema: {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let validator = jsonschema::validator_for(&user_schema()).unwrap();
    let prompt = chat(&encoder, USER_PROMPT);

    let seeds: Vec<u64> = (0..ANSWERS).collect();
    let jobs = (seeds.iter())
        .map(|&seed| {
            let constraint = encoder.constrain(&spec).unwrap();
            (
                prompt.as_slice(),
                sampled(seed, MAX_TOKENS),
                Some(constraint),
            )
        })
        .collect();
    let started = Instant::now();
    let answers = run_all(&mut engine, jobs, BATCH);
    let generating = started.elapsed();

    let (mut stopped, mut violations, mut mask_time, mut tokens) =
        (0, Vec::new(), Duration::ZERO, 0);
    for (seed, answer) in seeds.iter().zip(&answers) {
        mask_time += replay(compiled.clone(), &answer.tokens);
        tokens += answer.tokens.len();
        match answer.finish_reason {
            FinishReason::Stop => stopped += 1,
            FinishReason::Length => continue,
            other => panic!("seed {seed}: finished {other:?}: {}", answer.text),
        }
        let eos = engine.tokenizer().eos_ids();
        assert!(
            !answer.tokens.iter().any(|t| eos.contains(t)),
            "seed {seed}: a complete answer stops without an EOS token"
        );
        match serde_json::from_str::<serde_json::Value>(&answer.text) {
            Err(e) => violations.push(format!("seed {seed}: not JSON ({e}): {}", answer.text)),
            Ok(value) => {
                let errors: Vec<String> = validator
                    .iter_errors(&value)
                    .map(|e| e.to_string())
                    .collect();
                if !errors.is_empty() {
                    violations.push(format!("seed {seed}: {errors:?}: {}", answer.text));
                }
            }
        }
    }
    eprintln!(
        "{ANSWERS} answers in {:.1} s, {stopped} finished `stop`, {} violations; {tokens} tokens",
        generating.as_secs_f64(),
        violations.len()
    );
    eprintln!(
        "mask computation: mean {:.1} µs per token over {tokens} tokens",
        mask_time.as_secs_f64() * 1e6 / tokens.max(1) as f64
    );
    eprintln!("seed 0: {}", answers[0].text);
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        stopped * 4 >= ANSWERS * 3,
        "only {stopped} of {ANSWERS} answers finished within {MAX_TOKENS} tokens"
    );
}

#[test]
fn free_sequences_beside_a_constrained_one_are_unchanged() {
    let Some(mut engine) = engine(WeightsChoice::Dense, 2) else {
        return;
    };
    let encoder = EnginePromptEncoder::new(&engine);
    let free = chat(&encoder, "Write a short poem about the sea.");
    let json = chat(&encoder, USER_PROMPT);
    let greedy = SamplingParams::greedy(40);
    let alone = generate_alone(&mut engine, &free, greedy.clone(), |_| {
        ControlFlow::Continue(())
    })
    .unwrap()
    .tokens;
    let constraint = encoder.constrain(&ConstraintSpec::JsonObject).unwrap();
    let width = 2;
    let outputs = run_all(
        &mut engine,
        vec![
            (&json, SamplingParams::greedy(120), Some(constraint)),
            (&free, greedy, None),
        ],
        width,
    );
    assert_eq!(outputs[1].tokens, alone, "the free row changed");
    // And the constrained row was constrained, greedy on the masked logits.
    let constrained = &outputs[0];
    eprintln!("greedy json_object answer: {}", constrained.text);
    assert_eq!(constrained.finish_reason, FinishReason::Stop);
    let value: serde_json::Value = serde_json::from_str(&constrained.text).unwrap();
    assert!(value.is_object(), "{value}");
}

#[test]
fn the_scheduler_carries_a_request_constraint_to_the_engine() {
    let Some(engine) = engine(WeightsChoice::Auto, 1) else {
        return;
    };
    let encoder = EnginePromptEncoder::new(&engine);
    let schema = json!({
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"]}},
        "required": ["answer"],
        "additionalProperties": false
    });
    let request = GenerationRequest {
        prompt_tokens: chat(&encoder, "Is the sea salty?"),
        params: SamplingParams::greedy(50),
        constraint: Some(
            encoder
                .constrain(&ConstraintSpec::JsonSchema { schema })
                .unwrap(),
        ),
        enqueued_at: Instant::now(),
        choices: 1,
    };
    let (scheduler, engine_thread) = Scheduler::start(EngineGenerator::new(engine), 1).unwrap();
    let mut events = scheduler.submit(request).unwrap();
    let mut text = String::new();
    let (reason, completion_tokens) = loop {
        match events
            .blocking_recv()
            .expect("the engine thread ended early")
        {
            GenerationEvent::Started { .. } => {}
            GenerationEvent::Text { text: t, .. } => text.push_str(&t),
            GenerationEvent::Finished {
                reason,
                completion_tokens,
            } => break (reason, completion_tokens),
        }
    };
    drop(scheduler);
    engine_thread.join();
    assert_eq!(reason, FinishReason::Stop, "{text}");
    assert!(
        text == r#"{"answer": "yes"}"# || text == r#"{"answer": "no"}"#,
        "{text}"
    );
    assert!(
        completion_tokens >= 4,
        "{completion_tokens} tokens for {text}"
    );
}

/// Calls in a template's own tool syntax (Hermes / Qwen2-style `<tool_call>` blocks, and
/// Llama-3-style JSON), sampled at temperature 1 under the constraint the API builds for
/// `tool_choice: "required"` without parallel calls: every whole answer reads back into
/// one call to an offered function whose arguments are valid under its schema (the
/// `jsonschema` crate).
#[test]
fn tool_calls_in_a_templates_own_syntax_hold_their_schemas() {
    use sworn_service::api::tools;
    use sworn_service::scheduler::request::ToolSyntax;
    use sworn_service::swear::Answer;

    let Some(mut engine) = engine(WeightsChoice::Auto, 8) else {
        return;
    };
    let encoder = EnginePromptEncoder::new(&engine);
    let functions = json!([
        {"type": "function", "function": {"name": "get_position",
            "parameters": {"type": "object",
                "properties": {"account": {"type": "string", "maxLength": 12}},
                "required": ["account"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_price",
            "parameters": {"type": "object",
                "properties": {"symbol": {"enum": ["ACME", "GLOBEX"]},
                    "days": {"type": "integer", "minimum": 1, "maximum": 30}},
                "required": ["symbol", "days"], "additionalProperties": false}}}
    ]);
    let schemas: std::collections::HashMap<String, jsonschema::Validator> = functions
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let f = &t["function"];
            let name = f["name"].as_str().unwrap().to_string();
            (name, jsonschema::validator_for(&f["parameters"]).unwrap())
        })
        .collect();
    // One call per answer: at temperature 1 a small model offered more rarely stops.
    let request = json!({"tools": functions, "tool_choice": "required",
        "parallel_tool_calls": false});
    let offer = tools::check(request.as_object().unwrap()).unwrap().unwrap();
    let prompt = chat(
        &encoder,
        "Look up the position of account A-17 and ACME's price.",
    );
    for syntax in [ToolSyntax::Hermes, ToolSyntax::Llama3] {
        let spec = offer.constraint(syntax).unwrap();
        let jobs = (0..8)
            .map(|seed| {
                let constraint = encoder.constrain(&spec).unwrap();
                (prompt.as_slice(), sampled(seed, 160), Some(constraint))
            })
            .collect();
        let outputs = run_all(&mut engine, jobs, 8);
        let mut calls = 0;
        for output in outputs
            .iter()
            .filter(|o| o.finish_reason == FinishReason::Stop)
        {
            let answer =
                Answer::from_tool_output(output.text.clone(), syntax, |i| format!("call_{i}"));
            assert!(
                !answer.tool_calls.is_empty(),
                "{syntax:?}: {:?}",
                output.text
            );
            assert_eq!(
                answer.tool_calls.len(),
                1,
                "{syntax:?}: one call per answer"
            );
            for call in &answer.tool_calls {
                let validator = schemas.get(&call.name).expect("an offered function");
                let arguments: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
                assert!(validator.is_valid(&arguments), "{syntax:?}: {call:?}");
                calls += 1;
            }
        }
        eprintln!("{syntax:?}: {calls} calls, e.g. {:?}", outputs[0].text);
        assert!(
            outputs
                .iter()
                .filter(|o| o.finish_reason == FinishReason::Stop)
                .count()
                >= 6,
            "most answers end whole"
        );
    }
}
