//! Tokenizer from a Hugging Face `tokenizer.json` (`Tokenizer::from_tokenizer_json`) on
//! arbitrary bytes; an accepted tokenizer then encodes and decodes a fixed probe text.
//!
//! Invariants: encoded ids are inside the vocabulary and decode without error, and the
//! streaming decoder's concatenated output equals the whole-sequence decode.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sworn_service::engine::tokenizer::Tokenizer;

const PROBE: &str = "Hello, world! <|im_start|>user\n  tabs\tand ÅßЖ😀 0123456789 <s></s>";

fuzz_target!(|data: &[u8]| {
    let Ok(tokenizer) = Tokenizer::from_tokenizer_json(data) else {
        return;
    };
    let Ok(ids) = tokenizer.encode(PROBE, true) else {
        return;
    };
    let vocab = tokenizer.vocab_size();
    assert!(
        ids.iter().all(|&id| (id as usize) < vocab),
        "{ids:?} / {vocab}"
    );
    for skip_special in [false, true] {
        let whole = tokenizer
            .decode(&ids, skip_special)
            .expect("ids from encode decode");
        let mut stream = tokenizer.stream_decoder(skip_special);
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&stream.step(&tokenizer, id).expect("ids from encode decode"));
        }
        streamed.push_str(&stream.finish());
        assert_eq!(
            streamed, whole,
            "stream and whole decode differ for {ids:?}"
        );
    }
});
