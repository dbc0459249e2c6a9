//! GGUF reader (`GgufFile::from_bytes`) on arbitrary bytes, then everything the server
//! builds from a model file's header: each tensor dequantised, the tokenizer from
//! `tokenizer.ggml.*` and the chat template from `tokenizer.chat_template`.
//!
//! Invariants beyond "no panic": every accepted tensor lies inside the file, after the
//! data start, at its stated size, and dequantises to exactly its element count.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sworn_service::engine::chat_template::{ChatMessage, ChatTemplate};
use sworn_service::engine::gguf::GgufFile;
use sworn_service::engine::tokenizer::Tokenizer;

/// Dequantising is linear in the element count, which the file length bounds; this keeps
/// one input's work small all the same.
const MAX_DEQUANTIZED_ELEMENTS: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    assert!(matches!(file.version(), 2 | 3));
    assert!(file.alignment().is_power_of_two());
    // No `data_start() <= len`: a file without tensors needs no data section, and writers
    // leave its padding out (a finding of this target, about the harness, not the reader).
    for t in file.tensors() {
        assert!(
            t.offset >= file.data_start(),
            "{t:?} starts before the data"
        );
        assert!(t.offset + t.n_bytes <= len, "{t:?} ends past the file");
        assert_eq!(file.bytes_of(t).len() as u64, t.n_bytes, "{t:?}");
        assert_eq!(t.shape.iter().product::<u64>(), t.n_elements, "{t:?}");
        assert_eq!(t.dtype.bytes_for(t.n_elements), Some(t.n_bytes), "{t:?}");
        if t.n_elements <= MAX_DEQUANTIZED_ELEMENTS {
            if let Ok(values) = file.dequantize(&t.name) {
                assert_eq!(values.len() as u64, t.n_elements, "{t:?}");
            }
        }
    }
    if let Ok(tokenizer) = Tokenizer::from_gguf(&file) {
        if let Ok(ids) = tokenizer.encode("Hello, world! 2+2=4 <|im_start|>user\nÅß😀", true) {
            assert!(ids.iter().all(|&id| (id as usize) < tokenizer.vocab_size()));
            let _ = tokenizer.decode(&ids, false);
            let _ = tokenizer.decode(&ids, true);
        }
    }
    if let Ok(template) = ChatTemplate::from_gguf(&file) {
        let messages = [
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "What is 2+2?"),
        ];
        let _ = template.render(&messages, true);
    }
});
