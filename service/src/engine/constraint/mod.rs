//! Constrained decoding (structured outputs): a JSON schema in, a token mask per step out.
//!
//! The grammar engine is [llguidance]; this module only adapts it to the engine.
//!
//! * **Compile, once per request, before the queue.** A [`ConstraintCompiler`] is built once
//!   per model from its [`Tokenizer`](crate::engine::tokenizer::Tokenizer) (a byte trie of
//!   the vocabulary, special tokens behind llguidance's `0xFF` marker, every EOS id as an
//!   end token) and shared. [`ConstraintCompiler::compile`] turns a [`ConstraintSpec`] into
//!   a [`Constraint`] on the request's blocking task, so a schema that cannot be honoured is
//!   a client error before the request is queued.
//! * **Strict.** llguidance runs non-lenient: a schema keyword it knows but does not
//!   implement (`uniqueItems`, `not`, `if`…), an unknown `format`, or a `oneOf` whose
//!   branches may overlap is a [`ConstraintError`] naming it, never silently dropped; so
//!   is any grammar warning. The schema's own `x-guidance` options are replaced by ours.
//! * **Bounded JSON layout.** Answers are written with `, ` and `: ` between items and no
//!   other whitespace (Python's `json.dumps` layout). Free whitespace would let a small
//!   model spend its whole budget on newlines; a fixed layout also keeps answers short.
//! * **Masks off the critical path.** In each step the engine computes the allowed tokens
//!   of every constrained sequence in the batch on a scoped worker thread
//!   (`masks_during`) while its own thread runs the model's forward pass for that step
//!   (prefill for a sequence's first token, the batched decode after). The mask depends
//!   only on the tokens already committed, so nothing waits for the model. The masks are
//!   then applied to the logits on the device, to the constrained rows only, before greedy
//!   argmax or sampling: disallowed tokens become −∞, so temperature, top-k and top-p act
//!   on the allowed distribution. A batch without constrained rows spawns no thread and
//!   touches no logits.
//! * **Commit and finish.** The picked token is committed to the matcher. When the grammar
//!   is complete (nothing but end of sequence may follow) the sequence ends `stop` at once,
//!   without an EOS token; an EOS the grammar allowed also ends it `stop`. `max_tokens`
//!   still cuts an answer (`length`). If llguidance fails mid-generation, the sequence ends
//!   `error` (logged); the rest of the batch goes on.
//!
//! Cost: building the compiler for SmolLM2's 49,152 tokens and compiling a first schema
//! took ~120 ms; a mask then took 90 µs per token on average along 40 sampled answers of
//! the engine test `constrained_answers_match_the_schema` (test profile, 2 CPU cores),
//! well under a decode step, which it overlaps anyway. The worker thread costs a spawn per
//! step that has constrained rows.

mod compiler;
mod token_env;

#[cfg(test)]
mod tests;

use llguidance::Matcher;
use llguidance::toktrie::SimpleVob;

pub use self::compiler::ConstraintCompiler;

/// Most characters of a constraint error shown to a client: llguidance's messages quote
/// parts of the schema, which a client may make arbitrarily large.
pub const MAX_ERROR_CHARS: usize = 300;

/// What the output must be, as the API states it.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstraintSpec {
    /// The output matches this JSON Schema (OpenAI's `json_schema` with `strict: true`).
    JsonSchema {
        /// The schema, a JSON object.
        schema: serde_json::Value,
    },
    /// The output is a JSON object, any object (OpenAI's `{"type": "json_object"}`).
    JsonObject,
    /// The output is JSON valid under `schema` between `open` and `close` (a tool call in
    /// a template's own syntax, such as `<tool_call>\n…\n</tool_call>`), once, or, with a
    /// `separator`, one or more times separated by it.
    Tagged {
        /// Text before each JSON value.
        open: String,
        /// The JSON value's schema.
        schema: serde_json::Value,
        /// Text after each JSON value.
        close: String,
        /// Between repetitions; `None`: exactly one.
        separator: Option<String>,
    },
}

/// Why a constraint could not be built or could not go on: one line, fit for a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConstraintError {
    /// The message, on one line.
    message: String,
}

