//! What a tokenizer source (GGUF metadata, `tokenizer.json`) describes, before
//! [`Tokenizer::build`](super::Tokenizer) validates it: vocabulary, merges, model kind and
//! added tokens, with the spelling helpers both sources share.

use super::pretokenizer::PreTokenizer;

/// How the model turns a piece of plain text into its first symbols.
#[derive(Debug)]
pub(crate) enum Model {
    /// Byte-level BPE: a pre-tokenizer, then one byte token per UTF-8 byte.
    ByteLevel {
        pre: PreTokenizer,
        /// Prepend a space to each plain-text segment that lacks one (`ByteLevel`'s
        /// `add_prefix_space`; off for every modern vocabulary).
        add_prefix_space: bool,
        /// The token id of each byte's spelling. A byte the vocabulary cannot spell is
        /// dropped, as the reference BPE (with no unknown token) drops it; SmolLM2's
        /// vocabulary, for one, lacks some control bytes.
        byte_ids: Box<[Option<u32>; 256]>,
        /// A piece that is itself a token is taken whole, merges or not (Llama 3's
        /// `ignore_merges`).
        ignore_merges: bool,
    },
    /// SentencePiece-style BPE over `▁`-spaced text, one segment per plain-text run.
    Metaspace {
        prepend: Prepend,
        /// The `<0xNN>` token of each byte, when the vocabulary falls back to bytes.
        byte_ids: Option<Box<[u32; 256]>>,
        /// The unknown token, for characters with neither a token nor byte fallback.
        unk_id: Option<u32>,
    },
}

/// When a SentencePiece-style tokenizer prepends `▁` (`Metaspace`'s `prepend_scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prepend {
    /// To every plain-text segment that does not already start with `▁`.
    Always,
    /// Only to the text at the very start of the input (not after an added token).
    First,
    /// To every non-empty plain-text segment, even one starting with a space (Llama 2's
    /// `Prepend` normalizer: `" hi"` becomes `▁▁hi`).
    Unconditional,
    Never,
}

/// One added token, as a source describes it.
#[derive(Debug, Clone)]
pub(crate) struct AddedSpec {
    pub(crate) content: String,
    pub(crate) id: u32,
    /// Special tokens are dropped by `decode(.., skip_special = true)`.
    pub(crate) special: bool,
}

/// Everything a source (GGUF, tokenizer.json) says, before validation.
#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) vocab: Vec<String>,
    /// Ranked merges as token-string pairs, best first.
    pub(crate) merges: Vec<(String, String)>,
    pub(crate) model: Model,
    pub(crate) added: Vec<AddedSpec>,
    /// Tokens that are special for decoding without being matched in text (e.g. a BOS
    /// listed only by id).
    pub(crate) extra_special: Vec<u32>,
    pub(crate) bos_id: Option<u32>,
    pub(crate) eos_ids: Vec<u32>,
    pub(crate) add_bos: bool,
    pub(crate) add_eos: bool,
    /// Per-token byte spellings, when the source knows better than the model's default
    /// (GGUF `BYTE` tokens); `None` entries use the default.
    pub(crate) byte_override: Vec<Option<Vec<u8>>>,
}

/// `<0x0A>` -> 0x0A.
pub(crate) fn parse_byte_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok().filter(|_| hex.len() == 2)
}

/// Token strings that end a turn in common chat formats; those present in a vocabulary
/// as special tokens join its EOS ids.
pub(crate) const END_OF_TURN_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<|end|>",
    "</s>",
];
