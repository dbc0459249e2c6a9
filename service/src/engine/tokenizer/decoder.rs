//! Streaming detokenisation: token ids in, text out only at UTF-8 character boundaries.
//!
//! A byte-level token can end in the middle of a character (an emoji is often split over
//! two or three tokens), so a stream cannot simply decode each token on its own. The
//! decoder keeps the bytes of an unfinished character until the rest arrives. Bytes that
//! can never become valid UTF-8 come out as U+FFFD, exactly as the whole-sequence
//! [`Tokenizer::decode`] would write them, so the concatenated stream always equals the
//! full decode.

use super::{Tokenizer, TokenizerError};

/// Incremental decoder state for one stream. It borrows nothing: keep it beside the
/// request and pass the tokenizer to each step.
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
    skip_special: bool,
    /// SentencePiece-style vocabularies drop the space that stands for the prefix `▁`
    /// at the very start of the output.
    strip_leading_space: bool,
}

impl Tokenizer {
    /// A decoder for streaming output, yielding text only at character boundaries.
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder {
        StreamDecoder {
            pending: Vec::new(),
            skip_special,
            strip_leading_space: self.strips_leading_space(),
        }
    }
}

impl StreamDecoder {
    /// Adds token `id` and returns the text that is now complete (possibly empty).
    pub fn step(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, TokenizerError> {
        if self.skip_special && tokenizer.is_special(id) {
            return Ok(String::new());
        }
        self.pending.extend_from_slice(tokenizer.token_bytes(id)?);
        if self.strip_leading_space && !self.pending.is_empty() {
            if self.pending[0] == b' ' {
                self.pending.remove(0);
            }
            self.strip_leading_space = false;
        }
        Ok(self.take_complete())
    }

    /// Ends the stream: whatever is left (an unfinished character) as U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    /// Removes and returns the longest prefix of `pending` that is final: valid
    /// characters, and invalid sequences (as U+FFFD) that more bytes cannot repair.
    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        let mut consumed = 0;
        for chunk in self.pending.utf8_chunks() {
            out.push_str(chunk.valid());
            consumed += chunk.valid().len();
            let bad = chunk.invalid();
            let at_end = consumed + bad.len() == self.pending.len();
            if at_end && std::str::from_utf8(bad).is_err_and(|e| e.error_len().is_none()) {
                // An unfinished character at the end: wait for more bytes.
                break;
            }
            if !bad.is_empty() {
                out.push(char::REPLACEMENT_CHARACTER);
                consumed += bad.len();
            }
        }
        self.pending.drain(..consumed);
        out
    }
}
