//! Choosing the next token from a row of logits: greedy, or temperature / top-k / top-p
//! sampling with a counter-based random stream.
//!
//! The random number for step `s` of a request with seed `seed` comes from ChaCha20 keyed
//! by `seed` on stream `s` ([`step_uniform`]); it depends on nothing else. So a seeded
//! request draws the same numbers whatever shares its batch, however the engine
//! interleaves requests, and after a restart. Given identical logits it picks identical
//! tokens (the logits themselves may still differ in the last bits between batch shapes).
//!
//! Sampling runs on the host in f64 over the row copied out of libtorch (about 0.25 ms
//! per 49,152-token row at temperature 1; `cargo bench -p sworn-benches --bench
//! sampling`), deterministic and independent of libtorch's kernels. Greedy rows of a
//! decode step never come here: the engine reduces them on the device
//! (`runner::pick`), with [`argmax`]'s contract. On a GPU, sampled rows are drawn there
//! too (`runner::reduce`): the device hands over a few hundred numbers a row and
//! [`draw_top_k`], [`draw_top_p`] and [`BlockDraw`] finish the draw to the token
//! [`sample`] picks from the whole row, or say they cannot be sure of it.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// Highest temperature accepted (the OpenAI API's own bound).
pub const MAX_TEMPERATURE: f64 = 2.0;
/// Most stop strings per request (the OpenAI API's own bound).
pub const MAX_STOP_STRINGS: usize = 4;
/// Largest `top_k` accepted: beyond a few thousand it is indistinguishable from "off".
pub const MAX_TOP_K: u64 = 10_000;
/// Longest stop string accepted, in bytes: stop strings are held back while a match is
/// possible, so this also bounds how much text streaming may delay.
pub const MAX_STOP_BYTES: usize = 256;
/// Most alternatives reported per token (`top_logprobs`, the OpenAI API's own bound).
pub const MAX_TOP_LOGPROBS: u8 = 20;

/// The one rule for a request's sampling floats: a value is applied as the shortest
/// decimal of its `f32` rounding, and that decimal is what the receipt records. So the
/// recorded text is exactly the value applied, never a binary expansion of it.
pub fn recorded_decimal(value: f32) -> String {
    format!("{value}")
}

/// The value the engine applies for a request float: [`recorded_decimal`] read as `f64`.
pub fn applied_value(value: f32) -> f64 {
    recorded_decimal(value).parse().unwrap_or(f64::from(value))
}

/// Sampling options as a request states them (all optional, unvalidated).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingRequest {
    /// 0 means greedy. Default 1.
    pub temperature: Option<f64>,
    /// Nucleus mass in (0, 1]. Default 1 (off).
    pub top_p: Option<f64>,
    /// Keep only the k most likely tokens; 0 or absent means off.
    pub top_k: Option<u64>,
    /// Seed of the random stream; drawn from the OS when absent (and then reported).
    pub seed: Option<u64>,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Strings that end generation when they appear in the output (not included); the
    /// scheduler matches them, the engine never looks at them.
    pub stop: Vec<String>,
}

/// Why a request's sampling options were refused; messages name field, bound and value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// `temperature` outside `[0, MAX_TEMPERATURE]` or not a number.
    #[error("`temperature` must be between 0 and {MAX_TEMPERATURE}. Given: {value}")]
    Temperature {
        /// The value received.
        value: f64,
    },
    /// `top_p` outside `(0, 1]`.
    #[error("`top_p` must be > 0 and <= 1. Given: {value}")]
    TopP {
        /// The value received.
        value: f64,
    },
    /// `top_k` above [`MAX_TOP_K`].
    #[error("`top_k` must be >= 0 and <= {MAX_TOP_K} (0 disables it). Given: {value}")]
    TopK {
        /// The value received.
        value: u64,
    },
    /// `max_tokens` is zero or above the server's limit.
    #[error("`max_tokens` must be between 1 and {limit}. Given: {value}")]
    MaxTokens {
        /// The value received.
        value: u32,
        /// The server's limit.
        limit: u32,
    },
    /// Too many stop strings.
    #[error("`stop` may hold at most {MAX_STOP_STRINGS} strings. Given: {count}")]
    StopCount {
        /// How many were given.
        count: usize,
    },
    /// A stop string is empty or too long.
    #[error("each `stop` string must be 1 to {MAX_STOP_BYTES} bytes. Given: {len} bytes")]
    StopLength {
        /// The offending string's length.
        len: usize,
    },
    /// The logits row holds a NaN, or nothing is finite: the model output is unusable.
    #[error("logits are not usable for sampling: {reason}")]
    BadLogits {
        /// What was wrong.
        reason: &'static str,
    },
}

