//! Tokenizer encode and decode on arbitrary text and token ids, with the repository's
//! fixture tokenizers: a Llama 3-style byte-level BPE and a Llama 2-style SentencePiece
//! BPE with byte fallback (`service/tests/fixtures/tokenizer/`).
//!
//! Invariants: encoded ids are inside the vocabulary; a byte-level tokenizer decodes its
//! own encoding back to the exact text; for any ids, the streaming decoder's output
//! equals the whole-sequence decode (as `decoder.rs` promises).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sworn_service::engine::tokenizer::Tokenizer;

const BYTE_LEVEL: &[u8] =
    include_bytes!("../../service/tests/fixtures/tokenizer/tiny_bytelevel.json");
const SENTENCEPIECE: &[u8] = include_bytes!("../../service/tests/fixtures/tokenizer/tiny_spm.json");

fn tokenizers() -> &'static [(Tokenizer, bool); 2] {
    static TOKENIZERS: OnceLock<[(Tokenizer, bool); 2]> = OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        let load = |json| Tokenizer::from_tokenizer_json(json).expect("fixture tokenizer");
        [(load(BYTE_LEVEL), true), (load(SENTENCEPIECE), false)]
    })
}

fn check(tokenizer: &Tokenizer, byte_level: bool, text: &str, raw_ids: &[u8]) {
    let vocab = tokenizer.vocab_size() as u32;
    if let Ok(ids) = tokenizer.encode(text, false) {
        assert!(ids.iter().all(|&id| id < vocab), "{ids:?} / {vocab}");
        if byte_level {
            let back = tokenizer
                .decode(&ids, false)
                .expect("ids from encode decode");
            assert_eq!(back, text, "byte-level round trip through {ids:?}");
        }
    }
    // Arbitrary ids (two bytes each, inside the vocabulary): stream == whole decode.
    let ids: Vec<u32> = raw_ids
        .chunks_exact(2)
        .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])) % vocab)
        .collect();
    for skip_special in [false, true] {
        let whole = tokenizer
            .decode(&ids, skip_special)
            .expect("ids in the vocabulary");
        let mut stream = tokenizer.stream_decoder(skip_special);
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&stream.step(tokenizer, id).expect("ids in the vocabulary"));
        }
        streamed.push_str(&stream.finish());
        assert_eq!(
            streamed, whole,
            "stream and whole decode differ for {ids:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (tokenizer, byte_level) in tokenizers() {
        check(tokenizer, *byte_level, &text, data);
    }
});
