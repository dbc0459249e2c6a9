//! A tokenizer from a Hugging Face `tokenizer.json` with a `BPE` model.
//!
//! Covered: byte-level BPE (`ByteLevel`, `Split`, `Digits` pre-tokenizers, as used by
//! Llama 3, SmolLM, Qwen 2 and GPT-2, with `ignore_merges`), and SentencePiece-style BPE
//! with byte fallback (Llama 2's `Prepend` + `Replace` normalizer, or Mistral's
//! `Metaspace` pre-tokenizer). BOS/EOS insertion comes from a `TemplateProcessing` post-
//! processor. Anything else is refused by name rather than tokenised differently.

use serde_json::Value;

use super::byte_level;
use super::error::TokenizerError;
use super::parts::{AddedSpec, END_OF_TURN_TOKENS, Model, Parts, Prepend, parse_byte_token};
use super::pretokenizer::{GPT2_PATTERN, PreTokenizer, SplitRegex, SplitStep};

/// The largest vocabulary accepted: a `tokenizer.json` is input too, and ids index arrays.
/// The largest real vocabularies are ~262k tokens.
const MAX_VOCAB: u64 = 1 << 22;

fn json_err(reason: impl Into<String>) -> TokenizerError {
    TokenizerError::Json {
        reason: reason.into(),
    }
}

fn unsupported(component: &'static str, kind: impl Into<String>) -> TokenizerError {
    TokenizerError::UnsupportedJson {
        component,
        kind: kind.into(),
    }
}

/// The string under `key`, if there is one.
fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The array under `key`; empty when there is none.
fn array_at<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn type_of(v: &Value) -> &str {
    str_at(v, "type").unwrap_or("")
}

fn flag(v: &Value, key: &str, default: bool) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(default)
}

pub(super) fn parts(json: &[u8]) -> Result<Parts, TokenizerError> {
    let root: Value = serde_json::from_slice(json).map_err(|e| json_err(e.to_string()))?;
    let model = root.get("model").ok_or_else(|| json_err("no `model`"))?;
    if type_of(model) != "BPE" {
        return Err(unsupported("model", type_of(model)));
    }
    for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
        if str_at(model, key).is_some_and(|s| !s.is_empty()) {
            return Err(unsupported("BPE option", key));
        }
    }

    // Vocabulary: the model's, plus added tokens (which may lie beyond it).
    let mut by_id: Vec<Option<String>> = Vec::new();
    let mut put = |id: u64, tok: &str| -> Result<(), TokenizerError> {
        if id >= MAX_VOCAB {
            return Err(json_err(format!(
                "token id {id} is above the limit of {MAX_VOCAB}"
            )));
        }
        let id = id as usize;
        if by_id.len() <= id {
            by_id.resize(id + 1, None);
        }
        by_id[id] = Some(tok.to_string());
        Ok(())
    };
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| json_err("no `model.vocab` object"))?;
    for (tok, id) in vocab {
        put(
            id.as_u64()
                .ok_or_else(|| json_err(format!("vocab id of `{tok}` is not an integer")))?,
            tok,
        )?;
    }
    let mut added = Vec::new();
    for a in array_at(&root, "added_tokens") {
        let content =
            str_at(a, "content").ok_or_else(|| json_err("added token without `content`"))?;
        let id = a
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| json_err(format!("added token `{content}` without `id`")))?;
        if flag(a, "lstrip", false) || flag(a, "rstrip", false) || flag(a, "single_word", false) {
            return Err(unsupported(
                "added token option",
                format!("lstrip/rstrip/single_word on `{content}`"),
            ));
        }
        put(id, content)?;
        added.push(AddedSpec {
            content: content.to_string(),
            id: id as u32,
            special: flag(a, "special", false),
        });
    }
    let vocab: Vec<String> = by_id
        .into_iter()
        .enumerate()
        .map(|(id, t)| t.ok_or_else(|| json_err(format!("no token has id {id}"))))
        .collect::<Result<_, _>>()?;

    let merges = merges_of(model)?;
    let normalizer = root.get("normalizer").filter(|v| !v.is_null());
    let pre = root.get("pre_tokenizer").filter(|v| !v.is_null());
    let model_kind = match find_metaspace(normalizer, pre)? {
        Some((_, true)) => return Err(unsupported("Metaspace option", "split: true")),
        Some((prepend, false)) => Model::Metaspace {
            prepend,
            byte_ids: flag(model, "byte_fallback", false)
                .then(|| byte_token_ids(&vocab))
                .transpose()?,
            unk_id: str_at(model, "unk_token")
                .and_then(|u| vocab.iter().position(|t| t == u))
                .map(|i| i as u32),
        },
        None => {
            if let Some(n) = normalizer {
                return Err(unsupported("normalizer", type_of(n)));
            }
            let mut steps = Vec::new();
            let mut add_prefix_space = false;
            let mut byte_level = false;
            if let Some(p) = pre {
                collect_steps(p, &mut steps, &mut add_prefix_space, &mut byte_level)?;
            }
            if !byte_level {
                return Err(unsupported(
                    "pre-tokenizer",
                    "BPE without ByteLevel or Metaspace",
                ));
            }
            Model::ByteLevel {
                pre: PreTokenizer::new(steps),
                add_prefix_space,
                byte_ids: byte_level::byte_ids(&vocab),
                ignore_merges: flag(model, "ignore_merges", false),
            }
        }
    };

    let (bos_id, add_bos, eos_from_template) = post_processor(root.get("post_processor"), &vocab)?;
    let mut eos_ids: Vec<u32> = eos_from_template.into_iter().collect();
    for a in &added {
        if a.special && END_OF_TURN_TOKENS.contains(&a.content.as_str()) {
            eos_ids.push(a.id);
        }
    }
    Ok(Parts {
        vocab,
        merges,
        model: model_kind,
        added,
        extra_special: bos_id.into_iter().collect(),
        bos_id,
        eos_ids,
        add_bos,
        add_eos: eos_from_template.is_some(),
        byte_override: Vec::new(),
    })
}

