//! A tokenizer from GGUF metadata (`tokenizer.ggml.*`), built the way Hugging Face
//! transformers builds one from the same file (`integrations/gguf/gguf_tokenizer_mapping.py`),
//! so that both give the same ids.
//!
//! * `gpt2` model: byte-level BPE with the file's merges. The pre-tokenizer pattern follows
//!   `tokenizer.ggml.pre`; names transformers does not map (including `smollm`, `gpt2`,
//!   `default`) get GPT-2's `ByteLevel` pattern, as transformers does. Tokens typed CONTROL
//!   become special added tokens, USER_DEFINED plain added tokens.
//!
//!   That is not always what the vocabulary was trained with: llama.cpp (and SmolLM2's own
//!   `tokenizer.json`) split every digit off first for `smollm` and its relatives. With
//!   [`PreTokenizerReference::LlamaCpp`] those names get the digit split; on the golden
//!   strings this changes 5 of 247 tokenisations (runs of spaces before a number, `½`).
//! * `llama` model: SentencePiece-style BPE with byte fallback; merges come from the file
//!   or, as usual, are derived from token scores (best-scored merged token first).

use crate::engine::gguf::{GgufError, GgufFile, GgufValue};

use super::byte_level;
use super::error::TokenizerError;
use super::parts::{AddedSpec, END_OF_TURN_TOKENS, Model, Parts, Prepend, parse_byte_token};
use super::pretokenizer::{
    GPT2_PATTERN, GPT4O_PATTERN, LLAMA3_PATTERN, PreTokenizer, QWEN2_PATTERN, SplitRegex,
    SplitStep, TEKKEN_PATTERN,
};

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
mod token_type {
    pub(super) const UNKNOWN: i128 = 2;
    pub(super) const CONTROL: i128 = 3;
    pub(super) const USER_DEFINED: i128 = 4;
    pub(super) const BYTE: i128 = 6;
}

/// An optional key: absent is `None`, present-but-wrong is an error.
fn optional<'f, T, E: Into<TokenizerError>>(
    file: &'f GgufFile,
    key: &str,
    get: impl Fn(&'f GgufFile, &str) -> Result<T, E>,
) -> Result<Option<T>, TokenizerError> {
    file.get(key)
        .map(|_| get(file, key))
        .transpose()
        .map_err(Into::into)
}

/// Each element of `values` (the array under `key`) read by `get`; `expected` names the
/// element type in the error.
fn elements<T>(
    values: &[GgufValue],
    key: &str,
    expected: &'static str,
    get: impl Fn(&GgufValue) -> Option<T>,
) -> Result<Vec<T>, TokenizerError> {
    let wrong = |i: usize, v: &GgufValue| GgufError::WrongType {
        key: format!("{key}[{i}]"),
        expected,
        found: v.value_type(),
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| get(v).ok_or_else(|| wrong(i, v).into()))
        .collect()
}

fn string_array(file: &GgufFile, key: &str) -> Result<Vec<String>, TokenizerError> {
    elements(file.get_array(key)?, key, "string", |v| {
        v.as_str().map(str::to_string)
    })
}

fn number_array<T>(
    file: &GgufFile,
    key: &str,
    n: usize,
    get: impl Fn(&GgufValue) -> Option<T>,
) -> Result<Option<Vec<T>>, TokenizerError> {
    let Some(values) = optional(file, key, GgufFile::get_array)? else {
        return Ok(None);
    };
    if values.len() != n {
        return Err(TokenizerError::BadVocab {
            reason: format!("`{key}` has {} entries for {n} tokens", values.len()),
        });
    }
    elements(values, key, "number", get).map(Some)
}