/// Validated sampling options; only this type reaches the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    temperature: f64,
    top_p: f64,
    top_k: u32,
    seed: u64,
    max_tokens: u32,
    stop: Vec<String>,
    /// Report each token's log probability and this many alternatives (`None`: off).
    logprobs: Option<u8>,
}

impl SamplingRequest {
    /// Applies defaults and bounds; `max_tokens_limit` is the server's cap (also the
    /// default). A missing seed is drawn from the OS so the applied value can be recorded.
    pub fn validate(&self, max_tokens_limit: u32) -> Result<SamplingParams, SamplingError> {
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=MAX_TEMPERATURE).contains(&temperature) {
            return Err(SamplingError::Temperature { value: temperature });
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(SamplingError::TopP { value: top_p });
        }
        let top_k = self.top_k.unwrap_or(0);
        if top_k > MAX_TOP_K {
            return Err(SamplingError::TopK { value: top_k });
        }
        let max_tokens = self.max_tokens.unwrap_or(max_tokens_limit);
        if max_tokens == 0 || max_tokens > max_tokens_limit {
            return Err(SamplingError::MaxTokens {
                value: max_tokens,
                limit: max_tokens_limit,
            });
        }
        if self.stop.len() > MAX_STOP_STRINGS {
            return Err(SamplingError::StopCount {
                count: self.stop.len(),
            });
        }
        if let Some(bad) = self
            .stop
            .iter()
            .find(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
        {
            return Err(SamplingError::StopLength { len: bad.len() });
        }
        let seed = self.seed.unwrap_or_else(|| rand_core::OsRng.next_u64());
        Ok(SamplingParams {
            temperature,
            top_p,
            top_k: u32::try_from(top_k).unwrap_or(u32::MAX),
            seed,
            max_tokens,
            stop: self.stop.clone(),
            logprobs: None,
        })
    }
}

impl SamplingParams {
    /// Greedy decoding for at most `max_tokens` tokens.
    pub fn greedy(max_tokens: u32) -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            max_tokens: max_tokens.max(1),
            stop: Vec::new(),
            logprobs: None,
        }
    }

    /// The same options with another seed (choice `i` of `n` draws with seed + `i`).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The same options, reporting each token's log probability and `top` alternatives
    /// (capped at [`MAX_TOP_LOGPROBS`]); `None` reports nothing.
    pub fn with_logprobs(mut self, top: Option<u8>) -> Self {
        self.logprobs = top.map(|t| t.min(MAX_TOP_LOGPROBS));
        self
    }

    /// How many alternatives each token reports with its log probability; `None`: no
    /// log probabilities.
    pub fn logprobs(&self) -> Option<u8> {
        self.logprobs
    }

    /// The same options with a completion budget of `max_tokens` (at least 1): the API
    /// learns how much room the context leaves only after tokenising the prompt.
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens.max(1);
        self
    }

    /// The temperature applied (0 = greedy).
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// The nucleus mass applied (1 = off).
    pub fn top_p(&self) -> f64 {
        self.top_p
    }

    /// The top-k applied (0 = off).
    pub fn top_k(&self) -> u32 {
        self.top_k
    }

    /// The seed of the random stream.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Most tokens generated.
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }

    /// Stop strings.
    pub fn stop(&self) -> &[String] {
        &self.stop
    }

    /// Whether sampling is plain argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0 || self.top_k == 1
    }
}

