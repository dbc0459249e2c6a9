//! Tokenizer behaviour that needs no golden file: streaming at character boundaries,
//! SentencePiece vocabularies from GGUF metadata, and hostile metadata.

use sworn_service::engine::gguf::{GgufError, GgufFile};
use sworn_service::engine::tokenizer::{Tokenizer, TokenizerError};

use crate::gguf_builder::{Meta, metadata_only_file};
use crate::tokenizer_goldens::smollm2;

#[test]
fn stream_decoder_holds_back_split_characters() {
    let Some(tok) = smollm2() else { return };
    // The emoji is spelled over several byte tokens; nothing may come out mid-character.
    let ids = tok.encode("ok 🎉!", false).unwrap();
    let mut stream = tok.stream_decoder(false);
    let mut pieces = Vec::new();
    for &id in &ids {
        pieces.push(stream.step(tok, id).unwrap());
    }
    assert_eq!(pieces.concat() + &stream.finish(), "ok 🎉!");
    assert!(
        pieces.iter().any(String::is_empty),
        "expected a step that waited: {pieces:?}"
    );
    assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')));
}

#[test]
fn stream_decoder_replaces_bytes_that_can_never_be_utf8() {
    let Some(tok) = smollm2() else { return };
    // A continuation byte with no lead byte is never valid; a lone lead byte at the end
    // is cut short.
    let ff = tok.token_id("©").unwrap(); // byte 0xA9 spelled in the byte alphabet
    let lead = tok.token_id("ð").unwrap(); // 0xF0, the lead byte of a 4-byte character
    let ids = [
        tok.token_id("a").unwrap(),
        ff,
        tok.token_id("b").unwrap(),
        lead,
    ];
    let whole = tok.decode(&ids, false).unwrap();
    assert_eq!(whole, "a\u{FFFD}b\u{FFFD}");
    let mut stream = tok.stream_decoder(false);
    let streamed: String = ids
        .iter()
        .map(|&id| stream.step(tok, id).unwrap())
        .collect();
    assert_eq!(streamed, "a\u{FFFD}b");
    assert_eq!(streamed + &stream.finish(), whole);
}

#[test]
fn decode_of_an_unknown_id_is_an_error() {
    let Some(tok) = smollm2() else { return };
    let e = tok.decode(&[1, 49_152], false).unwrap_err();
    assert!(matches!(
        e,
        TokenizerError::UnknownTokenId {
            id: 49_152,
            vocab_size: 49_152
        }
    ));
    assert!(tok.token_bytes(u32::MAX).is_err());
}

#[test]
fn encode_is_fast_enough_to_be_cached_and_repeatable() {
    let Some(tok) = smollm2() else { return };
    let text = "The same words again and again. ".repeat(200);
    let first = tok.encode(&text, false).unwrap();
    assert_eq!(tok.encode(&text, false).unwrap(), first);
    assert_eq!(tok.decode(&first, false).unwrap(), text);
}

/// A SentencePiece vocabulary: <unk>, <s>, </s>, 256 byte tokens, then pieces with
/// scores. Merges come from the scores: `▁hi` (score -1) beats `hi` (-2).
fn spm_file(extra: &[(&str, Meta<'_>)]) -> GgufFile {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (piece, score) in [
        ("▁", -5.0),
        ("h", -6.0),
        ("i", -6.0),
        ("hi", -2.0),
        ("▁h", -3.0),
        ("▁hi", -1.0),
        ("é", -7.0),
    ] {
        tokens.push(piece.into());
        types.push(1);
        scores.push(score);
    }
    let mut kvs = vec![
        ("tokenizer.ggml.model", Meta::Str("llama")),
        ("tokenizer.ggml.tokens", Meta::Strs(tokens)),
        ("tokenizer.ggml.token_type", Meta::I32s(types)),
        ("tokenizer.ggml.scores", Meta::F32s(scores)),
        ("tokenizer.ggml.bos_token_id", Meta::U32(1)),
        ("tokenizer.ggml.eos_token_id", Meta::U32(2)),
        ("tokenizer.ggml.unknown_token_id", Meta::U32(0)),
    ];
    kvs.extend(extra.iter().map(|(k, v)| (*k, clone_meta(v))));
    GgufFile::from_bytes(metadata_only_file(&kvs)).unwrap()
}

fn clone_meta<'a>(m: &Meta<'a>) -> Meta<'a> {
    match m {
        Meta::Str(s) => Meta::Str(s),
        Meta::U32(v) => Meta::U32(*v),
        Meta::Bool(v) => Meta::Bool(*v),
        Meta::Strs(v) => Meta::Strs(v.clone()),
        Meta::I32s(v) => Meta::I32s(v.clone()),
        Meta::F32s(v) => Meta::F32s(v.clone()),
    }
}