/// Which implementation's reading of `tokenizer.ggml.pre` to follow where they differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PreTokenizerReference {
    /// Hugging Face transformers' GGUF conversion (the default: the correctness reference).
    #[default]
    Transformers,
    /// llama.cpp, which isolates digits for `smollm`, `starcoder`, `refact`, `command-r`,
    /// `codeshell`, `exaone` and `minerva` before GPT-2's pattern.
    LlamaCpp,
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` name under `reference`.
fn pre_tokenizer(
    pre: Option<&str>,
    reference: PreTokenizerReference,
) -> Result<PreTokenizer, TokenizerError> {
    let digits_first = matches!(
        pre,
        Some("smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva")
    );
    if reference == PreTokenizerReference::LlamaCpp && digits_first {
        return Ok(PreTokenizer::new(vec![
            SplitStep::Digits { individual: true },
            SplitStep::Pattern(SplitRegex::new(GPT2_PATTERN)?),
        ]));
    }
    PreTokenizer::pattern(pre_pattern(pre))
}

/// The split pattern transformers applies for a `tokenizer.ggml.pre` name.
fn pre_pattern(pre: Option<&str>) -> &'static str {
    match pre.unwrap_or("default") {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3_PATTERN,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2_PATTERN,
        "tekken" => TEKKEN_PATTERN,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O_PATTERN,
        // `smollm`, `gpt2`, `default` and names transformers does not know.
        _ => GPT2_PATTERN,
    }
}

pub(super) fn parts(
    file: &GgufFile,
    reference: PreTokenizerReference,
) -> Result<Parts, TokenizerError> {
    let model_name = file.get_str("tokenizer.ggml.model")?;
    let tokens = string_array(file, "tokenizer.ggml.tokens")?;
    let n = tokens.len();
    let types = number_array(file, "tokenizer.ggml.token_type", n, GgufValue::as_i128)?;
    let type_of = |id: usize| types.as_ref().map_or(1, |t| t[id]);
    let id_key = |key: &str| optional(file, key, GgufFile::get_u32);
    let flag = |key: &str, default: bool| {
        optional(file, key, GgufFile::get_bool).map(|v| v.unwrap_or(default))
    };

    let bos_id = id_key("tokenizer.ggml.bos_token_id")?;
    let eos_id = id_key("tokenizer.ggml.eos_token_id")?;
    let unk_id = id_key("tokenizer.ggml.unknown_token_id")?;
    let mut eos_ids: Vec<u32> = eos_id.into_iter().collect();
    for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        eos_ids.extend(id_key(key)?);
    }
    for (id, tok) in tokens.iter().enumerate() {
        if END_OF_TURN_TOKENS.contains(&tok.as_str()) && type_of(id) == token_type::CONTROL {
            eos_ids.push(id as u32);
        }
    }
    let add_eos = flag("tokenizer.ggml.add_eos_token", false)?;

    let mut byte_override = Vec::new();
    let (model, merges, add_bos, byte_level_vocab) = match model_name {
        "gpt2" => {
            let merges = split_merges(&string_array(file, "tokenizer.ggml.merges")?)?;
            let pre = optional(file, "tokenizer.ggml.pre", GgufFile::get_str)?;
            let model = Model::ByteLevel {
                pre: pre_tokenizer(pre, reference)?,
                add_prefix_space: false,
                byte_ids: byte_level::byte_ids(&tokens),
                ignore_merges: false,
            };
            // transformers' GPT2Tokenizer adds no BOS unless the file says so.
            let add_bos = flag("tokenizer.ggml.add_bos_token", false)?;
            (model, merges, add_bos, true)
        }
        "llama" => {
            let scores = number_array(file, "tokenizer.ggml.scores", n, GgufValue::as_f32)?;
            let merges = match optional(file, "tokenizer.ggml.merges", string_array)? {
                Some(m) => split_merges(&m)?,
                None => merges_from_scores(&tokens, scores.as_deref(), &type_of)?,
            };
            let mut byte_ids = Box::new([0u32; 256]);
            let mut found = 0;
            for (id, tok) in tokens.iter().enumerate() {
                if let Some(b) = parse_byte_token(tok) {
                    byte_ids[usize::from(b)] = id as u32;
                    found += 1;
                    if type_of(id) == token_type::BYTE {
                        byte_override.resize(n, None);
                        byte_override[id] = Some(vec![b]);
                    }
                }
            }
            let model = Model::Metaspace {
                prepend: Prepend::First,
                byte_ids: (found >= 256).then_some(byte_ids),
                unk_id,
            };
            // Older files have no flag, and SentencePiece vocabularies start with BOS.
            let add_bos = flag("tokenizer.ggml.add_bos_token", true)?;
            (model, merges, add_bos, false)
        }
        other => {
            return Err(TokenizerError::UnsupportedModel {
                model: other.into(),
                supported: "gpt2, llama",
            });
        }
    };

    let mut added = Vec::new();
    let mut extra_special = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        match type_of(id) {
            // A byte-level "control" token spelled outside the byte alphabet is a converter
            // mislabel; transformers skips it, and so do we.
            token_type::CONTROL if byte_level_vocab && byte_level::decode_token(tok).is_none() => {}
            kind @ (token_type::CONTROL | token_type::USER_DEFINED) => added.push(AddedSpec {
                content: tok.clone(),
                id: id as u32,
                special: kind == token_type::CONTROL,
            }),
            token_type::UNKNOWN => extra_special.push(id as u32),
            _ => {}
        }
    }
    extra_special.extend(bos_id);
    extra_special.extend(eos_id);

    Ok(Parts {
        vocab: tokens,
        merges,
        model,
        added,
        extra_special,
        bos_id,
        eos_ids,
        add_bos,
        add_eos,
        byte_override,
    })
}

fn split_merges(merges: &[String]) -> Result<Vec<(String, String)>, TokenizerError> {
    merges
        .iter()
        .enumerate()
        .map(|(index, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| TokenizerError::BadMerge {
                    index,
                    merge: m.clone(),
                    reason: "expected two tokens separated by a space".into(),
                })
        })
        .collect()
}

/// Merges implied by a SentencePiece vocabulary: every split of a token into two tokens,
/// best-scored merged token first; ties by longer left part, then longer right part, then
/// file order (transformers' `generate_merges`).
fn merges_from_scores(
    tokens: &[String],
    scores: Option<&[f32]>,
    type_of: &dyn Fn(usize) -> i128,
) -> Result<Vec<(String, String)>, TokenizerError> {
    let scores = scores.ok_or_else(|| GgufError::MissingKey {
        key: "tokenizer.ggml.scores".into(),
    })?;
    let index: std::collections::HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut found: Vec<(f32, usize, usize, String, String)> = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        if matches!(
            type_of(id),
            token_type::CONTROL | token_type::BYTE | token_type::UNKNOWN
        ) {
            continue;
        }
        let mut local = Vec::new();
        for (split, _) in tok.char_indices().skip(1) {
            let (l, r) = tok.split_at(split);
            if let (Some(&li), Some(&ri)) = (index.get(l), index.get(r)) {
                local.push((li, ri, l, r));
            }
        }
        local.sort_by_key(|&(li, ri, _, _)| (li, ri));
        for (_, _, l, r) in local {
            found.push((
                scores[id],
                l.chars().count(),
                r.chars().count(),
                l.to_string(),
                r.to_string(),
            ));
        }
    }
    // Stable sort, descending on (score, left length, right length).
    found.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
    Ok(found.into_iter().map(|(_, _, _, l, r)| (l, r)).collect())
}