fn merges_of(model: &Value) -> Result<Vec<(String, String)>, TokenizerError> {
    array_at(model, "merges")
        .iter()
        .enumerate()
        .map(|(index, m)| {
            let pair = match m {
                Value::String(s) => s
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string())),
                Value::Array(v) => match v.as_slice() {
                    [Value::String(a), Value::String(b)] => Some((a.clone(), b.clone())),
                    _ => None,
                },
                _ => None,
            };
            pair.ok_or_else(|| TokenizerError::BadMerge {
                index,
                merge: m.to_string(),
                reason: "expected \"a b\" or [a, b]".into(),
            })
        })
        .collect()
}

/// A SentencePiece-style setup: `Some((prepend, split))` when the normalizer or the
/// pre-tokenizer spells spaces as `▁`.
fn find_metaspace(
    normalizer: Option<&Value>,
    pre: Option<&Value>,
) -> Result<Option<(Prepend, bool)>, TokenizerError> {
    if let Some(n) = normalizer {
        // Llama 2: Sequence[Prepend("▁"), Replace(" ", "▁")], no pre-tokenizer.
        let items = match type_of(n) {
            "Sequence" => array_at(n, "normalizers"),
            _ => std::slice::from_ref(n),
        };
        let replaces_space = items.iter().any(|i| {
            type_of(i) == "Replace"
                && i.pointer("/pattern/String").and_then(Value::as_str) == Some(" ")
                && str_at(i, "content") == Some("\u{2581}")
        });
        if replaces_space
            && items
                .iter()
                .all(|i| matches!(type_of(i), "Prepend" | "Replace"))
        {
            if pre.is_some() {
                return Err(unsupported(
                    "pre-tokenizer",
                    "a pre-tokenizer after a ▁ normalizer",
                ));
            }
            let prepend = if items.iter().any(|i| type_of(i) == "Prepend") {
                Prepend::Unconditional
            } else {
                Prepend::Never
            };
            return Ok(Some((prepend, false)));
        }
        return Ok(None);
    }
    match pre {
        Some(p) if type_of(p) == "Metaspace" => {
            if str_at(p, "replacement") != Some("\u{2581}") {
                return Err(unsupported(
                    "Metaspace replacement",
                    p.get("replacement")
                        .map(Value::to_string)
                        .unwrap_or_default(),
                ));
            }
            let prepend = match str_at(p, "prepend_scheme") {
                Some("always") => Prepend::Always,
                Some("first") => Prepend::First,
                Some("never") => Prepend::Never,
                // Older files: `add_prefix_space` instead of a scheme.
                _ if flag(p, "add_prefix_space", true) => Prepend::Always,
                _ => Prepend::Never,
            };
            Ok(Some((prepend, flag(p, "split", true))))
        }
        _ => Ok(None),
    }
}