/// A uniform number in `[0, 1)` for step `step` of seed `seed`: ChaCha20 keyed by the
/// seed, stream number `step`, first 53 bits.
pub fn step_uniform(seed: u64, step: u64) -> f64 {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    rng.set_stream(step);
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The index of the largest logit (the first, on ties, as `torch.argmax`).
///
/// Two passes over 16-wide chunks that the compiler turns into vector code: the maximum
/// (and whether any NaN is present), then the first chunk and index holding it; several
/// times faster than one scalar pass on a 49,152-token row.
pub fn argmax(logits: &[f32]) -> Result<u32, SamplingError> {
    const LANES: usize = 16;
    let mut lane_max = [f32::NEG_INFINITY; LANES];
    let mut lane_nan = [false; LANES];
    let chunks = logits.chunks_exact(LANES);
    let tail = chunks.remainder();
    let mut fold = |values: &[f32]| {
        for ((m, nan), &l) in lane_max.iter_mut().zip(lane_nan.iter_mut()).zip(values) {
            *nan |= l.is_nan();
            *m = if l > *m { l } else { *m };
        }
    };
    for chunk in chunks {
        fold(chunk);
    }
    fold(tail);
    if lane_nan.iter().any(|&n| n) {
        return Err(SamplingError::BadLogits { reason: "NaN" });
    }
    let max = lane_max.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return Err(SamplingError::BadLogits {
            reason: "no finite logit",
        });
    }
    let chunk = logits
        .chunks(LANES)
        .position(|c| c.iter().fold(false, |hit, &l| hit | (l == max)))
        .unwrap_or(0);
    let within = logits[chunk * LANES..]
        .iter()
        .position(|&l| l == max)
        .unwrap_or(0);
    Ok((chunk * LANES + within) as u32)
}

/// Picks the token for step `step` (0 for the first generated token) from one row.
///
/// Weights are `exp((logit − max) / temperature)`. Without top-k or top-p the step's
/// uniform number walks the whole row in id order: no ranking, which at 49,152 tokens
/// costs several times the rest. With them, candidates are ranked by weight (ties by
/// lower id), top-k keeps the first k and top-p the shortest prefix whose mass reaches
/// `top_p` of the total, and the walk goes in rank order. The orders and sums here are
/// part of what a seed means: `sworn generate` replays a served answer only while they
/// stay as they are.
pub fn sample(logits: &[f32], params: &SamplingParams, step: u64) -> Result<u32, SamplingError> {
    let best = argmax(logits)?;
    if params.is_greedy() {
        return Ok(best);
    }
    let max = f64::from(logits[best as usize]);
    if max == f64::INFINITY {
        // Every other weight would be 0 and this one NaN: no distribution to draw from.
        return Err(SamplingError::BadLogits {
            reason: "infinite logit",
        });
    }
    let uniform = step_uniform(params.seed, step);
    let walked = match candidates(logits, params, max) {
        Candidates::All(weights) => {
            let total: f64 = weights.iter().sum();
            let in_id_order = weights.iter().enumerate().map(|(i, &w)| (i as u32, w));
            walk(in_id_order, uniform * total)
        }
        Candidates::Kept(kept) => walk_kept(&kept, uniform),
    };
    Ok(walked.unwrap_or(best))
}

/// The candidate of `kept` (rank keys in rank order) where `uniform` falls in their mass.
fn walk_kept(kept: &[u128], uniform: f64) -> Option<u32> {
    let total: f64 = kept.iter().map(|&key| key_weight(key)).sum();
    walk(
        kept.iter().map(|&key| (key_id(key), key_weight(key))),
        uniform * total,
    )
}