impl ConstraintError {
    /// An error with `message` (flattened to one line, capped at [`MAX_ERROR_CHARS`]).
    pub fn new(message: impl std::fmt::Display) -> Self {
        let message = message.to_string();
        let mut line = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('<'))
            .collect::<Vec<_>>()
            .join("; ");
        if let Some((cut, _)) = line.char_indices().nth(MAX_ERROR_CHARS) {
            line.truncate(cut);
            line.push('…');
        }
        ConstraintError { message: line }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A compiled constraint for one sequence: which tokens may come next, and the tokens
/// committed so far. Built by [`ConstraintCompiler::compile`].
///
/// Once anything fails (a mask, a commit) the constraint stays failed: every later call
/// returns that error.
#[derive(Clone)]
pub struct Constraint {
    /// Boxed: a matcher is ~1.5 kB, and requests carrying a constraint move through queues.
    matcher: Box<Matcher>,
    failure: Option<ConstraintError>,
}

// The engine moves constraints to its own thread and computes masks on another.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Constraint>();
};

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("complete", &self.is_complete())
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl Constraint {
    fn new(matcher: Matcher) -> Self {
        Constraint {
            matcher: Box::new(matcher),
            failure: None,
        }
    }

    /// The tokens that may come next. Never empty: a state that allows nothing is an error.
    pub fn allowed_tokens(&mut self) -> Result<TokenMask, ConstraintError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        let mask = match self.matcher.compute_mask_or_eos() {
            Ok(mask) if mask.is_zero() => Err(ConstraintError::new(
                "the output constraint allows no token here",
            )),
            Ok(bits) => Ok(TokenMask { bits }),
            Err(e) => Err(ConstraintError::new(format!(
                "the output constraint failed: {e}"
            ))),
        };
        mask.inspect_err(|e| self.failure = Some(e.clone()))
    }

    /// Commits the token the sequence generated; an end-of-sequence token is checked
    /// (allowed only where the grammar may end). A token the constraint did not allow is
    /// an error.
    pub fn commit(&mut self, token: u32) -> Result<(), ConstraintError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        let result = self.matcher.consume_token(token).map_err(|e| {
            ConstraintError::new(format!("the output constraint refused token {token}: {e}"))
        });
        result.inspect_err(|e| self.failure = Some(e.clone()))
    }

    /// Whether the output is complete: the grammar allows nothing but end of sequence.
    pub fn is_complete(&self) -> bool {
        self.failure.is_none() && !self.matcher.is_error() && self.matcher.is_stopped()
    }

    /// Why the constraint failed, once it has.
    pub fn failure(&self) -> Option<&ConstraintError> {
        self.failure.as_ref()
    }

    /// Marks the constraint failed (its mask was lost, e.g. with the thread computing it).
    pub(crate) fn fail(&mut self, error: ConstraintError) {
        self.failure.get_or_insert(error);
    }
}

/// The set of tokens allowed at one step: one bit per vocabulary id, least significant
/// bit first within each 32-bit word (llguidance's layout, which the engine unpacks on the
/// device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMask {
    bits: SimpleVob,
}

impl TokenMask {
    /// A mask over `vocab` tokens that allows exactly `allowed` (ids ≥ `vocab` ignored).
    pub fn from_allowed(vocab: usize, allowed: &[u32]) -> Self {
        let mut bits = SimpleVob::alloc(vocab);
        for &id in allowed.iter().filter(|&&id| (id as usize) < vocab) {
            bits.allow_token(id);
        }
        TokenMask { bits }
    }

    /// Whether token `id` is allowed.
    pub fn is_allowed(&self, id: u32) -> bool {
        (id as usize) < self.bits.len() && self.bits.is_allowed(id)
    }

    /// How many tokens are allowed.
    pub fn count(&self) -> usize {
        self.bits.num_set()
    }

    /// Tokens the mask covers (the tokenizer's vocabulary).
    pub fn vocab(&self) -> usize {
        self.bits.len()
    }

    /// The packed bits: token `i` is bit `i % 32` of word `i / 32`; bits past
    /// [`vocab`](Self::vocab) are clear.
    pub fn words(&self) -> &[u32] {
        self.bits.as_slice()
    }
}

/// Each batch row's mask, or why it has none.
pub(crate) type RowMasks = Vec<(usize, Result<TokenMask, ConstraintError>)>;

/// Runs `forward` (the model's forward pass) on this thread while the masks of
/// `constrained` (`(batch row, constraint)`) are computed on a scoped worker thread;
/// returns its result and each row's mask. Without constrained rows no thread is started.
///
/// A mask that is lost (the worker could not start or panicked) is an error for its row;
/// the caller marks that constraint failed.
pub(crate) fn masks_during<T>(
    constrained: Vec<(usize, &mut Constraint)>,
    forward: impl FnOnce() -> T,
) -> (T, RowMasks) {
    if constrained.is_empty() {
        return (forward(), Vec::new());
    }
    let rows: Vec<usize> = constrained.iter().map(|(row, _)| *row).collect();
    let lost = |why: &str| -> RowMasks {
        let error = ConstraintError::new(format!("the token mask was lost: {why}"));
        rows.iter().map(|&row| (row, Err(error.clone()))).collect()
    };
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("sworn-mask".into())
            .spawn_scoped(scope, move || {
                (constrained.into_iter())
                    .map(|(row, constraint)| (row, constraint.allowed_tokens()))
                    .collect::<Vec<_>>()
            });
        let output = forward();
        let masks = match worker {
            Ok(worker) => worker
                .join()
                .unwrap_or_else(|_| lost("the mask thread panicked")),
            Err(e) => lost(&format!("no mask thread: {e}")),
        };
        (output, masks)
    })
}
