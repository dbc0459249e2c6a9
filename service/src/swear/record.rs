//! What a receipt records about the request: the applied parameters and the prompt.
//!
//! Receipts hold no floats: a sampling float is recorded as the decimal text of the value
//! the engine applies, which by the one rule for request floats
//! ([`crate::engine::sampling::applied_value`]) is the shortest decimal of the `f32` the
//! client's number was read as; seeds as decimal text (they span all of u64); stop strings
//! as SHA-256 of their canonical JSON array (they may hold control characters and exceed
//! the body's field cap); a JSON `response_format` as its type and the SHA-256 of its
//! canonical JSON ([`crate::api::response_format`]).

use std::collections::BTreeMap;
use std::time::Instant;

use sha2::{Digest, Sha256};
use sworn_ledger::receipt::ParamValue;

use crate::engine::sampling::SamplingParams;
use crate::scheduler::request::ToolSyntax;

/// One request as its receipt will describe it, built by the API once the request is valid.
#[derive(Debug, Clone)]
pub struct SwornRequest {
    /// The server-minted request id.
    pub request_id: String,
    /// The tenant (API key id) who asked.
    pub tenant: String,
    /// `chat.completions` or `completions`.
    pub endpoint: &'static str,
    /// The canonical bytes the prompt commitment covers.
    pub prompt_canonical: Vec<u8>,
    /// Prompt tokens after templating.
    pub prompt_tokens: u32,
    /// Sampling, budget and stop strings, as applied.
    pub sampling: SamplingParams,
    /// Whether the client chose the seed.
    pub seed_given: bool,
    /// Whether the answer streams.
    pub stream: bool,
    /// The JSON `response_format` the answer was constrained to: its type and the SHA-256
    /// (hex) of its canonical JSON.
    pub response_format: Option<(&'static str, String)>,
    /// The tools offered (`tool_choice` as `none`, `auto`, `required` or `function`, the
    /// SHA-256 (hex) of the canonical applied tools, [`crate::api::tools`], and the syntax
    /// calls are written in), when any.
    pub tools: Option<(&'static str, String, ToolSyntax)>,
    /// Which choice of how many this is, for a request with `n` > 1.
    pub choice: Option<(usize, usize)>,
    /// When the HTTP request arrived.
    pub arrived: Instant,
}

impl SwornRequest {
    /// Choice `i` of `n` of this request: its own request id (`<id>.<i>`), its own seed
    /// (the request's plus `i`, as the engine draws it), and `n` and `choice` recorded.
    pub fn for_choice(&self, i: usize, n: usize) -> SwornRequest {
        let seed = self.sampling.seed().wrapping_add(i as u64);
        SwornRequest {
            request_id: format!("{}.{i}", self.request_id),
            sampling: self.sampling.clone().with_seed(seed),
            choice: Some((i, n)),
            ..self.clone()
        }
    }

    /// Whether the answer is the constrained JSON of offered tools, read into calls or
    /// content only once whole ([`super::Answer::from_tool_json`]).
    pub fn tools_offered(&self) -> bool {
        self.tools
            .as_ref()
            .is_some_and(|(choice, ..)| *choice != "none")
    }

    /// The id of the answer's `i`-th tool call: `call_`, the request id without its `req-`
    /// prefix, and `i`.
    pub fn call_id(&self, i: usize) -> String {
        let request = self.request_id.trim_start_matches("req-");
        format!("call_{request}_{i}")
    }

    /// The parameters recorded in the receipt, as applied.
    pub fn params(&self) -> BTreeMap<String, ParamValue> {
        let sampling = &self.sampling;
        let text = |s: String| ParamValue::Str(s);
        let mut params = BTreeMap::new();
        params.insert("endpoint".into(), text(self.endpoint.to_string()));
        params.insert(
            "max_tokens".into(),
            ParamValue::Int(i64::from(sampling.max_tokens())),
        );
        params.insert(
            "temperature".into(),
            text(sampling.temperature().to_string()),
        );
        params.insert("top_p".into(), text(sampling.top_p().to_string()));
        params.insert("top_k".into(), ParamValue::Int(i64::from(sampling.top_k())));
        params.insert("seed".into(), text(sampling.seed().to_string()));
        params.insert("seed_from_client".into(), ParamValue::Bool(self.seed_given));
        params.insert("stream".into(), ParamValue::Bool(self.stream));
        if !sampling.stop().is_empty() {
            let array = serde_json::Value::from(sampling.stop().to_vec());
            let canonical = sworn_ledger::jcs::canonicalize(&array).unwrap_or_default();
            params.insert(
                "stop_sha256".into(),
                text(hex::encode(Sha256::digest(canonical))),
            );
        }
        if let Some((i, n)) = self.choice {
            params.insert("n".into(), ParamValue::Int(n as i64));
            params.insert("choice".into(), ParamValue::Int(i as i64));
        }
        if let Some(top) = sampling.logprobs() {
            // Log probabilities were reported, with this many alternatives per token.
            params.insert("logprobs".into(), ParamValue::Int(i64::from(top)));
        }
        if let Some((choice, sha256, _)) = &self.tools {
            params.insert("tool_choice".into(), text((*choice).to_string()));
            params.insert("tools_sha256".into(), text(sha256.clone()));
        }
        if let Some((kind, sha256)) = &self.response_format {
            params.insert("response_format".into(), text((*kind).to_string()));
            params.insert("response_format_sha256".into(), text(sha256.clone()));
        }
        params
    }
}
