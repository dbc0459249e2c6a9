//! Sampling tests: requests, determinism, distributions, and the fast paths held to
//! their plain definitions.

use super::*;

fn params(temperature: f64, top_p: f64, top_k: u32, seed: u64) -> SamplingParams {
    SamplingRequest {
        temperature: Some(temperature),
        top_p: Some(top_p),
        top_k: Some(u64::from(top_k)),
        seed: Some(seed),
        max_tokens: Some(16),
        stop: vec![],
    }
    .validate(64)
    .unwrap()
}

fn row(seed: u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u64 * 2654435761 + seed) % 1000) as f32 / 100.0)
        .collect()
}

#[test]
fn test_sampling_same_seed_same_tokens() {
    let logits = row(3, 500);
    let p = params(1.0, 0.95, 0, 42);
    let a: Vec<u32> = (0..64).map(|s| sample(&logits, &p, s).unwrap()).collect();
    let b: Vec<u32> = (0..64).map(|s| sample(&logits, &p, s).unwrap()).collect();
    assert_eq!(a, b);
    let other = params(1.0, 0.95, 0, 43);
    let c: Vec<u32> = (0..64)
        .map(|s| sample(&logits, &other, s).unwrap())
        .collect();
    assert_ne!(a, c, "a different seed should give a different stream");
    assert!(
        a.iter().collect::<std::collections::HashSet<_>>().len() > 1,
        "not sampling"
    );
}

#[test]
fn test_sampling_independent_of_batch_neighbours() {
    // A batch is a list of (logits, params); each row's choice at a step must equal
    // what that row gets alone, whatever neighbours and their order.
    let mine = (row(1, 300), params(0.8, 0.9, 50, 7));
    let neighbours: Vec<(Vec<f32>, SamplingParams)> = (0..5)
        .map(|i| (row(10 + i, 300), params(1.5, 1.0, 0, 100 + i)))
        .collect();
    for step in 0..32 {
        let alone = sample(&mine.0, &mine.1, step).unwrap();
        let mut batch = neighbours.clone();
        batch.insert((step % 6) as usize, mine.clone());
        let picks: Vec<u32> = batch
            .iter()
            .map(|(l, p)| sample(l, p, step).unwrap())
            .collect();
        assert_eq!(picks[(step % 6) as usize], alone);
    }
}

#[test]
fn test_sampling_temperature_zero_and_top_k_one_are_greedy() {
    let logits = row(5, 400);
    let best = argmax(&logits).unwrap();
    for step in 0..16 {
        assert_eq!(
            sample(&logits, &params(0.0, 1.0, 0, step), step).unwrap(),
            best
        );
        assert_eq!(
            sample(&logits, &params(2.0, 1.0, 1, step), step).unwrap(),
            best
        );
        assert_eq!(
            sample(&logits, &params(1.0, 1e-9, 0, step), step).unwrap(),
            best
        );
    }
}

#[test]
fn test_sampling_top_k_and_top_p_restrict_the_support() {
    // Probabilities ∝ 8, 4, 2, 1, 1: top_k=2 never leaves {0, 1}; top_p=0.5 keeps {0}
    // (8/16 reaches it); top_p=0.6 keeps {0, 1}.
    let logits: Vec<f32> = [8.0f32, 4.0, 2.0, 1.0, 1.0]
        .iter()
        .map(|w| w.ln())
        .collect();
    let draw = |p: &SamplingParams| -> std::collections::BTreeSet<u32> {
        (0..400).map(|s| sample(&logits, p, s).unwrap()).collect()
    };
    assert_eq!(draw(&params(1.0, 1.0, 2, 9)), [0, 1].into());
    assert_eq!(draw(&params(1.0, 0.5, 0, 9)), [0].into());
    assert_eq!(draw(&params(1.0, 0.6, 0, 9)), [0, 1].into());
    assert_eq!(draw(&params(1.0, 1.0, 0, 9)), [0, 1, 2, 3, 4].into());
}