#[test]
fn sentencepiece_gguf_merges_by_score_with_byte_fallback() {
    let tok = Tokenizer::from_gguf(&spm_file(&[])).unwrap();
    let id = |s: &str| tok.token_id(s).unwrap();
    // "hi hi" -> "▁hi▁hi": the best-scored merges build ▁hi twice. BOS by default.
    assert_eq!(
        tok.encode("hi hi", true).unwrap(),
        [1, id("▁hi"), id("▁hi")]
    );
    // "ih": no merge applies; "ü" is not in the vocabulary and falls back to its bytes.
    assert_eq!(
        tok.encode("ih ü", false).unwrap(),
        [
            id("▁"),
            id("i"),
            id("h"),
            id("▁"),
            id("<0xC3>"),
            id("<0xBC>")
        ]
    );
    // Decoding turns ▁ back into spaces, bytes back into characters, and drops the
    // prefix space; specials go when asked.
    let ids = tok.encode("hi ü hi", true).unwrap();
    assert_eq!(tok.decode(&ids, true).unwrap(), "hi ü hi");
    assert_eq!(tok.decode(&ids, false).unwrap(), "<s> hi ü hi");
    assert_eq!(tok.eos_ids(), [2]);
}

#[test]
fn sentencepiece_gguf_respects_add_bos_false() {
    let tok = Tokenizer::from_gguf(&spm_file(&[(
        "tokenizer.ggml.add_bos_token",
        Meta::Bool(false),
    )]))
    .unwrap();
    assert_eq!(
        tok.encode("hi", true).unwrap(),
        [tok.token_id("▁hi").unwrap()]
    );
}

#[test]
fn control_tokens_in_text_are_special_in_sentencepiece_vocabularies() {
    let tok = Tokenizer::from_gguf(&spm_file(&[])).unwrap();
    let ids = tok.encode("hi</s>", false).unwrap();
    assert_eq!(ids, [tok.token_id("▁hi").unwrap(), 2]);
}

#[test]
fn missing_or_unsupported_tokenizer_metadata_is_a_clear_error() {
    let empty = GgufFile::from_bytes(metadata_only_file(&[])).unwrap();
    let e = Tokenizer::from_gguf(&empty).unwrap_err();
    assert!(
        matches!(&e, TokenizerError::Metadata { source: GgufError::MissingKey { key } } if key == "tokenizer.ggml.model"),
        "{e}"
    );
    let t5 = GgufFile::from_bytes(metadata_only_file(&[
        ("tokenizer.ggml.model", Meta::Str("t5")),
        ("tokenizer.ggml.tokens", Meta::Strs(vec!["a".into()])),
    ]))
    .unwrap();
    assert!(
        matches!(Tokenizer::from_gguf(&t5), Err(TokenizerError::UnsupportedModel { model, .. }) if model == "t5")
    );
    // A merge whose parts are not tokens is refused with its index.
    let gpt2 = GgufFile::from_bytes(metadata_only_file(&[
        ("tokenizer.ggml.model", Meta::Str("gpt2")),
        (
            "tokenizer.ggml.tokens",
            Meta::Strs(vec!["a".into(), "b".into(), "ab".into()]),
        ),
        (
            "tokenizer.ggml.merges",
            Meta::Strs(vec!["a b".into(), "ab c".into()]),
        ),
    ]))
    .unwrap();
    let e = Tokenizer::from_gguf(&gpt2).unwrap_err();
    assert!(
        matches!(&e, TokenizerError::BadMerge { index: 1, merge, .. } if merge == "ab c"),
        "{e}"
    );
}

#[test]
fn byte_level_vocabulary_drops_bytes_it_cannot_spell_like_the_reference() {
    // Only "a", "b" and "ab": every other byte is dropped, as `tokenizers`' BPE does
    // without an unknown token.
    let file = GgufFile::from_bytes(metadata_only_file(&[
        ("tokenizer.ggml.model", Meta::Str("gpt2")),
        (
            "tokenizer.ggml.tokens",
            Meta::Strs(vec!["a".into(), "b".into(), "ab".into()]),
        ),
        ("tokenizer.ggml.merges", Meta::Strs(vec!["a b".into()])),
    ]))
    .unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(tok.encode("a b!ab", false).unwrap(), [0, 1, 2]);
}

#[test]
fn out_of_range_special_ids_and_mismatched_arrays_are_refused() {
    let e = Tokenizer::from_gguf(&spm_file(&[(
        "tokenizer.ggml.eot_token_id",
        Meta::U32(1_000_000),
    )]))
    .unwrap_err();
    assert!(
        matches!(&e, TokenizerError::BadVocab { reason } if reason.contains("1000000")),
        "{e}"
    );
    let bad = GgufFile::from_bytes(metadata_only_file(&[
        ("tokenizer.ggml.model", Meta::Str("llama")),
        (
            "tokenizer.ggml.tokens",
            Meta::Strs(vec!["a".into(), "b".into()]),
        ),
        ("tokenizer.ggml.scores", Meta::F32s(vec![0.0])),
    ]))
    .unwrap();
    let e = Tokenizer::from_gguf(&bad).unwrap_err();
    assert!(
        matches!(&e, TokenizerError::BadVocab { reason } if reason.contains("tokenizer.ggml.scores")),
        "{e}"
    );
}

#[test]
fn engine_text_types_can_be_shared_across_threads() {
    // The server shares one tokenizer, template and model file between request tasks.
    fn shareable<T: Send + Sync>() {}
    shareable::<Tokenizer>();
    shareable::<GgufFile>();
    shareable::<sworn_service::engine::chat_template::ChatTemplate>();
    shareable::<sworn_service::engine::tokenizer::decoder::StreamDecoder>();
}
