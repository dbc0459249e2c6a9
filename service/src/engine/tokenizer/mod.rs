//! Tokenizers: text to token ids and back, matching Hugging Face `tokenizers` on the same
//! vocabulary.
//!
//! Two families, one merge engine ([`bpe`]):
//!
//! * **Byte-level BPE** (GPT-2, Llama 3, SmolLM, Qwen 2): text is cut by a pre-tokenizer
//!   pattern ([`pretokenizer`]), each piece's UTF-8 bytes become byte tokens
//!   ([`byte_level`]), and ranked merges join them.
//! * **SentencePiece-style BPE** (Llama 2, Mistral): spaces become `▁`, a `▁` is prepended
//!   at the start of the text, characters become tokens (or `<0xNN>` byte tokens when the
//!   vocabulary lacks them), and merges join them — ranked by the merge list of a
//!   `tokenizer.json`, or by token score for a GGUF vocabulary.
//!
//! Added tokens (`<|im_start|>`…) are matched whole before anything else ([`added`]).
//! Sources: GGUF metadata ([`Tokenizer::from_gguf`]) or a `tokenizer.json`
//! ([`Tokenizer::from_tokenizer_json`]). Streaming output goes through
//! [`decoder::StreamDecoder`], a layer on top that the tokenizer itself does not use.

mod added;
mod bpe;
mod byte_level;
pub mod decoder;
mod error;
mod from_gguf;
mod from_json;
mod parts;
mod pretokenizer;

use std::collections::HashMap;
use std::sync::Mutex;

pub use error::TokenizerError;
pub use from_gguf::PreTokenizerReference;

use added::{AddedTokens, Segment};
use bpe::Merges;
use parts::{Model, Parts, Prepend, parse_byte_token};

/// Pieces cached per tokenizer; pre-token pieces repeat a lot in real text.
const PIECE_CACHE_CAPACITY: usize = 16_384;
/// Pieces longer than this are not cached (long runs are rare and would bloat the cache).
const PIECE_CACHE_MAX_LEN: usize = 64;