#[test]
fn test_sampling_frequencies_follow_the_softmax() {
    // P(1) = 3/4 for logits [0, ln 3]; 4000 draws put the estimate within ±0.03
    // (over 4 standard deviations), and the seeds are fixed, so this cannot flake.
    let logits = [0.0f32, 3.0f32.ln()];
    let p = params(1.0, 1.0, 0, 2024);
    let ones = (0..4000)
        .filter(|&s| sample(&logits, &p, s).unwrap() == 1)
        .count();
    let freq = ones as f64 / 4000.0;
    assert!((freq - 0.75).abs() < 0.03, "P(1) estimated {freq}");
}

#[test]
fn test_sampling_frequencies_follow_the_kept_softmax_when_ranked() {
    // Weights 1, 2, 3, 4 (and a fifth cut by top-k); top-p 0.65 keeps the prefix
    // 4, 3 (mass 7 of 10 ≥ 6.5), so P(id 3) = 4/7 ≈ 0.571, P(id 2) = 3/7.
    let logits = [0.0f32, 2.0f32.ln(), 3.0f32.ln(), 4.0f32.ln(), -5.0];
    let p = params(1.0, 0.65, 4, 77);
    let draws: Vec<u32> = (0..4000).map(|s| sample(&logits, &p, s).unwrap()).collect();
    assert!(
        draws.iter().all(|&t| t == 2 || t == 3),
        "outside the kept prefix"
    );
    let freq = draws.iter().filter(|&&t| t == 3).count() as f64 / 4000.0;
    assert!((freq - 4.0 / 7.0).abs() < 0.03, "P(3) estimated {freq}");
}

#[test]
fn test_sampling_rejects_bad_logits_and_requests() {
    let p = params(1.0, 1.0, 0, 1);
    assert!(sample(&[0.0, f32::NAN], &p, 0).is_err());
    assert!(sample(&[f32::NEG_INFINITY; 3], &p, 0).is_err());
    assert_eq!(sample(&[f32::NEG_INFINITY, 0.0], &p, 0).unwrap(), 1);
    let bad = |r: SamplingRequest| r.validate(64).unwrap_err();
    assert_eq!(
        bad(SamplingRequest {
            temperature: Some(2.5),
            ..Default::default()
        }),
        SamplingError::Temperature { value: 2.5 }
    );
    assert!(matches!(
        bad(SamplingRequest {
            temperature: Some(f64::NAN),
            ..Default::default()
        }),
        SamplingError::Temperature { .. }
    ));
    assert_eq!(
        bad(SamplingRequest {
            top_p: Some(0.0),
            ..Default::default()
        }),
        SamplingError::TopP { value: 0.0 }
    );
    assert_eq!(
        bad(SamplingRequest {
            max_tokens: Some(65),
            ..Default::default()
        }),
        SamplingError::MaxTokens {
            value: 65,
            limit: 64
        }
    );
    assert_eq!(
        bad(SamplingRequest {
            stop: vec![String::new()],
            ..Default::default()
        }),
        SamplingError::StopLength { len: 0 }
    );
    assert_eq!(
        bad(SamplingRequest {
            stop: vec!["a".into(); 5],
            ..Default::default()
        }),
        SamplingError::StopCount { count: 5 }
    );
}

