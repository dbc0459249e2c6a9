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

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::request::{
    ChatTurn, GenerationRequest, PromptInput, TokenLogprob, ToolOffer, ToolSyntax, TurnRole,
};
use super::{Generator, GeneratorError, PromptEncoder, Started, Token};
use crate::engine::chat_template::{ChatMessage, ChatTemplate};
use crate::engine::constraint::{Constraint, ConstraintCompiler, ConstraintError, ConstraintSpec};
use crate::engine::runner::{Engine, EngineError, PendingPrefill, Prefilled, SeqEvent, SeqId};
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

impl EnginePromptEncoder {
    /// The prompt text of a conversation (with `offer`ed tools): in the template's own
    /// tool syntax when it has one, else with tool turns and the offer written the generic
    /// way ([`generic_turns`]).
    fn render_chat(
        &self,
        template: &ChatTemplate,
        turns: &[ChatTurn],
        offer: Option<&ToolOffer>,
    ) -> Result<String, crate::engine::chat_template::ChatTemplateError> {
        let uses_tools = offer.is_some() || turns.iter().any(|t| t.role == TurnRole::Tool);
        if template.tool_syntax() != ToolSyntax::Generic && uses_tools {
            let messages: Vec<serde_json::Value> = turns.iter().map(native_message).collect();
            return template.render_with_tools(&messages, offer.map(|o| &o.tools), true);
        }
        let messages: Vec<ChatMessage> = generic_turns(turns, offer)
            .into_iter()
            .map(|t| ChatMessage::new(t.role.as_str(), t.content))
            .collect();
        template.render(&messages, true)
    }
}

/// Groups of request indices whose prompts are prefilled together: sorted by length, a
/// group grows while padding every prompt to its longest costs at most a quarter more
/// positions than the prompts hold, and at most `cap` positions.
pub(crate) fn prefill_groups(
    indices: &[usize],
    len: impl Fn(usize) -> usize,
    cap: usize,
) -> Vec<Vec<usize>> {
    let mut sorted = indices.to_vec();
    sorted.sort_by_key(|&i| len(i));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut real = 0;
    for i in sorted {
        let fits = groups.last().is_some_and(|group| {
            let padded = len(i) * (group.len() + 1);
            4 * padded <= 5 * (real + len(i)) && padded <= cap
        });
        if fits {
            real += len(i);
            if let Some(group) = groups.last_mut() {
                group.push(i);
            }
        } else {
            real = len(i);
            groups.push(vec![i]);
        }
    }
    groups
}

/// Most positions (prompts × the longest) one batched prefill runs on a GPU, unless
/// configured (`--prefill-batch-tokens`). On the CPU prompts are prefilled one by one: its
/// prefill is compute-bound, so batching gains nothing and every prompt of a batch waits
/// for the whole batch's first tokens (BENCHMARKS.md, "Batched prefill").
pub const DEFAULT_GPU_PREFILL_BATCH_TOKENS: usize = 4096;

/// Positions of a long prompt prefilled per turn, unless configured
/// (`--prefill-chunk-tokens`): what one turn may add to the running sequences' next token
/// (BENCHMARKS.md, "Chunked prefill").
pub const DEFAULT_PREFILL_CHUNK_TOKENS: usize = 512;

