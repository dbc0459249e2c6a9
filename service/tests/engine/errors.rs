//! Hostile or mistaken inputs become errors that name the problem, never panics.

use std::path::Path;

use sworn_service::engine::model::{DecodeInput, Logits, ModelError};
use sworn_service::engine::runner::{
    DeviceChoice, Engine, EngineError, EngineOptions, WeightsChoice,
};
use sworn_service::engine::weights::WeightError;

use crate::common::*;

fn copy_tiny(dir: &Path) {
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixtures().join("tiny-llama").join(name), dir.join(name)).unwrap();
    }
}

fn load(path: &Path) -> Result<Engine, EngineError> {
    Engine::load(
        path,
        &EngineOptions {
            device: DeviceChoice::Cpu,
            slots: 1,
            max_ctx: 64,
            ..Default::default()
        },
    )
}

#[test]
fn truncated_safetensors_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    copy_tiny(dir.path());
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(err, EngineError::Weights(WeightError::Safetensors { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn config_disagreeing_with_weights_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    copy_tiny(dir.path());
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["intermediate_size"] = 128.into();
    std::fs::write(&path, config.to_string()).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Model(ModelError::Weights(WeightError::Shape { .. }))
        ),
        "{err}"
    );
    assert!(err.to_string().contains("mlp.gate_proj.weight"), "{err}");
}

#[test]
fn missing_and_unknown_model_paths_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        load(&dir.path().join("absent.gguf")),
        Err(EngineError::Io { .. })
    ));
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"definitely not a model").unwrap();
    assert!(matches!(
        load(&junk),
        Err(EngineError::UnknownFormat { .. })
    ));
    // A directory without config.json.
    assert!(matches!(load(dir.path()), Err(EngineError::Io { .. })));
}

#[test]
fn truncated_gguf_is_an_error() {
    let Some(path) = default_gguf() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.gguf");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    assert!(matches!(load(&cut), Err(EngineError::Gguf(_))));
}

#[test]
fn model_rejects_bad_tokens_slots_and_batches() {
    let model = tiny_model("tiny-llama", 64);
    let mut kv = model.new_kv_slots(2, 16).unwrap();
    let slot = kv.acquire().unwrap();
    assert!(matches!(
        model.prefill(&mut kv, slot, &[3, 300], Logits::Last),
        Err(ModelError::TokenOutOfRange {
            token: 300,
            vocab: 300
        })
    ));
    assert!(matches!(
        model.prefill(&mut kv, slot, &[], Logits::Last),
        Err(ModelError::Empty { .. })
    ));
    assert!(
        matches!(
            model.prefill(&mut kv, 1, &[3], Logits::Last),
            Err(ModelError::Kv(_))
        ),
        "slot 1 not acquired"
    );
    assert!(
        matches!(
            model.prefill(&mut kv, 7, &[3], Logits::Last),
            Err(ModelError::Kv(_))
        ),
        "no slot 7"
    );
    assert!(
        matches!(
            model.prefill(&mut kv, slot, &[3; 17], Logits::Last),
            Err(ModelError::Kv(_))
        ),
        "over capacity"
    );
    assert_eq!(kv.len(slot).unwrap(), 0, "failed calls wrote nothing");
    let _ = model
        .prefill(&mut kv, slot, &[3; 16], Logits::Last)
        .unwrap();
    assert!(
        matches!(
            model.decode(&mut kv, &[DecodeInput { slot, token: 4 }]),
            Err(ModelError::Kv(_))
        ),
        "slot full"
    );
    let other = kv.acquire().unwrap();
    let _ = model.prefill(&mut kv, other, &[3], Logits::Last).unwrap();
    let twice = [
        DecodeInput {
            slot: other,
            token: 1,
        },
        DecodeInput {
            slot: other,
            token: 2,
        },
    ];
    assert!(matches!(
        model.decode(&mut kv, &twice),
        Err(ModelError::DuplicateSlot { .. })
    ));
    assert!(matches!(
        model.decode(&mut kv, &[]),
        Err(ModelError::Empty { .. })
    ));
}

#[test]
fn int4_weights_asked_of_a_model_without_four_bit_weights_is_a_clear_error() {
    let options = EngineOptions {
        device: DeviceChoice::Cpu,
        weights: WeightsChoice::Int4,
        max_ctx: 64,
        ..Default::default()
    };
    let err = Engine::load(&fixtures().join("tiny-llama"), &options).unwrap_err();
    assert!(matches!(err, EngineError::Int4Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("no Q4_0/Q4_1"), "{err}");
    // `auto` loads the same model dense.
    let auto = EngineOptions {
        weights: WeightsChoice::Auto,
        ..options
    };
    let engine = Engine::load(&fixtures().join("tiny-llama"), &auto).unwrap();
    assert!(engine.model().int4().is_none() && engine.info().dtype == "float32");
}
