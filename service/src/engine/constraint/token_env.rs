//! The model's vocabulary as llguidance sees it: a byte trie of every token, built once.

use std::sync::Arc;

use llguidance::toktrie::{TokRxInfo, TokTrie, TokenId, TokenizerEnv};

use super::ConstraintError;
use crate::engine::tokenizer::Tokenizer;

/// Largest vocabulary the trie takes: its nodes hold a token id in 24 bits, all ones
/// meaning "no token"; the largest real vocabularies are ~260k.
pub(super) const MAX_TRIE_VOCAB: usize = 1 << 22;
/// Longest token, in bytes, the trie takes: a node counts its parents in 10 bits. Real
/// tokenizers stop near 1,024 (GLM-4 has a token of 1,024 spaces).
pub(super) const MAX_TRIE_TOKEN_BYTES: usize = 1 << 10;
/// Most bytes in all tokens together: each byte may be a trie node, and a subtree's size
/// is kept in 22 bits (~4M). A 256k vocabulary spells ~2M bytes.
pub(super) const MAX_TRIE_BYTES: usize = (1 << 22) - 2;

/// [`TokenizerEnv`] over our [`Tokenizer`].
pub(super) struct ModelTokEnv {
    trie: TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl ModelTokEnv {
    /// The trie of `tokenizer`'s vocabulary: each token's bytes, special tokens behind
    /// llguidance's `0xFF` marker (so no grammar can spell them as text), and every EOS id
    /// as an end token. Checks the trie's limits first, so a hostile vocabulary is an
    /// error rather than a panic inside toktrie.
    pub(super) fn new(tokenizer: Arc<Tokenizer>) -> Result<Self, ConstraintError> {
        let vocab = tokenizer.vocab_size();
        if vocab == 0 || vocab > MAX_TRIE_VOCAB {
            return Err(ConstraintError::new(format!(
                "this model's vocabulary of {vocab} tokens cannot be constrained (limit {MAX_TRIE_VOCAB})"
            )));
        }
        let eos = tokenizer.eos_ids();
        let Some(&first_eos) = eos.first() else {
            return Err(ConstraintError::new(
                "this model has no end-of-sequence token, so a constrained answer could not end",
            ));
        };
        let mut words = Vec::with_capacity(vocab);
        let mut total = 0usize;
        for id in 0..vocab as u32 {
            let bytes = tokenizer.token_bytes(id).map_err(ConstraintError::new)?;
            let mut word = Vec::with_capacity(bytes.len() + 1);
            if tokenizer.is_special(id) {
                word.push(TokTrie::SPECIAL_TOKEN_MARKER);
            }
            word.extend_from_slice(bytes);
            if word.len() > MAX_TRIE_TOKEN_BYTES {
                return Err(ConstraintError::new(format!(
                    "token {id} is {} bytes long; constrained decoding takes tokens of at most {MAX_TRIE_TOKEN_BYTES}",
                    word.len()
                )));
            }
            total += word.len();
            words.push(word);
        }
        if total > MAX_TRIE_BYTES {
            return Err(ConstraintError::new(format!(
                "this model's vocabulary spells {total} bytes; constrained decoding takes at most {MAX_TRIE_BYTES}"
            )));
        }
        let mut info = TokRxInfo::new(vocab as u32, first_eos);
        info.tok_bos = tokenizer.bos_id();
        let trie = TokTrie::from(&info, &words).with_eos_tokens(eos);
        Ok(ModelTokEnv { trie, tokenizer })
    }
}

impl TokenizerEnv for ModelTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// Our tokenizer's encoding where the bytes are text, the trie's greedy one otherwise.
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        std::str::from_utf8(s)
            .ok()
            .and_then(|text| self.tokenizer.encode(text, false).ok())
            .unwrap_or_else(|| self.trie.greedy_tokenize(s))
    }

    /// Not claimed: our encoder matches added-token strings inside text, and llguidance
    /// uses a canonical tokenizer only to force tokens, which the engine does not do.
    fn tokenize_is_canonical(&self) -> bool {
        false
    }
}
