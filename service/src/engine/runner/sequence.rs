//! One sequence being generated: its slot, sampling state, streamed text, its output
//! constraint if any, and the rules that end it (EOS, a complete or failed constraint,
//! `max_tokens`, a full slot). Stop strings are the scheduler's.

use super::pick::Picked;
use crate::engine::constraint::Constraint;
use crate::engine::sampling::{SamplingParams, TokenLogprobs};
use crate::engine::tokenizer::decoder::StreamDecoder;
use crate::engine::tokenizer::{Tokenizer, TokenizerError};

/// Identifies a sequence within one [`Engine`](super::Engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

/// Why a generation ended: the one vocabulary of the engine, the scheduler, the receipts
/// and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token or a complete constrained answer (the engine), or a stop
    /// string (the scheduler).
    Stop,
    /// `max_tokens` was reached, or the sequence filled its KV slot.
    Length,
    /// Cut short: the client went away, or shutdown's grace period ended.
    Cancelled,
    /// The engine failed mid-generation: set by the scheduler, and by a sequence whose
    /// output constraint failed (logged; its text so far is what the model generated).
    Error,
}

impl FinishReason {
    /// The name recorded in receipts (`finish_reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Error => "error",
        }
    }
}

/// What one step produced for one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqEvent {
    /// The sequence.
    pub id: SeqId,
    /// The token generated.
    pub token: u32,
    /// Its log probability and the most likely alternatives, when the sequence's sampling
    /// parameters ask for them.
    pub logprobs: Option<TokenLogprobs>,
    /// Text that became final with this token (may be empty: an unfinished character is
    /// held back until its last byte).
    pub text: String,
    /// Set when this token ended the sequence.
    pub finish: Option<FinishReason>,
}

/// A finished (or cancelled) sequence's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationOutput {
    /// Every generated token, including a final EOS token.
    pub tokens: Vec<u32>,
    /// The generated text, without special tokens.
    pub text: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (`tokens.len()`).
    pub completion_tokens: usize,
}

#[derive(Debug)]
pub(crate) struct Sequence {
    pub(crate) id: SeqId,
    pub(crate) slot: Option<usize>,
    pub(crate) params: SamplingParams,
    pub(crate) prompt_tokens: usize,
    pub(crate) tokens: Vec<u32>,
    pub(crate) text: String,
    pub(crate) finish: Option<FinishReason>,
    /// What the output must match; every token is picked from its mask and committed.
    pub(crate) constraint: Option<Constraint>,
    decoder: StreamDecoder,
}

impl Sequence {
    pub(crate) fn new(
        id: SeqId,
        slot: usize,
        params: SamplingParams,
        prompt_tokens: usize,
        constraint: Option<Constraint>,
        tokenizer: &Tokenizer,
    ) -> Self {
        Self {
            id,
            slot: Some(slot),
            params,
            prompt_tokens,
            tokens: Vec::new(),
            text: String::new(),
            finish: None,
            constraint,
            decoder: tokenizer.stream_decoder(true),
        }
    }

    /// The sampling step number of the next token (0 for the first).
    pub(crate) fn step(&self) -> u64 {
        self.tokens.len() as u64
    }

    /// Records `token`, streams its text and decides whether the sequence ends here.
    /// `slot_full` says the KV slot cannot take this token back in as input.
    pub(crate) fn accept(
        &mut self,
        picked: Picked,
        tokenizer: &Tokenizer,
        slot_full: bool,
    ) -> Result<SeqEvent, TokenizerError> {
        let Picked { token, logprobs } = picked;
        self.tokens.push(token);
        let mut text = String::new();
        let eos = tokenizer.eos_ids().contains(&token);
        if !eos {
            text = self.decoder.step(tokenizer, token)?;
        }
        let mut finish = match self.commit_to_constraint(token) {
            Some(reason) => Some(reason),
            None => eos.then_some(FinishReason::Stop),
        };
        if finish.is_none() && (self.tokens.len() >= self.params.max_tokens() as usize || slot_full)
        {
            finish = Some(FinishReason::Length);
        }
        if finish.is_some() {
            // The stream ends: an unfinished character is final (as U+FFFD).
            let decoder = std::mem::replace(&mut self.decoder, tokenizer.stream_decoder(true));
            text.push_str(&decoder.finish());
        }
        self.text.push_str(&text);
        self.finish = finish;
        Ok(SeqEvent {
            id: self.id,
            token,
            logprobs,
            text,
            finish,
        })
    }

    /// Commits `token` to the constraint: `Error` if it refuses it (or failed before),
    /// `Stop` once the answer is complete, `None` when it goes on or there is none.
    fn commit_to_constraint(&mut self, token: u32) -> Option<FinishReason> {
        let constraint = self.constraint.as_mut()?;
        match constraint.commit(token) {
            Ok(()) if constraint.is_complete() => Some(FinishReason::Stop),
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(sequence = self.id.0, %error, "constrained generation failed");
                Some(FinishReason::Error)
            }
        }
    }

    pub(crate) fn cancel(&mut self) {
        if self.finish.is_none() {
            self.finish = Some(FinishReason::Cancelled);
        }
    }

    pub(crate) fn output(&self) -> GenerationOutput {
        GenerationOutput {
            tokens: self.tokens.clone(),
            text: self.text.clone(),
            finish_reason: self.finish.unwrap_or(FinishReason::Cancelled),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.tokens.len(),
        }
    }
}
