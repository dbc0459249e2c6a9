//! Fixture paths, golden files and comparison helpers shared by the engine tests.

#![allow(dead_code, unreachable_pub)]

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sworn_service::engine::config::HfConfig;
use sworn_service::engine::model::LlamaModel;
use sworn_service::engine::runner::{Engine, EngineError, GenerationOutput, SeqEvent};
use sworn_service::engine::sampling::SamplingParams;
use sworn_service::engine::weights::{WeightSet, safetensors};
use tch::{Device, Kind};

/// Prompt logits of the tiny models: float32 rounding only (same math, same dtype).
pub const TINY_LOGITS_TOL: f32 = 1e-4;
/// Greedy steps whose reference top-2 gap is below this may legitimately flip.
pub const NEAR_TIE: f32 = 1e-4;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model")
}

pub fn default_gguf() -> Option<PathBuf> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        Some(path)
    } else {
        eprintln!("SKIP: {} absent (run `make setup`)", path.display());
        None
    }
}

#[derive(Debug, Deserialize)]
pub struct TinyCase {
    pub prompt_ids: Vec<u32>,
    pub vocab: usize,
    pub logits: Vec<f32>,
    pub greedy: Vec<u32>,
    pub greedy_gaps: Vec<f32>,
}

#[derive(Debug, Deserialize)]
pub struct TinyGoldens {
    pub model: String,
    pub cases: Vec<TinyCase>,
}

pub fn tiny_goldens(name: &str) -> TinyGoldens {
    let bytes = std::fs::read(fixtures().join(name).join("goldens.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Loads a tiny HF checkpoint straight into the model (no tokenizer involved).
pub fn tiny_model(name: &str, max_positions: usize) -> LlamaModel {
    let dir = fixtures().join(name);
    let config = HfConfig::from_json(&std::fs::read(dir.join("config.json")).unwrap())
        .unwrap()
        .resolve()
        .unwrap();
    let mut weights = WeightSet::default();
    safetensors::load_checkpoint_dir(&dir, &mut weights).unwrap();
    LlamaModel::load(config, weights, Device::Cpu, Kind::Float, max_positions).unwrap()
}

pub fn to_vec(t: &tch::Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn argmax(row: &[f32]) -> u32 {
    sworn_service::engine::sampling::argmax(row).unwrap()
}

/// Compares a greedy path with the reference, tolerating a flip only at a near-tie
/// (after which the paths legitimately diverge). Returns how many tokens were compared.
pub fn assert_greedy_matches(ours: &[u32], reference: &[u32], gaps: &[f32], what: &str) -> usize {
    assert_greedy_matches_within(ours, reference, gaps, NEAR_TIE, what)
}

/// [`assert_greedy_matches`] for a mode whose logits differ more: the paths may part only
/// at a step whose reference top-2 gap is below `near_tie`.
pub fn assert_greedy_matches_within(
    ours: &[u32],
    reference: &[u32],
    gaps: &[f32],
    near_tie: f32,
    what: &str,
) -> usize {
    for (i, (&a, &b)) in ours.iter().zip(reference).enumerate() {
        if a != b {
            assert!(
                gaps[i] < near_tie,
                "{what}: greedy token {i} is {a}, reference {b} (reference top-2 gap {})",
                gaps[i]
            );
            eprintln!(
                "{what}: near-tie at step {i} (gap {}), paths diverge there",
                gaps[i]
            );
            return i;
        }
    }
    assert!(
        ours.len() >= reference.len(),
        "{what}: {} tokens, reference {}",
        ours.len(),
        reference.len()
    );
    reference.len()
}

/// Runs one prompt alone on `engine` with `add`, `step` and `remove`, until it finishes or
/// `on_token` breaks (which cancels it): the reference the batched and served paths are
/// compared with.
pub fn generate_alone(
    engine: &mut Engine,
    prompt: &[u32],
    params: SamplingParams,
    mut on_token: impl FnMut(&SeqEvent) -> ControlFlow<()>,
) -> Result<GenerationOutput, EngineError> {
    let first = engine.add(prompt, params)?;
    let id = first.id;
    let mut event = Some(first);
    while let Some(current) = event.take() {
        if on_token(&current).is_break() || current.finish.is_some() {
            break;
        }
        event = engine.step()?.into_iter().find(|e| e.id == id);
    }
    engine.remove(id)
}