fn collect_steps(
    p: &Value,
    steps: &mut Vec<SplitStep>,
    add_prefix_space: &mut bool,
    byte_level: &mut bool,
) -> Result<(), TokenizerError> {
    match type_of(p) {
        "Sequence" => {
            for inner in array_at(p, "pretokenizers") {
                collect_steps(inner, steps, add_prefix_space, byte_level)?;
            }
        }
        "ByteLevel" => {
            *byte_level = true;
            *add_prefix_space = flag(p, "add_prefix_space", false);
            if flag(p, "use_regex", true) {
                steps.push(SplitStep::Pattern(SplitRegex::new(GPT2_PATTERN)?));
            }
        }
        "Split" => {
            if flag(p, "invert", false) {
                return Err(unsupported("Split option", "invert: true"));
            }
            let behavior = str_at(p, "behavior").unwrap_or("");
            if behavior != "Isolated" {
                return Err(unsupported("Split behavior", behavior));
            }
            let pattern = match (p.pointer("/pattern/Regex"), p.pointer("/pattern/String")) {
                (Some(Value::String(re)), _) => re.clone(),
                (_, Some(Value::String(s))) => regex::escape(s),
                _ => return Err(json_err("Split without a pattern")),
            };
            steps.push(SplitStep::Pattern(SplitRegex::new(&pattern)?));
        }
        "Digits" => steps.push(SplitStep::Digits {
            individual: flag(p, "individual_digits", false),
        }),
        other => return Err(unsupported("pre-tokenizer", other)),
    }
    Ok(())
}

/// `(bos_id, add_bos, eos_id appended)` from a `TemplateProcessing` post-processor.
fn post_processor(
    p: Option<&Value>,
    vocab: &[String],
) -> Result<(Option<u32>, bool, Option<u32>), TokenizerError> {
    let Some(p) = p.filter(|v| !v.is_null()) else {
        return Ok((None, false, None));
    };
    let template = match type_of(p) {
        "TemplateProcessing" => Some(p),
        "Sequence" => array_at(p, "processors")
            .iter()
            .find(|x| type_of(x) == "TemplateProcessing"),
        // Offsets only; ids are untouched.
        "ByteLevel" => None,
        other => return Err(unsupported("post-processor", other)),
    };
    let Some(t) = template else {
        return Ok((None, false, None));
    };
    let single = array_at(t, "single");
    let id_of = |item: &Value| -> Result<Option<u32>, TokenizerError> {
        let Some(name) = item.pointer("/SpecialToken/id").and_then(Value::as_str) else {
            return Ok(None);
        };
        vocab
            .iter()
            .position(|v| v == name)
            .map(|i| Some(i as u32))
            .ok_or_else(|| {
                json_err(format!(
                    "post-processor token `{name}` is not in the vocabulary"
                ))
            })
    };
    let seq_at = single
        .iter()
        .position(|i| i.get("Sequence").is_some())
        .unwrap_or(single.len());
    let mut bos = None;
    for item in &single[..seq_at] {
        bos = bos.or(id_of(item)?);
    }
    let mut eos = None;
    for item in single.iter().skip(seq_at + 1) {
        eos = eos.or(id_of(item)?);
    }
    Ok((bos, bos.is_some(), eos))
}

fn byte_token_ids(vocab: &[String]) -> Result<Box<[u32; 256]>, TokenizerError> {
    let mut ids = Box::new([u32::MAX; 256]);
    for (id, t) in vocab.iter().enumerate() {
        if let Some(b) = parse_byte_token(t) {
            ids[usize::from(b)] = id as u32;
        }
    }
    match ids.iter().position(|&id| id == u32::MAX) {
        Some(b) => Err(TokenizerError::BadVocab {
            reason: format!("byte_fallback is set but there is no <0x{b:02X}> token"),
        }),
        None => Ok(ids),
    }
}