/// The candidates a request may draw, by the definition written out plainly: every
/// finite logit ranked by (weight, lower id) with a comparison sort, the first
/// `top_k`, then the shortest prefix whose mass reaches `top_p` of theirs.
fn support_by_definition(logits: &[f32], params: &SamplingParams) -> Vec<u32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let inv_t = 1.0 / params.temperature();
    let mut ranked: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .filter(|(_, l)| **l > f32::NEG_INFINITY)
        .map(|(i, &l)| (i as u32, ((f64::from(l) - f64::from(max)) * inv_t).exp()))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let k = params.top_k() as usize;
    if k > 0 {
        ranked.truncate(k);
    }
    if params.top_p() < 1.0 {
        let target = params.top_p() * ranked.iter().map(|(_, w)| w).sum::<f64>();
        let mut mass = 0.0;
        let keep = ranked
            .iter()
            .position(|(_, w)| {
                mass += w;
                mass >= target
            })
            .map_or(ranked.len(), |i| i + 1);
        ranked.truncate(keep);
    }
    ranked
        .into_iter()
        .filter(|(_, w)| *w > 0.0)
        .map(|(id, _)| id)
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// Every draw lies in the support the definition gives, over rows with ties
    /// (logits on a coarse grid), −∞ entries, every top-k / top-p / temperature
    /// shape, many seeds and steps; the same seed and step always draw the same token.
    #[test]
    fn test_sampling_draws_only_from_the_defined_support(
        grid in proptest::collection::vec(-40i32..40, 1..300),
        scale in proptest::sample::select(vec![1.0f32, 0.25, 0.01, 3.5]),
        masked in proptest::collection::vec(proptest::bool::weighted(0.1), 300),
        temperature in proptest::sample::select(vec![0.05, 0.3, 0.7, 1.0, 1.3, 2.0]),
        top_p in proptest::sample::select(vec![1.0, 0.9, 0.5, 0.05]),
        top_k in proptest::sample::select(vec![0u32, 2, 5, 40, 1000]),
        seed in proptest::prelude::any::<u64>(),
    ) {
        let mut logits: Vec<f32> = grid.iter().map(|&g| g as f32 * scale).collect();
        for (l, &m) in logits.iter_mut().zip(&masked) {
            if m {
                *l = f32::NEG_INFINITY;
            }
        }
        let p = params(temperature, top_p, top_k, seed);
        let support = support_by_definition(&logits, &p);
        for step in 0..8 {
            match sample(&logits, &p, step) {
                Ok(token) => {
                    proptest::prop_assert!(support.contains(&token), "{token} not in {support:?}");
                    proptest::prop_assert_eq!(sample(&logits, &p, step), Ok(token));
                }
                Err(e) => proptest::prop_assert!(support.is_empty(), "{e} with support {support:?}"),
            }
        }
    }

    /// The chunked argmax agrees with the one-pass definition: first index of the
    /// maximum, NaN anywhere refused, a row of −∞ refused.
    #[test]
    fn test_sampling_argmax_matches_the_scalar_definition(
        grid in proptest::collection::vec(-6i32..6, 1..200),
        special in proptest::collection::vec(0u8..200, 200),
    ) {
        let row: Vec<f32> = grid
            .iter()
            .zip(&special)
            .map(|(&g, &s)| match s {
                0 => f32::NAN,
                1 | 2 => f32::NEG_INFINITY,
                3 => f32::INFINITY,
                _ => g as f32 * 0.5,
            })
            .collect();
        let mut expected: Result<u32, SamplingError> =
            Err(SamplingError::BadLogits { reason: "no finite logit" });
        let mut best = f32::NEG_INFINITY;
        for (i, &l) in row.iter().enumerate() {
            if l.is_nan() {
                expected = Err(SamplingError::BadLogits { reason: "NaN" });
                break;
            }
            if l > best {
                best = l;
                expected = Ok(i as u32);
            }
        }
        proptest::prop_assert_eq!(argmax(&row), expected);
    }

    /// Ranking only as far as top-p needs gives the prefix a full sort gives.
    #[test]
    fn test_sampling_partial_ranking_equals_the_full_sort(
        scores in proptest::collection::vec(-60i32..=0, 1..2000),
        top_p in 0.01f64..1.0,
    ) {
        let mut keys: Vec<u128> = scores
            .iter()
            .enumerate()
            .map(|(i, &s)| rank_key(f64::from(s) * 0.5, i as u32))
            .collect();
        let total: f64 = keys.iter().map(|&k| key_score(k).exp()).sum();
        let mut full = keys.clone();
        full.sort_unstable();
        let expected = prefix_reaching(&full, top_p * total);
        let n = ranked_prefix(&mut keys, top_p * total);
        proptest::prop_assert_eq!(n, expected);
        proptest::prop_assert_eq!(&keys[..n], &full[..n]);
    }
}

#[test]
fn test_sampling_refuses_an_infinite_logit_but_greedy_takes_it() {
    let logits = [0.0, f32::INFINITY, 1.0];
    assert_eq!(
        sample(&logits, &params(1.0, 1.0, 0, 1), 0),
        Err(SamplingError::BadLogits {
            reason: "infinite logit"
        })
    );
    assert_eq!(sample(&logits, &params(0.0, 1.0, 0, 1), 0), Ok(1));
}

