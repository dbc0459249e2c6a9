//! The constraint module over the real SmolLM2 tokenizer (skipped, saying so, when
//! `make setup` has not fetched the model).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::engine::tokenizer::Tokenizer;

fn tokenizer() -> Option<Arc<Tokenizer>> {
    static TOKENIZER: OnceLock<Option<Arc<Tokenizer>>> = OnceLock::new();
    TOKENIZER
        .get_or_init(|| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
            if !path.is_file() {
                eprintln!("SKIP: {} absent (run `make setup`)", path.display());
                return None;
            }
            let tokenizer = crate::engine::runner::read_tokenizer(&path).expect("tokenizer");
            Some(Arc::new(tokenizer))
        })
        .clone()
}

fn compiler() -> Option<(Arc<Tokenizer>, &'static ConstraintCompiler)> {
    static COMPILER: OnceLock<ConstraintCompiler> = OnceLock::new();
    let tokenizer = tokenizer()?;
    let compiler = COMPILER.get_or_init(|| {
        ConstraintCompiler::new(Arc::clone(&tokenizer)).expect("the SmolLM2 vocabulary")
    });
    Some((tokenizer, compiler))
}

fn person_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "role": {"enum": ["admin", "user"]}
        },
        "required": ["name", "age", "role"],
        "additionalProperties": false
    })
}

fn schema(schema: serde_json::Value) -> ConstraintSpec {
    ConstraintSpec::JsonSchema { schema }
}

/// Feeds `text`'s tokens through `constraint`, checking each was allowed; returns the
/// time spent computing masks and how many were computed.
fn replay(tokenizer: &Tokenizer, constraint: &mut Constraint, text: &str) -> (Duration, u32) {
    let mut spent = Duration::ZERO;
    let mut masks = 0;
    for token in tokenizer.encode(text, false).unwrap() {
        let started = Instant::now();
        let mask = constraint.allowed_tokens().unwrap();
        spent += started.elapsed();
        masks += 1;
        assert!(
            mask.is_allowed(token),
            "{:?} refused in {text}",
            tokenizer.token_str(token)
        );
        constraint.commit(token).unwrap();
    }
    (spent, masks)
}

#[test]
fn json_object_and_a_schema_compile() {
    let Some((_, compiler)) = compiler() else {
        return;
    };
    assert_eq!(compiler.vocab_size(), 49_152);
    compiler.compile(&ConstraintSpec::JsonObject).unwrap();
    let constraint = compiler.compile(&schema(person_schema())).unwrap();
    assert!(!constraint.is_complete());
    assert!(constraint.failure().is_none());
}

