//! Tokenizers from `tokenizer.json` against the `tokenizers` library, on two small
//! vocabularies trained by `scripts/fixtures/tokenizer_goldens.py`: a Llama 3-style
//! byte-level one and a Llama 2-style SentencePiece one with byte fallback.

use serde_json::Value;
use sworn_service::engine::tokenizer::{Tokenizer, TokenizerError};

use crate::fixture;
use crate::tokenizer_goldens::check_cases;

fn goldens() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("tokenizer/tiny_goldens.json")).unwrap())
        .unwrap()
}

fn load(name: &str) -> Tokenizer {
    Tokenizer::from_tokenizer_json_file(&fixture(&format!("tokenizer/{name}.json"))).unwrap()
}

#[test]
fn tiny_byte_level_json_matches_tokenizers() {
    let tok = load("tiny_bytelevel");
    check_cases(&tok, goldens()["tiny_bytelevel"].as_array().unwrap());
    assert_eq!(tok.bos_id(), tok.token_id("<|begin_of_text|>"));
    assert!(tok.adds_bos());
    assert_eq!(tok.eos_ids(), [tok.token_id("<|eot_id|>").unwrap()]);
}

#[test]
fn tiny_sentencepiece_json_matches_tokenizers() {
    let tok = load("tiny_spm");
    check_cases(&tok, goldens()["tiny_spm"].as_array().unwrap());
    assert_eq!(tok.bos_id(), Some(1));
    // Characters the vocabulary lacks fall back to their UTF-8 bytes.
    // (The training corpus has Cyrillic, but no "Ж".)
    assert_eq!(tok.token_id("Ж"), None);
    let ids = tok.encode("Ж", false).unwrap();
    let pieces: Vec<&str> = ids.iter().map(|&id| tok.token_str(id).unwrap()).collect();
    assert_eq!(pieces, ["▁", "<0xD0>", "<0x96>"]);
    assert_eq!(tok.decode(&ids, false).unwrap(), "Ж");
}

fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("tokenizer/{name}.json"))).unwrap(),
    )
    .unwrap();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn unsupported_components_are_refused_by_name() {
    let e = Tokenizer::from_tokenizer_json(&edited("tiny_bytelevel", |v| {
        v["model"]["type"] = "WordPiece".into()
    }))
    .unwrap_err();
    assert!(
        matches!(&e, TokenizerError::UnsupportedJson { component: "model", kind } if kind == "WordPiece"),
        "{e}"
    );
    let e = Tokenizer::from_tokenizer_json(&edited("tiny_bytelevel", |v| {
        v["pre_tokenizer"] = serde_json::json!({"type": "Whitespace"})
    }))
    .unwrap_err();
    assert!(
        matches!(
            &e,
            TokenizerError::UnsupportedJson {
                component: "pre-tokenizer",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn merge_naming_a_missing_token_is_refused_with_its_index() {
    let e = Tokenizer::from_tokenizer_json(&edited("tiny_bytelevel", |v| {
        v["model"]["merges"][3] = serde_json::json!(["nope", "absent"]);
    }))
    .unwrap_err();
    assert!(
        matches!(&e, TokenizerError::BadMerge { index: 3, .. }),
        "{e}"
    );
}

#[test]
fn malformed_json_and_missing_byte_tokens_are_errors() {
    assert!(matches!(
        Tokenizer::from_tokenizer_json(b"{not json"),
        Err(TokenizerError::Json { .. })
    ));
    let e = Tokenizer::from_tokenizer_json(&edited("tiny_spm", |v| {
        let vocab = v["model"]["vocab"].as_object_mut().unwrap();
        let id = vocab.remove("<0x41>").unwrap();
        vocab.insert("renamed".into(), id);
    }))
    .unwrap_err();
    assert!(
        matches!(&e, TokenizerError::BadVocab { reason } if reason.contains("<0x41>")),
        "{e}"
    );
    let e = Tokenizer::from_tokenizer_json(&edited("tiny_bytelevel", |v| {
        v["model"]["vocab"]["toolarge"] = serde_json::json!(u64::MAX);
    }))
    .unwrap_err();
    assert!(matches!(e, TokenizerError::Json { .. }));
}