#[test]
fn the_applied_value_prints_as_the_recorded_decimal() {
    // Receipts print the applied f64; it must read exactly as the f32's shortest decimal.
    let mut checked = 0u32;
    let mut bits = 0u32;
    // Every 251st f32 in [0, 2], plus every multiple of 0.0001 there.
    while bits <= 2.0f32.to_bits() {
        let value = f32::from_bits(bits);
        assert_eq!(
            applied_value(value).to_string(),
            recorded_decimal(value),
            "{value:e}"
        );
        bits += 251;
        checked += 1;
    }
    for n in 0..=20_000u32 {
        let value = n as f32 / 10_000.0;
        assert_eq!(
            applied_value(value).to_string(),
            recorded_decimal(value),
            "{value:e}"
        );
    }
    assert!(checked > 4_000_000);
}

/// Draws `n` tokens at successive steps and returns each token's frequency.
fn frequencies(logits: &[f32], p: &SamplingParams, n: u64) -> std::collections::HashMap<u32, f64> {
    let mut counts = std::collections::HashMap::new();
    for step in 0..n {
        *counts
            .entry(sample(logits, p, step).unwrap())
            .or_insert(0.0) += 1.0 / n as f64;
    }
    counts
}

#[test]
fn logprobs_are_the_distribution_the_sampler_draws_from() {
    // Six tokens, one of them impossible (a masked token).
    let logits = [1.0, 0.2, f32::NEG_INFINITY, 2.0, -0.5, 1.5];
    for (p, support) in [
        (params(1.0, 1.0, 0, 7), 5),
        (params(0.7, 1.0, 3, 7), 3),
        (params(1.3, 0.6, 0, 7), 2),
    ] {
        let drawn = frequencies(&logits, &p, 20_000);
        for token in 0..logits.len() as u32 {
            let lp = logprobs(&logits, &p, token, 20).unwrap();
            assert!(lp.top.len() == support, "{lp:?}");
            let probability = f64::from(lp.logprob).exp();
            let seen = drawn.get(&token).copied().unwrap_or(0.0);
            assert!(
                (probability - seen).abs() < 0.015,
                "token {token}: P = {probability}, drawn {seen} ({p:?})"
            );
            let mass: f64 = lp.top.iter().map(|(_, l)| f64::from(*l).exp()).sum();
            assert!((mass - 1.0).abs() < 1e-5, "whole support listed: {mass}");
            assert!(
                lp.top.windows(2).all(|w| w[0].1 >= w[1].1),
                "most likely first"
            );
            assert!(lp.top.iter().all(|(_, l)| *l <= 0.0));
        }
    }
    // Fewer alternatives than the support: the most likely ones, mass below 1.
    let lp = logprobs(&logits, &params(1.0, 1.0, 0, 7), 1, 2).unwrap();
    assert_eq!(lp.top.iter().map(|t| t.0).collect::<Vec<_>>(), [3, 5]);
    assert!(lp.top.iter().map(|(_, l)| f64::from(*l).exp()).sum::<f64>() < 1.0);
}

#[test]
fn greedy_logprobs_are_the_models_softmax() {
    let logits = [1.0f32, 3.0, f32::NEG_INFINITY, 3.0, 0.0];
    let lp = logprobs(&logits, &params(0.0, 1.0, 0, 1), 1, 3).unwrap();
    let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
    let expect = |i: usize| (f64::from(logits[i]).exp() / z).ln() as f32;
    assert!((lp.logprob - expect(1)).abs() < 1e-6);
    // Tied tokens in id order, then the next.
    assert_eq!(lp.top.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 3, 0]);
    for (id, l) in &lp.top {
        assert!((l - expect(*id as usize)).abs() < 1e-6);
    }
    // A masked-out token has no probability at all.
    let masked = logprobs(&logits, &params(0.0, 1.0, 0, 1), 2, 0).unwrap();
    assert_eq!(masked.logprob, f32::NEG_INFINITY);
    assert!(masked.top.is_empty());
    assert!(logprobs(&[f32::NAN, 1.0], &params(0.0, 1.0, 0, 1), 1, 1).is_err());
}