#[test]
fn unsupported_schema_features_are_errors_that_name_them() {
    let Some((_, compiler)) = compiler() else {
        return;
    };
    for (keyword, bad) in [
        (
            "uniqueItems",
            json!({"type": "array", "items": {"type": "integer"}, "uniqueItems": true}),
        ),
        (
            "not",
            json!({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}),
        ),
        // `oneOf` whose branches may overlap (llguidance keeps it only where they cannot).
        (
            "oneOf",
            json!({"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 1}]}),
        ),
        (
            "no-such-format",
            json!({"type": "string", "format": "no-such-format"}),
        ),
    ] {
        let error = compiler
            .compile(&schema(bad.clone()))
            .map(|_| format!("{bad} compiled"))
            .unwrap_err();
        let message = error.to_string();
        eprintln!("{keyword}: {message}");
        assert!(message.contains(keyword), "{keyword}: {message}");
        assert!(!message.contains('\n'), "one line: {message}");
        assert!(message.chars().count() <= MAX_ERROR_CHARS + 1, "{message}");
    }
    // A schema's own `x-guidance` cannot make compilation lenient again.
    let lenient = json!({
        "type": "array", "uniqueItems": true, "x-guidance": {"lenient": true}
    });
    let message = compiler.compile(&schema(lenient)).unwrap_err().to_string();
    assert!(message.contains("uniqueItems"), "{message}");
    let message = compiler
        .compile(&schema(json!(true)))
        .unwrap_err()
        .to_string();
    assert!(message.contains("must be a JSON object"), "{message}");
}

#[test]
fn object_masks_allow_a_brace_first_and_no_letter() {
    let Some((tokenizer, compiler)) = compiler() else {
        return;
    };
    let id = |s: &str| {
        let ids = tokenizer.encode(s, false).unwrap();
        assert_eq!(ids.len(), 1, "{s} is one token");
        ids[0]
    };
    for spec in [ConstraintSpec::JsonObject, schema(person_schema())] {
        let mut constraint = compiler.compile(&spec).unwrap();
        let mask = constraint.allowed_tokens().unwrap();
        assert_eq!(mask.vocab(), 49_152);
        assert!(mask.is_allowed(id("{")), "{spec:?}");
        for refused in ["a", "Hello", "[", " {", "\""] {
            assert!(!mask.is_allowed(id(refused)), "{spec:?}: {refused:?}");
        }
        for &eos in tokenizer.eos_ids() {
            assert!(!mask.is_allowed(eos), "{spec:?}: EOS before any output");
        }
        // A token that was not allowed is refused, and the constraint stays failed.
        let mut refused = constraint.clone();
        assert!(refused.commit(id("a")).is_err());
        assert!(refused.allowed_tokens().is_err());
        assert!(!refused.is_complete());
        // The original is untouched by its clone.
        constraint.commit(id("{")).unwrap();
    }
}

#[test]
fn a_valid_answer_is_allowed_token_by_token_and_completes() {
    let Some((tokenizer, compiler)) = compiler() else {
        return;
    };
    let answer = r#"{"name": "Ada Lovelace", "age": 36, "role": "admin"}"#;
    let mut constraint = compiler.compile(&schema(person_schema())).unwrap();
    let (spent, masks) = replay(&tokenizer, &mut constraint, answer);
    assert!(constraint.is_complete(), "the closing brace completes it");
    eprintln!(
        "mask computation: {:.1} µs per token over {masks} tokens (unit test build)",
        spent.as_secs_f64() * 1e6 / f64::from(masks)
    );
    // Wrong layout (the separators are fixed) and a value outside the schema are refused.
    for wrong in [
        r#"{"name":"Ada", "age": 36, "role": "admin"}"#,
        r#"{"name": "Ada", "age": 36, "role": "root"}"#,
        r#"{"name": "Ada", "age": 200, "role": "admin"}"#,
    ] {
        let mut constraint = compiler.compile(&schema(person_schema())).unwrap();
        let refused = tokenizer
            .encode(wrong, false)
            .unwrap()
            .into_iter()
            .any(|t| constraint.commit(t).is_err());
        assert!(refused, "{wrong} was accepted");
    }
}

#[test]
fn end_of_sequence_is_allowed_only_where_the_grammar_may_end() {
    let Some((tokenizer, compiler)) = compiler() else {
        return;
    };
    let eos = tokenizer.eos_ids()[0];
    // An integer may end after any digit, or go on: EOS is allowed beside more digits.
    let mut number = compiler
        .compile(&schema(json!({"type": "integer"})))
        .unwrap();
    assert!(!number.allowed_tokens().unwrap().is_allowed(eos));
    replay(&tokenizer, &mut number, "12");
    let mask = number.allowed_tokens().unwrap();
    assert!(mask.is_allowed(eos) && mask.count() > 1);
    assert!(!number.is_complete());
    number.commit(eos).unwrap();
    assert!(number.is_complete());
    // Halfway through an object, EOS is refused.
    let mut object = compiler.compile(&ConstraintSpec::JsonObject).unwrap();
    replay(&tokenizer, &mut object, r#"{"a": "#);
    assert!(!object.allowed_tokens().unwrap().is_allowed(eos));
    assert!(object.commit(eos).is_err());
}

#[test]
fn errors_are_one_capped_line() {
    let long = format!(
        "first\n<state>\ndump\n</state>\n  second {}",
        "x".repeat(1000)
    );
    let error = ConstraintError::new(long);
    assert!(error.message().starts_with("first; dump; second xxx"));
    assert_eq!(error.message().chars().count(), MAX_ERROR_CHARS + 1);
    assert!(error.message().ends_with('…'));
}

#[test]
fn token_masks_pack_ids_least_significant_bit_first() {
    let mask = TokenMask::from_allowed(70, &[0, 33, 69, 70, 1000]);
    assert_eq!(mask.words(), &[1, 2, 1 << 5]);
    assert_eq!(mask.count(), 3);
    assert!(mask.is_allowed(69) && !mask.is_allowed(70) && !mask.is_allowed(68));
}

#[test]
fn masks_during_computes_masks_beside_the_forward_pass() {
    let Some((_, compiler)) = compiler() else {
        return;
    };
    let mut a = compiler.compile(&ConstraintSpec::JsonObject).unwrap();
    let mut b = a.clone();
    let main = std::thread::current().id();
    let (forward_thread, masks) = masks_during(vec![(3, &mut a), (5, &mut b)], || {
        std::thread::current().id()
    });
    assert_eq!(forward_thread, main, "the forward pass stays on the caller");
    let rows: Vec<usize> = masks.iter().map(|(row, _)| *row).collect();
    assert_eq!(rows, [3, 5]);
    assert!(
        masks
            .iter()
            .all(|(_, m)| m.as_ref().is_ok_and(|m| m.count() > 0))
    );
    let (value, none) = masks_during(Vec::new(), || 7);
    assert_eq!((value, none.len()), (7, 0));
}