/// Of a row's `k` best candidates (rank keys, any order), those top-p keeps, in rank order.
fn keep_of_top_k(mut ranked: Vec<u128>, top_p: f64) -> Vec<u128> {
    ranked.sort_unstable();
    let total: f64 = ranked.iter().map(|&key| key_weight(key)).sum();
    let kept = prefix_reaching(&ranked, top_p * total);
    ranked.truncate(kept);
    ranked
}

/// A weight as [`sample`] computes it: `exp((logit − max) / temperature)`, 0 for −∞.
fn weight(logit: f32, max: f64, inv_t: f64) -> f64 {
    if logit > f32::NEG_INFINITY {
        ((f64::from(logit) - max) * inv_t).exp()
    } else {
        0.0
    }
}

/// The tokens a sampled row draws from, with their weights `exp((logit − max) / T)`.
enum Candidates {
    /// Every token, weights in id order (0 for a −∞ logit): no top-k or top-p cut.
    All(Vec<f64>),
    /// The tokens top-k / top-p keep, as rank keys in rank order.
    Kept(Vec<u128>),
}

/// What [`sample`] draws from for a non-greedy row whose largest logit is the finite `max`.
fn candidates(logits: &[f32], params: &SamplingParams, max: f64) -> Candidates {
    let inv_t = 1.0 / params.temperature;
    let score = |l: f32| (f64::from(l) - max) * inv_t;
    let k = params.top_k as usize;
    let finite = logits.iter().filter(|l| **l > f32::NEG_INFINITY).count();
    let top_k = k > 0 && k < finite;

    if !top_k && params.top_p >= 1.0 {
        let weights: Vec<f64> = logits.iter().map(|&l| weight(l, max, inv_t)).collect();
        return Candidates::All(weights);
    }

    // Ranked: each candidate as one integer whose ascending order is the ranking.
    let mut ranked: Vec<u128> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| **l > f32::NEG_INFINITY)
        .map(|(i, &l)| rank_key(score(l), i as u32))
        .collect();
    if top_k {
        ranked.select_nth_unstable(k - 1);
        ranked.truncate(k);
        return Candidates::Kept(keep_of_top_k(ranked, params.top_p));
    }
    let total: f64 = ranked.iter().map(|&key| key_weight(key)).sum();
    let kept = ranked_prefix(&mut ranked, params.top_p * total);
    ranked.truncate(kept);
    Candidates::Kept(ranked)
}

/// A generated token's log probability and the most likely alternatives at its step.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// ln P(token).
    pub logprob: f32,
    /// The most likely tokens at this step, most likely first (ties: lower id first), with
    /// their ln P; only tokens that could have been drawn (finite log probability).
    pub top: Vec<(u32, f32)>,
}

/// The log probability of `chosen` and of the `top` most likely tokens in the distribution
/// row `logits` was drawn from under `params`.
///
/// A sampled row's distribution is the one [`sample`] draws from: weights after the
/// temperature, renormalised over what top-k / top-p keep (a token they cut has
/// probability 0, so it is never listed). A greedy row's own distribution puts everything
/// on one token, which says nothing; it reports the model's distribution instead
/// (temperature 1, no cut), as OpenAI and vLLM do. Either way the logits are those the row
/// was picked from, after any constraint mask.
pub fn logprobs(
    logits: &[f32],
    params: &SamplingParams,
    chosen: u32,
    top: usize,
) -> Result<TokenLogprobs, SamplingError> {
    let best = argmax(logits)?;
    let max = f64::from(logits[best as usize]);
    if max == f64::INFINITY {
        return Err(SamplingError::BadLogits {
            reason: "infinite logit",
        });
    }
    let as_greedy;
    let params = if params.is_greedy() {
        as_greedy = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            ..params.clone()
        };
        &as_greedy
    } else {
        params
    };
    // (id, ln weight) for every candidate, then normalised by ln of the total weight.
    let (scored, ranked_already): (Vec<(u32, f64)>, bool) = match candidates(logits, params, max) {
        Candidates::All(_) => {
            let inv_t = 1.0 / params.temperature;
            let scored = (logits.iter().enumerate())
                .filter(|(_, l)| **l > f32::NEG_INFINITY)
                .map(|(i, &l)| (i as u32, (f64::from(l) - max) * inv_t))
                .collect();
            (scored, false)
        }
        Candidates::Kept(kept) => (
            kept.iter().map(|&k| (key_id(k), key_score(k))).collect(),
            true,
        ),
    };
    let total: f64 = scored.iter().map(|(_, s)| s.exp()).sum();
    let ln_total = total.ln();
    let logprob = scored
        .iter()
        .find(|(id, _)| *id == chosen)
        .map_or(f32::NEG_INFINITY, |(_, s)| (s - ln_total) as f32);
    let mut ranked: Vec<u128> = if ranked_already {
        scored
            .iter()
            .take(top)
            .map(|&(id, s)| rank_key(s, id))
            .collect()
    } else {
        let mut all: Vec<u128> = scored.iter().map(|&(id, s)| rank_key(s, id)).collect();
        if top < all.len() && top > 0 {
            all.select_nth_unstable(top - 1);
        }
        all.truncate(top);
        all
    };
    ranked.sort_unstable();
    let top = ranked
        .iter()
        .map(|&k| (key_id(k), (key_score(k) - ln_total) as f32))
        .collect();
    Ok(TokenLogprobs { logprob, top })
}

