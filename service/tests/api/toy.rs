//! A byte-level toy model for API tests that need many fast, predictable answers: prompt
//! bytes are its tokens; greedy decoding echoes the last message back (`echo: …`) and ends;
//! sampled decoding spells letters from a counter-based generator keyed by (seed, step), so
//! equal seeds give equal answers. It implements the same traits as the real engine adapter;
//! the tests that run the real model live in `model.rs`.

use sworn_service::scheduler::request::{FinishReason, GenerationRequest, PromptInput};
use sworn_service::scheduler::{Generator, GeneratorError, PromptEncoder, Token};

/// Id of the end-of-sequence token.
const EOS: u32 = 256;
/// Context length of the toy model.
pub const TOY_CONTEXT: usize = 512;

#[derive(Debug)]
pub struct ToyEncoder;

impl PromptEncoder for ToyEncoder {
    fn encode(&self, prompt: &PromptInput) -> Result<Vec<u32>, GeneratorError> {
        let text = match prompt {
            PromptInput::Text(text) => text.clone(),
            PromptInput::Chat(turns) | PromptInput::ChatWithTools(turns, _) => turns
                .iter()
                .map(|t| format!("{}: {}\n", t.role.as_str(), t.content))
                .collect(),
        };
        Ok(text.bytes().map(u32::from).collect())
    }

    fn decode(&self, tokens: &[u32]) -> Result<String, GeneratorError> {
        let bytes: Option<Vec<u8>> = tokens.iter().map(|&t| u8::try_from(t).ok()).collect();
        let bytes = bytes.ok_or_else(|| GeneratorError::Encode {
            reason: "token id out of range".into(),
        })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[derive(Debug)]
pub struct ToyGenerator {
    pub max_batch: usize,
}

#[derive(Debug)]
pub struct ToySequence {
    answer: Vec<u8>,
    at: usize,
    sampled: Option<u64>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl ToySequence {
    fn next(&mut self) -> Token {
        let step = self.at as u64;
        self.at += 1;
        if let Some(seed) = self.sampled {
            let letter = b'a' + (splitmix(seed ^ splitmix(step)) % 26) as u8;
            return Token {
                id: u32::from(letter),
                text: (letter as char).to_string(),
                logprobs: None,
                finish: None,
            };
        }
        match self.answer.get(self.at - 1) {
            Some(&b) => Token {
                id: u32::from(b),
                text: (b as char).to_string(),
                logprobs: None,
                finish: None,
            },
            None => Token {
                id: EOS,
                logprobs: None,
                text: String::new(),
                finish: Some(FinishReason::Stop),
            },
        }
    }
}

impl Generator for ToyGenerator {
    type Sequence = ToySequence;

    fn max_batch(&self) -> usize {
        self.max_batch
    }

    fn start(
        &mut self,
        request: &GenerationRequest,
    ) -> Result<(ToySequence, Token), GeneratorError> {
        let prompt: Vec<u8> = request.prompt_tokens.iter().map(|&t| t as u8).collect();
        let text = String::from_utf8_lossy(&prompt);
        // Echo the last line's content (after `role: `), ASCII only.
        let last = text.trim_end().rsplit('\n').next().unwrap_or("");
        let content = last.split_once(": ").map_or(last, |(_, c)| c);
        let answer = format!("echo: {content}")
            .bytes()
            .filter(u8::is_ascii)
            .collect();
        let mut sequence = ToySequence {
            answer,
            at: 0,
            sampled: (request.params.temperature() > 0.0).then_some(request.params.seed()),
        };
        let first = sequence.next();
        Ok((sequence, first))
    }

    /// Each choice as a request of its own, choice `i` drawing with seed + `i`.
    fn start_choices(
        &mut self,
        request: &GenerationRequest,
    ) -> Result<Vec<(ToySequence, Token)>, GeneratorError> {
        (0..request.choices.max(1))
            .map(|i| {
                let mut choice = request.clone();
                let seed = request.params.seed().wrapping_add(i as u64);
                choice.params = request.params.clone().with_seed(seed);
                self.start(&choice)
            })
            .collect()
    }

    fn step(&mut self, sequences: &mut [&mut ToySequence]) -> Result<Vec<Token>, GeneratorError> {
        Ok(sequences.iter_mut().map(|s| s.next()).collect())
    }

    fn release(&mut self, _sequence: ToySequence) {}
}
