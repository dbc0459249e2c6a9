//! The scheduler's traits over the real engine ([`crate::engine::runner::Engine`]).
//!
//! The engine keeps its own sequences in KV slots; this adapter maps the scheduler's
//! sequences to engine ids and asks for one batched step over exactly the running ones
//! (`step_some`). Stop strings are the scheduler's job (the engine ignores them). The engine
//! gets the same `max_tokens`, so that on the last token it flushes its streaming decoder
//! (an incomplete UTF-8 sequence becomes U+FFFD, as in `sworn generate`) and reports
//! `Length` itself.
//!
//! Output constraints are compiled by the encoder, on the request's blocking task, with a
//! [`ConstraintCompiler`] built from the tokenizer on the first constrained request (a
//! server that never gets one never pays for it) and shared by every clone of the encoder.

use std::sync::{Arc, OnceLock};

use super::request::{GenerationRequest, PromptInput};
use super::{Generator, GeneratorError, PromptEncoder, Token};
use crate::engine::chat_template::{ChatMessage, ChatTemplate};
use crate::engine::constraint::{Constraint, ConstraintCompiler, ConstraintError, ConstraintSpec};
use crate::engine::runner::{Engine, EngineError, SeqEvent, SeqId};
use crate::engine::tokenizer::Tokenizer;

/// Templates and tokenises prompts with the model's own tokenizer and chat template, and
/// compiles output constraints for its vocabulary.
#[derive(Debug, Clone)]
pub struct EnginePromptEncoder {
    tokenizer: Arc<Tokenizer>,
    template: Option<Arc<ChatTemplate>>,
    /// Built on first use; a vocabulary that cannot be constrained keeps its error.
    constraints: Arc<OnceLock<Result<ConstraintCompiler, ConstraintError>>>,
}

impl EnginePromptEncoder {
    /// Shares the engine's tokenizer and template.
    pub fn new(engine: &Engine) -> Self {
        let (tokenizer, template) = engine.text_handles();
        EnginePromptEncoder {
            tokenizer,
            template,
            constraints: Arc::new(OnceLock::new()),
        }
    }

    /// The model's constraint compiler, built on first use.
    pub fn constraint_compiler(&self) -> Result<&ConstraintCompiler, ConstraintError> {
        self.constraints
            .get_or_init(|| ConstraintCompiler::new(Arc::clone(&self.tokenizer)))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl PromptEncoder for EnginePromptEncoder {
    fn constrain(&self, spec: &ConstraintSpec) -> Result<Constraint, ConstraintError> {
        self.constraint_compiler()?.compile(spec)
    }

    fn decode(&self, tokens: &[u32]) -> Result<String, GeneratorError> {
        self.tokenizer
            .decode(tokens, false)
            .map_err(|e| GeneratorError::Encode {
                reason: e.to_string(),
            })
    }

    fn encode(&self, prompt: &PromptInput) -> Result<Vec<u32>, GeneratorError> {
        let encode_err = |e: &dyn std::fmt::Display| GeneratorError::Encode {
            reason: e.to_string(),
        };
        match prompt {
            PromptInput::Text(text) => self
                .tokenizer
                .encode(text, true)
                .map_err(|e| encode_err(&e)),
            PromptInput::Chat(turns) => {
                let template = self
                    .template
                    .as_ref()
                    .ok_or_else(|| GeneratorError::Encode {
                        reason: "this model has no chat template; use /v1/completions".to_string(),
                    })?;
                let messages: Vec<ChatMessage> = turns
                    .iter()
                    .map(|t| ChatMessage::new(t.role.as_str(), t.content.clone()))
                    .collect();
                let text = template
                    .render(&messages, true)
                    .map_err(|e| encode_err(&e))?;
                // The template writes any BOS itself.
                self.tokenizer
                    .encode(&text, false)
                    .map_err(|e| encode_err(&e))
            }
        }
    }
}

/// The engine as a [`Generator`].
#[derive(Debug)]
pub struct EngineGenerator {
    engine: Engine,
}

/// A sequence living in one of the engine's KV slots.
#[derive(Debug)]
pub struct EngineSequence {
    id: SeqId,
}

impl EngineGenerator {
    /// Wraps a loaded engine.
    pub fn new(engine: Engine) -> Self {
        EngineGenerator { engine }
    }
}

fn model_error(e: &EngineError) -> GeneratorError {
    GeneratorError::Model {
        reason: e.to_string(),
    }
}

fn token(event: SeqEvent) -> Token {
    Token {
        id: event.token,
        text: event.text,
        finish: event.finish,
    }
}

impl Generator for EngineGenerator {
    type Sequence = EngineSequence;

    fn max_batch(&self) -> usize {
        self.engine.info().slots
    }

    fn start(
        &mut self,
        request: &GenerationRequest,
    ) -> Result<(EngineSequence, Token), GeneratorError> {
        let event = self
            .engine
            .add_constrained(
                &request.prompt_tokens,
                request.params.clone(),
                request.constraint.clone(),
            )
            .map_err(|e| model_error(&e))?;
        Ok((EngineSequence { id: event.id }, token(event)))
    }

    fn step(
        &mut self,
        sequences: &mut [&mut EngineSequence],
    ) -> Result<Vec<Token>, GeneratorError> {
        let ids: Vec<SeqId> = sequences.iter().map(|s| s.id).collect();
        let mut events = self.engine.step_some(&ids).map_err(|e| model_error(&e))?;
        let skipped = |id| GeneratorError::Model {
            reason: format!("the engine skipped sequence {id:?} in a step"),
        };
        (ids.iter())
            .map(|&id| {
                let at = events.iter().position(|e| e.id == id);
                let at = at.ok_or_else(|| skipped(id))?;
                Ok(token(events.swap_remove(at)))
            })
            .collect()
    }

    fn release(&mut self, sequence: EngineSequence) {
        if let Err(err) = self.engine.remove(sequence.id) {
            tracing::error!(error = %err, "could not release an engine sequence");
        }
    }
}