/// The candidate where `threshold` falls in the running sum of `weights`; when rounding
/// leaves a sliver past the end, the last candidate with weight. `None` if none has any.
fn walk(weights: impl Iterator<Item = (u32, f64)>, mut threshold: f64) -> Option<u32> {
    let mut last = None;
    for (id, w) in weights {
        if w > 0.0 {
            if threshold < w {
                return Some(id);
            }
            threshold -= w;
            last = Some(id);
        }
    }
    last
}

/// Length of the shortest prefix of the sorted `ranked` whose mass reaches `target` (at
/// least one candidate; all of them when none does).
fn prefix_reaching(ranked: &[u128], target: f64) -> usize {
    reaching(ranked, target).map_or(ranked.len().max(1), |(n, ..)| n)
}

/// The shortest prefix of the sorted `ranked` whose mass reaches `target`: its length,
/// and the masses without and with its last candidate. `None` if no prefix does.
fn reaching(ranked: &[u128], target: f64) -> Option<(usize, f64, f64)> {
    let mut mass = 0.0;
    for (i, &key) in ranked.iter().enumerate() {
        let before = mass;
        mass += key_score(key).exp();
        if mass >= target {
            return Some((i + 1, before, mass));
        }
    }
    None
}

/// Sorts only as much of `ranked` as the prefix reaching `target` needs (the top 64, then
/// 4× more each round) and returns that prefix's length; the prefix is in rank order.
fn ranked_prefix(ranked: &mut [u128], target: f64) -> usize {
    let mut m = 64;
    loop {
        if m >= ranked.len() {
            ranked.sort_unstable();
            return prefix_reaching(ranked, target);
        }
        ranked.select_nth_unstable(m - 1);
        ranked[..m].sort_unstable();
        let n = prefix_reaching(&ranked[..m], target);
        if n < m || key_score(ranked[m - 1]).exp() == 0.0 {
            return n;
        }
        m *= 4;
    }
}

/// Sort key of a candidate with finite `score ≤ 0`: `−score` as bits (`+ 0.0` turns a
/// zero score's `−0.0` into `+0.0`), then the id.
fn rank_key(score: f64, id: u32) -> u128 {
    (u128::from((-score + 0.0).to_bits()) << 32) | u128::from(id)
}

fn key_score(key: u128) -> f64 {
    -f64::from_bits((key >> 32) as u64)
}

fn key_weight(key: u128) -> f64 {
    key_score(key).exp()
}

fn key_id(key: u128) -> u32 {
    key as u32
}

mod partial;
pub(crate) use partial::{BlockDraw, Draw, draw_top_k, draw_top_p};

#[cfg(test)]
mod tests;