/// A tokenizer: vocabulary, merges, added tokens and special-token ids.
#[derive(Debug)]
pub struct Tokenizer {
    model: Model,
    vocab: Vec<String>,
    token_to_id: HashMap<String, u32>,
    token_bytes: Vec<Vec<u8>>,
    special: Vec<bool>,
    merges: Merges,
    added: AddedTokens,
    bos_id: Option<u32>,
    eos_ids: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl Tokenizer {
    /// Builds a tokenizer from a GGUF file's `tokenizer.ggml.*` metadata, exactly as
    /// transformers builds one from the same file.
    pub fn from_gguf(file: &crate::engine::gguf::GgufFile) -> Result<Tokenizer, TokenizerError> {
        Self::from_gguf_with(file, PreTokenizerReference::Transformers)
    }

    /// As [`Tokenizer::from_gguf`], following `reference` where transformers and llama.cpp
    /// read `tokenizer.ggml.pre` differently.
    pub fn from_gguf_with(
        file: &crate::engine::gguf::GgufFile,
        reference: PreTokenizerReference,
    ) -> Result<Tokenizer, TokenizerError> {
        Self::build(from_gguf::parts(file, reference)?)
    }

    /// Builds a tokenizer from the bytes of a Hugging Face `tokenizer.json`.
    pub fn from_tokenizer_json(json: &[u8]) -> Result<Tokenizer, TokenizerError> {
        Self::build(from_json::parts(json)?)
    }

    /// Reads and builds a tokenizer from a `tokenizer.json` file.
    pub fn from_tokenizer_json_file(path: &std::path::Path) -> Result<Tokenizer, TokenizerError> {
        let bytes = crate::engine::read_sidecar(path).map_err(|e| TokenizerError::Json {
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::from_tokenizer_json(&bytes)
    }

    fn build(parts: Parts) -> Result<Tokenizer, TokenizerError> {
        let n = parts.vocab.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(TokenizerError::BadVocab {
                reason: format!("{n} tokens"),
            });
        }
        // Later duplicates win, as in the reference's `{token: index}` dictionaries.
        let token_to_id: HashMap<String, u32> = parts.vocab.iter().cloned().zip(0..).collect();
        let check_id = |id: u32, what: &str| {
            ((id as usize) < n)
                .then_some(id)
                .ok_or_else(|| TokenizerError::BadVocab {
                    reason: format!("{what} id {id} is outside the vocabulary of {n}"),
                })
        };
        let bos_id = parts.bos_id.map(|id| check_id(id, "BOS")).transpose()?;
        let mut eos_ids = Vec::new();
        for &id in &parts.eos_ids {
            let id = check_id(id, "EOS")?;
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }

        let mut merges = Merges::with_capacity(parts.merges.len());
        for (index, (a, b)) in parts.merges.iter().enumerate() {
            let lookup = |s: &str| {
                token_to_id
                    .get(s)
                    .copied()
                    .ok_or_else(|| TokenizerError::BadMerge {
                        index,
                        merge: format!("{a} {b}"),
                        reason: format!("`{s}` is not in the vocabulary"),
                    })
            };
            let (left, right) = (lookup(a)?, lookup(b)?);
            let merged = lookup(&format!("{a}{b}"))?;
            merges.insert(left, right, index as u32, merged);
        }

        let mut added = AddedTokens::default();
        let mut special = vec![false; n];
        for spec in &parts.added {
            let id = check_id(spec.id, "added token")?;
            added.insert(&spec.content, id);
            special[id as usize] |= spec.special;
        }
        for &id in &parts.extra_special {
            special[check_id(id, "special token")? as usize] = true;
        }

        let token_bytes = parts
            .vocab
            .iter()
            .enumerate()
            .map(|(id, tok)| match parts.byte_override.get(id) {
                Some(Some(bytes)) => bytes.clone(),
                _ => default_token_bytes(&parts.model, tok),
            })
            .collect();
        Ok(Tokenizer {
            model: parts.model,
            vocab: parts.vocab,
            token_to_id,
            token_bytes,
            special,
            merges,
            added,
            bos_id,
            eos_ids,
            add_bos: parts.add_bos,
            add_eos: parts.add_eos,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Token ids for `text`. Added-token strings in `text` (`<|im_start|>`) become their
    /// tokens; `add_special` adds BOS (and EOS) where the vocabulary asks for them.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            ids.extend(self.bos_id);
        }
        for (i, segment) in self.added.split(text).into_iter().enumerate() {
            match segment {
                Segment::Added(id) => ids.push(id),
                Segment::Text(t) => self.encode_plain(t, i == 0, &mut ids)?,
            }
        }
        if add_special && self.add_eos {
            ids.extend(self.eos_ids.first());
        }
        Ok(ids)
    }

    fn encode_plain(
        &self,
        text: &str,
        at_start: bool,
        ids: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        match &self.model {
            Model::ByteLevel {
                pre,
                add_prefix_space,
                byte_ids,
                ignore_merges,
            } => {
                let owned;
                let text = if *add_prefix_space && !text.starts_with(' ') {
                    owned = format!(" {text}");
                    owned.as_str()
                } else {
                    text
                };
                for piece in pre.split(text)? {
                    self.encode_byte_piece(piece, byte_ids, *ignore_merges, ids);
                }
            }
            Model::Metaspace {
                prepend,
                byte_ids,
                unk_id,
            } => {
                let mut s = text.replace(' ', "\u{2581}");
                let wants_prefix = match prepend {
                    Prepend::Always => !s.starts_with('\u{2581}'),
                    Prepend::First => at_start && !s.starts_with('\u{2581}'),
                    Prepend::Unconditional => !s.is_empty(),
                    Prepend::Never => false,
                };
                if wants_prefix {
                    s.insert(0, '\u{2581}');
                }
                let mut word = Vec::with_capacity(s.len());
                let mut last_was_unk = false;
                let mut buf = [0u8; 4];
                for c in s.chars() {
                    let c_str: &str = c.encode_utf8(&mut buf);
                    if let Some(&id) = self.token_to_id.get(c_str) {
                        word.push(id);
                        last_was_unk = false;
                    } else if let Some(byte_ids) = byte_ids {
                        word.extend(c_str.bytes().map(|b| byte_ids[usize::from(b)]));
                        last_was_unk = false;
                    } else if let Some(unk) = unk_id {
                        // Consecutive unknown characters fuse into one unknown token.
                        if !last_was_unk {
                            word.push(*unk);
                        }
                        last_was_unk = true;
                    }
                }
                self.merges.apply(&mut word);
                ids.extend(word);
            }
        }
        Ok(())
    }

    fn encode_byte_piece(
        &self,
        piece: &str,
        byte_ids: &[Option<u32>; 256],
        ignore_merges: bool,
        ids: &mut Vec<u32>,
    ) {
        if ignore_merges {
            let table = byte_level::byte_to_char();
            let spelled: String = piece.bytes().map(|b| table[usize::from(b)]).collect();
            if let Some(&id) = self.token_to_id.get(&spelled) {
                ids.push(id);
                return;
            }
        }
        let cacheable = piece.len() <= PIECE_CACHE_MAX_LEN;
        if cacheable {
            if let Some(hit) = self.cache.lock().ok().as_ref().and_then(|c| c.get(piece)) {
                ids.extend_from_slice(hit);
                return;
            }
        }
        let mut word: Vec<u32> = piece
            .bytes()
            .filter_map(|b| byte_ids[usize::from(b)])
            .collect();
        self.merges.apply(&mut word);
        ids.extend_from_slice(&word);
        if cacheable {
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() >= PIECE_CACHE_CAPACITY {
                    cache.clear();
                }
                cache.insert(piece.to_string(), word);
            }
        }
    }

    /// Text for `ids`; `skip_special` drops special tokens (BOS, `<|im_end|>`…). Bytes
    /// that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        let mut bytes = Vec::new();
        for &id in ids {
            if skip_special && self.is_special(id) {
                continue;
            }
            bytes.extend_from_slice(self.token_bytes(id)?);
        }
        if self.strips_leading_space() && bytes.first() == Some(&b' ') {
            bytes.remove(0);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// SentencePiece-style output drops the space of the `▁` prepended at the start.
    pub(crate) fn strips_leading_space(&self) -> bool {
        matches!(self.model, Model::Metaspace { prepend, .. } if prepend != Prepend::Never)
    }

    /// The bytes token `id` stands for.
    pub fn token_bytes(&self, id: u32) -> Result<&[u8], TokenizerError> {
        self.token_bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .ok_or(TokenizerError::UnknownTokenId {
                id,
                vocab_size: self.vocab.len(),
            })
    }

    /// Token `id` as the vocabulary spells it (`Ġhello`, `▁hello`, `<|im_end|>`).
    pub fn token_str(&self, id: u32) -> Option<&str> {
        self.vocab.get(id as usize).map(String::as_str)
    }

    /// The id of the token the vocabulary spells `s`.
    pub fn token_id(&self, s: &str) -> Option<u32> {
        self.token_to_id.get(s).copied()
    }

    /// Whether `id` is a special token (skipped by `decode(.., true)`).
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Number of tokens in the vocabulary (the model's embedding rows).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The beginning-of-sequence token, if the vocabulary has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Whether `encode(.., true)` prepends BOS.
    pub fn adds_bos(&self) -> bool {
        self.add_bos && self.bos_id.is_some()
    }

    /// Tokens that end generation: EOS first, then end-of-turn tokens (`<|im_end|>`,
    /// `<|eot_id|>`, …) the vocabulary has.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }
}

/// The bytes a token stands for under the model's spelling convention.
fn default_token_bytes(model: &Model, token: &str) -> Vec<u8> {
    match model {
        Model::ByteLevel { .. } => {
            byte_level::decode_token(token).unwrap_or_else(|| token.as_bytes().to_vec())
        }
        Model::Metaspace { byte_ids, .. } => match parse_byte_token(token) {
            Some(b) if byte_ids.is_some() => vec![b],
            _ => token.replace('\u{2581}', " ").into_bytes(),
        },
    }
}
