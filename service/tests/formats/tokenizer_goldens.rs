//! The GGUF tokenizer against transformers on the default model
//! (`scripts/fixtures/tokenizer_goldens.py` → `fixtures/tokenizer/smollm2_goldens.json`).

use std::sync::OnceLock;

use serde_json::Value;
use sworn_service::engine::gguf::GgufFile;
use sworn_service::engine::tokenizer::{PreTokenizerReference, Tokenizer};

use crate::{default_model, fixture};

/// The default model's tokenizer, built once for all tests (`None` without the model).
pub(crate) fn smollm2() -> Option<&'static Tokenizer> {
    static TOKENIZER: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOKENIZER
        .get_or_init(|| {
            let path = default_model()?;
            let file = GgufFile::open(&path).unwrap();
            Some(Tokenizer::from_gguf(&file).unwrap())
        })
        .as_ref()
}

/// Checks every golden case of `cases` against `tok`, reporting all mismatches at once.
pub(crate) fn check_cases(tok: &Tokenizer, cases: &[Value]) {
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids = |k: &str| -> Vec<u32> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect()
        };
        let (want, want_special) = (ids("ids"), ids("ids_with_special"));
        let got = tok.encode(text, false).unwrap();
        if got != want {
            failures.push(format!("encode {text:?}: got {got:?}, want {want:?}"));
            continue;
        }
        let got = tok.encode(text, true).unwrap();
        if got != want_special {
            failures.push(format!(
                "encode+special {text:?}: got {got:?}, want {want_special:?}"
            ));
        }
        for (skip, key) in [(false, "decoded"), (true, "decoded_skip_special")] {
            let want = case[key].as_str().unwrap();
            let got = tok.decode(&ids("ids"), skip).unwrap();
            if got != want {
                failures.push(format!(
                    "decode(skip={skip}) {text:?}: got {got:?}, want {want:?}"
                ));
            }
            // Streaming one token at a time gives the same text.
            let mut stream = tok.stream_decoder(skip);
            let mut streamed = String::new();
            for id in ids("ids") {
                streamed.push_str(&stream.step(tok, id).unwrap());
            }
            streamed.push_str(&stream.finish());
            if streamed != want {
                failures.push(format!(
                    "stream(skip={skip}) {text:?}: got {streamed:?}, want {want:?}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn goldens() -> Value {
    let text = std::fs::read_to_string(fixture("tokenizer/smollm2_goldens.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn smollm2_gguf_tokenizer_matches_transformers_on_every_golden_string() {
    let Some(tok) = smollm2() else { return };
    let g = goldens();
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 200, "only {} golden strings", cases.len());
    check_cases(tok, cases);
}

#[test]
fn smollm2_special_ids_match_transformers() {
    let Some(tok) = smollm2() else { return };
    let g = goldens();
    assert_eq!(
        tok.vocab_size() as u64,
        g["meta"]["vocab_size"].as_u64().unwrap()
    );
    let bos = tok.token_id(g["meta"]["bos_token"].as_str().unwrap());
    let eos = tok.token_id(g["meta"]["eos_token"].as_str().unwrap());
    assert_eq!(tok.bos_id(), bos);
    assert_eq!(tok.eos_ids().first().copied(), eos);
    // `<|endoftext|>` also ends generation; ordinary tokens do not.
    let endoftext = tok.token_id("<|endoftext|>").unwrap();
    assert!(tok.eos_ids().contains(&endoftext));
    assert!(!tok.eos_ids().contains(&tok.token_id("Hello").unwrap()));
    // The file says not to add BOS (transformers agrees: ids == ids_with_special).
    assert!(!tok.adds_bos());
    assert!(tok.is_special(1) && !tok.is_special(tok.token_id("Hello").unwrap()));
    assert_eq!(
        tok.token_bytes(tok.token_id("Ġworld").unwrap()).unwrap(),
        b" world"
    );
}

#[test]
fn llamacpp_reading_of_smollm_splits_digits_first() {
    // Recorded divergence: transformers ignores `tokenizer.ggml.pre = smollm`, llama.cpp
    // (and SmolLM2's own tokenizer.json) isolate digits first. Both are available; the
    // default follows transformers (the test above).
    let Some(path) = default_model() else { return };
    let file = GgufFile::open(&path).unwrap();
    let llamacpp = Tokenizer::from_gguf_with(&file, PreTokenizerReference::LlamaCpp).unwrap();
    let transformers = smollm2().unwrap();
    let ids = |t: &Tokenizer, s: &str| t.encode(s, false).unwrap();
    let space = transformers.token_id("Ġ").unwrap();
    let two_spaces = transformers.token_id("ĠĠ").unwrap();
    let (four, two) = (
        transformers.token_id("4").unwrap(),
        transformers.token_id("2").unwrap(),
    );
    assert_eq!(ids(transformers, "  42"), [space, space, four, two]);
    assert_eq!(ids(&llamacpp, "  42"), [two_spaces, four, two]);
    // Where the two agree they give the same ids, and both decode back to the text.
    for s in ["Hello world", "room 101", "a1b2c3"] {
        assert_eq!(ids(&llamacpp, s), ids(transformers, s), "{s}");
    }
    assert_eq!(
        llamacpp.decode(&ids(&llamacpp, "  42"), false).unwrap(),
        "  42"
    );
}