/// A turn as templates with tool syntax read it: `tool_calls` with each function's
/// arguments as an object, and a tool result's `tool_call_id`.
fn native_message(turn: &ChatTurn) -> serde_json::Value {
    let mut message = serde_json::json!({"role": turn.role.as_str(), "content": turn.content});
    if !turn.tool_calls.is_empty() {
        message["tool_calls"] = turn
            .tool_calls
            .iter()
            .map(|c| {
                serde_json::json!({"id": c.id, "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect();
    }
    if let Some(id) = &turn.tool_call_id {
        message["tool_call_id"] = serde_json::Value::String(id.clone());
    }
    message
}

/// The conversation for a template without tool syntax (llama.cpp's generic form): the
/// offer's text after the first system turn's (or as a system turn of its own before
/// everything), an answer that called tools as the JSON `{"tool_calls": [{"name",
/// "arguments"}]}` the model is asked to write, and a tool result as a user turn holding
/// `{"tool_response": {"tool_call_id", "content"}}`.
pub(crate) fn generic_turns(turns: &[ChatTurn], offer: Option<&ToolOffer>) -> Vec<ChatTurn> {
    let mut out: Vec<ChatTurn> = turns
        .iter()
        .map(|turn| match turn.role {
            TurnRole::Tool => {
                let response = serde_json::json!({"tool_response": {
                    "tool_call_id": turn.tool_call_id,
                    "content": turn.content,
                }});
                ChatTurn::text(TurnRole::User, response.to_string())
            }
            _ if !turn.tool_calls.is_empty() => {
                let calls: Vec<serde_json::Value> = (turn.tool_calls.iter())
                    .map(|c| serde_json::json!({"name": c.name, "arguments": c.arguments}))
                    .collect();
                let written = serde_json::json!({ "tool_calls": calls }).to_string();
                ChatTurn::text(turn.role, written)
            }
            _ => ChatTurn::text(turn.role, turn.content.clone()),
        })
        .collect();
    if let Some(offer) = offer {
        match out.first_mut() {
            Some(first) if first.role == TurnRole::System => {
                first.content = format!("{}\n\n{}", first.content, offer.instructions);
            }
            _ => out.insert(0, ChatTurn::text(TurnRole::System, &offer.instructions)),
        }
    }
    out
}

impl PromptEncoder for EnginePromptEncoder {
    fn tool_syntax(&self) -> ToolSyntax {
        self.template
            .as_ref()
            .map_or(ToolSyntax::Generic, |t| t.tool_syntax())
    }

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
            PromptInput::Chat(_) | PromptInput::ChatWithTools(..) => {
                let template = self
                    .template
                    .as_ref()
                    .ok_or_else(|| GeneratorError::Encode {
                        reason: "this model has no chat template; use /v1/completions".to_string(),
                    })?;
                let (turns, offer) = match prompt {
                    PromptInput::ChatWithTools(turns, offer) => (turns, Some(offer)),
                    PromptInput::Chat(turns) => (turns, None),
                    PromptInput::Text(_) => unreachable!("matched above"),
                };
                let text = self
                    .render_chat(template, turns, offer)
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
    /// Cap of one batched prefill in padded positions (0: none).
    prefill_batch_tokens: usize,
    /// Positions of a long prompt prefilled per turn (0: whole prompts).
    prefill_chunk_tokens: usize,
    /// Long prompts partly prefilled, by the scheduler's key.
    pending: HashMap<u64, PendingPrefill>,
}

/// A sequence living in one of the engine's KV slots.
#[derive(Debug)]
pub struct EngineSequence {
    id: SeqId,
}

impl EngineGenerator {
    /// Wraps a loaded engine.
    pub fn new(engine: Engine) -> Self {
        let on_gpu = engine.info().device.starts_with("cuda");
        EngineGenerator {
            engine,
            prefill_batch_tokens: if on_gpu {
                DEFAULT_GPU_PREFILL_BATCH_TOKENS
            } else {
                0
            },
            prefill_chunk_tokens: DEFAULT_PREFILL_CHUNK_TOKENS,
            pending: HashMap::new(),
        }
    }

    /// Prefills prompts longer than `tokens` that many positions per turn, between
    /// decode steps; 0 prefills every prompt whole at admission.
    #[must_use]
    pub fn with_prefill_chunk_tokens(mut self, tokens: usize) -> Self {
        self.prefill_chunk_tokens = tokens;
        self
    }

    /// Caps one batched prefill at `tokens` padded positions; 0 prefills each prompt
    /// alone.
    #[must_use]
    pub fn with_prefill_batch_tokens(mut self, tokens: usize) -> Self {
        self.prefill_batch_tokens = tokens;
        self
    }
}

fn model_error(e: &EngineError) -> GeneratorError {
    GeneratorError::Model {
        reason: e.to_string(),
    }
}

/// The engine's event as the scheduler's token, log probabilities spelled as bytes.
fn token(event: SeqEvent, tokenizer: &Tokenizer) -> Token {
    let bytes = |id: u32| {
        tokenizer
            .token_bytes(id)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    };
    Token {
        id: event.token,
        logprobs: event.logprobs.map(|lp| TokenLogprob {
            bytes: bytes(event.token),
            logprob: lp.logprob,
            top: lp.top.into_iter().map(|(id, l)| (bytes(id), l)).collect(),
        }),
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
        Ok((
            EngineSequence { id: event.id },
            token(event, self.engine.tokenizer()),
        ))
    }

    /// Single-choice requests are prefilled together, in groups of prompts of similar
    /// length ([`prefill_groups`]); a group whose batched prefill fails is started one by
    /// one, so one bad request does not fail its neighbours.
    fn start_batch(&mut self, requests: &[&GenerationRequest]) -> Vec<Started<EngineSequence>> {
        let mut results: Vec<Option<Started<EngineSequence>>> =
            requests.iter().map(|_| None).collect();
        let singles: Vec<usize> = (0..requests.len())
            .filter(|&i| requests[i].choices <= 1)
            .collect();
        let cap = self.prefill_batch_tokens;
        for group in prefill_groups(&singles, |i| requests[i].prompt_tokens.len(), cap) {
            if group.len() < 2 {
                continue;
            }
            let jobs = group
                .iter()
                .map(|&i| {
                    let r = requests[i];
                    (
                        r.prompt_tokens.as_slice(),
                        r.params.clone(),
                        r.constraint.clone(),
                    )
                })
                .collect();
            match self.engine.add_batch(jobs) {
                Ok(events) => {
                    let tokenizer = self.engine.tokenizer();
                    for (&i, event) in group.iter().zip(events) {
                        let started = (EngineSequence { id: event.id }, token(event, tokenizer));
                        results[i] = Some(Ok(vec![started]));
                    }
                }
                Err(err) => tracing::warn!(error = %err, "batched prefill failed; one by one"),
            }
        }
        (requests.iter().zip(results))
            .map(|(r, done)| done.unwrap_or_else(|| self.start_choices(r)))
            .collect()
    }

    fn start_choices(
        &mut self,
        request: &GenerationRequest,
    ) -> Result<Vec<(EngineSequence, Token)>, GeneratorError> {
        if request.choices <= 1 {
            return Ok(vec![self.start(request)?]);
        }
        let params: Vec<_> = (0..request.choices)
            .map(|i| {
                let seed = request.params.seed().wrapping_add(i as u64);
                request.params.clone().with_seed(seed)
            })
            .collect();
        let events = self
            .engine
            .add_choices(&request.prompt_tokens, &params, request.constraint.clone())
            .map_err(|e| model_error(&e))?;
        let tokenizer = self.engine.tokenizer();
        Ok(events
            .into_iter()
            .map(|event| (EngineSequence { id: event.id }, token(event, tokenizer)))
            .collect())
    }

    fn prefill_chunk(&self) -> Option<usize> {
        Some(self.prefill_chunk_tokens).filter(|&c| c > 0)
    }

    fn prefill_some(
        &mut self,
        key: u64,
        request: &GenerationRequest,
        budget: usize,
    ) -> Result<Option<(EngineSequence, Token)>, GeneratorError> {
        let pending = match self.pending.remove(&key) {
            Some(pending) => pending,
            None => (self.engine)
                .begin_prefill(
                    &request.prompt_tokens,
                    request.params.clone(),
                    request.constraint.clone(),
                )
                .map_err(|e| model_error(&e))?,
        };
        match self.engine.continue_prefill(pending, budget) {
            Ok(Prefilled::More(pending)) => {
                self.pending.insert(key, pending);
                Ok(None)
            }
            Ok(Prefilled::Started(event)) => {
                let tokenizer = self.engine.tokenizer();
                Ok(Some((
                    EngineSequence { id: event.id },
                    token(event, tokenizer),
                )))
            }
            Err(e) => Err(model_error(&e)),
        }
    }

    fn abandon_prefill(&mut self, key: u64) {
        if let Some(pending) = self.pending.remove(&key) {
            self.engine.abandon_prefill(pending);
        }
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
                Ok(token(events.swap_remove(at), self.engine.tokenizer()))
            })
            .collect()
    }

    fn release(&mut self, sequence: EngineSequence) {
        if let Err(err) = self.engine.remove(sequence.id) {
            tracing::error!(error = %err, "could not release an engine sequence");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::request::TurnCall;

    #[test]
    fn prefill_groups_bound_padding_and_size() {
        let lens = [100, 7, 98, 9, 8, 300, 95];
        let len = |i: usize| lens[i];
        let all: Vec<usize> = (0..lens.len()).collect();
        // Short with short, long with long; 300 alone (padding the others to it would
        // cost far more than a quarter).
        assert_eq!(
            prefill_groups(&all, len, 4096),
            vec![vec![1, 4, 3], vec![6, 2, 0], vec![5]]
        );
        // Every group padded costs at most 5/4 of its real positions.
        for group in prefill_groups(&all, len, 4096) {
            let longest = group.iter().map(|&i| len(i)).max().unwrap();
            let real: usize = group.iter().map(|&i| len(i)).sum();
            assert!(4 * longest * group.len() <= 5 * real, "{group:?}");
        }
        // The cap bounds the padded positions; 0 leaves every prompt alone.
        assert_eq!(
            prefill_groups(&all, len, 200),
            vec![vec![1, 4, 3], vec![6, 2], vec![0], vec![5]]
        );
        assert!(prefill_groups(&all, len, 0).iter().all(|g| g.len() == 1));
    }

    #[test]
    fn generic_turns_write_calls_results_and_the_offer() {
        let turns = vec![
            ChatTurn::text(TurnRole::System, "Be brief."),
            ChatTurn::text(TurnRole::User, "Position of A-1?"),
            ChatTurn {
                tool_calls: vec![TurnCall {
                    id: "c1".into(),
                    name: "get_position".into(),
                    arguments: serde_json::json!({"account": "A-1"}),
                }],
                ..ChatTurn::text(TurnRole::Assistant, "")
            },
            ChatTurn {
                tool_call_id: Some("c1".into()),
                ..ChatTurn::text(TurnRole::Tool, "120 shares")
            },
        ];
        let offer = ToolOffer {
            tools: serde_json::json!([]),
            instructions: "You can call these tools: …".into(),
        };
        let written = generic_turns(&turns, Some(&offer));
        assert_eq!(written.len(), 4);
        assert_eq!(
            written[0].content,
            "Be brief.\n\nYou can call these tools: …"
        );
        let call: serde_json::Value = serde_json::from_str(&written[2].content).unwrap();
        assert_eq!(
            call,
            serde_json::json!({"tool_calls": [{"name": "get_position", "arguments": {"account": "A-1"}}]})
        );
        assert_eq!(written[3].role, TurnRole::User);
        let result: serde_json::Value = serde_json::from_str(&written[3].content).unwrap();
        assert_eq!(
            result,
            serde_json::json!({"tool_response": {"tool_call_id": "c1", "content": "120 shares"}})
        );
        // Without a system turn the offer becomes one, first.
        let written = generic_turns(&turns[1..2], Some(&offer));
        assert_eq!(
            (written[0].role, written[0].content.as_str()),
            (TurnRole::System, "You can call these tools: …")
        );
    }
}
