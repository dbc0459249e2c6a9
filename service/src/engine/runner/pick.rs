//! Choosing each decode row's next token from the batch's logits, moving as little as
//! possible off the device.
//!
//! Greedy rows are reduced where the logits are (`max` over the vocabulary: its value and
//! first index cross to the host, 12 bytes a row). Sampled rows copy their whole `[vocab]`
//! row to the host for [`sampling::sample`], or, when the engine asks (on a GPU), are
//! drawn where the logits are ([`super::reduce`]) to the same token. On a GPU at batch 64
//! the full copy and host argmax were two thirds of a greedy step (BENCHMARKS.md, Engine).
//!
//! The device reduction keeps [`sampling::argmax`]'s contract: the first index of the
//! maximum, a row with a NaN refused (the maximum of such a row is NaN), a row of −∞
//! refused.
//!
//! A row that asks for log probabilities always copies its row to the host: they are
//! computed there from the same row and parameters the token was drawn with
//! ([`sampling::logprobs`]).
//!
//! Constrained rows are masked first, where the logits are ([`mask_rows`]): their packed
//! token masks (4 bytes per 32 tokens) cross to the device and are unpacked there, and
//! disallowed tokens become −∞ in place. So a greedy row picks the best allowed token and a
//! sampled row samples the allowed distribution; other rows are not touched.

use tch::{Kind, Tensor};

use super::error::EngineError;
use crate::engine::constraint::TokenMask;
use crate::engine::model::ModelError;
use crate::engine::sampling::{self, SamplingError, SamplingParams, TokenLogprobs};

/// One row's next token, and its log probabilities when the row asked for them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Picked {
    /// The token.
    pub(crate) token: u32,
    /// Its log probability and the most likely alternatives.
    pub(crate) logprobs: Option<TokenLogprobs>,
}

/// Picks the token of step `step` from a host row, with its log probabilities when
/// `params` asks for them.
pub(crate) fn pick_host(
    row: &[f32],
    params: &SamplingParams,
    step: u64,
) -> Result<Picked, SamplingError> {
    let token = sampling::sample(row, params, step)?;
    let logprobs = match params.logprobs() {
        Some(top) => Some(sampling::logprobs(row, params, token, usize::from(top))?),
        None => None,
    };
    Ok(Picked { token, logprobs })
}

/// Sets to −∞, in place, the logits (`[rows, vocab]`, any device) of the tokens each
/// `(row, mask)` does not allow. Tokens past the mask's vocabulary (a model whose logits
/// are wider than its tokenizer) are not allowed. Nothing happens without masks.
pub(crate) fn mask_rows(
    logits: &mut Tensor,
    masks: &[(usize, &TokenMask)],
) -> Result<(), EngineError> {
    if masks.is_empty() {
        return Ok(());
    }
    let torch = |e: tch::TchError| EngineError::from(ModelError::from(e));
    let (_, width) = logits.size2().map_err(torch)?;
    let words_per_row = usize::try_from(width).unwrap_or(0).div_ceil(32);
    let mut packed: Vec<i32> = Vec::with_capacity(masks.len() * words_per_row);
    for (_, mask) in masks {
        let words = mask.words();
        // The same bits as i32: an arithmetic shift still reads bit s as (w >> s) & 1.
        packed.extend((0..words_per_row).map(|i| words.get(i).map_or(0, |&w| w as i32)));
    }
    let device = logits.device();
    let rows: Vec<i64> = masks.iter().map(|(row, _)| *row as i64).collect();
    let allowed = (|| -> Result<Tensor, tch::TchError> {
        let packed = Tensor::f_from_slice(&packed)?
            .f_view([masks.len() as i64, words_per_row as i64, 1])?
            .f_to_device(device)?;
        let shifts = Tensor::f_arange(32, (Kind::Int, device))?;
        packed
            .f_bitwise_right_shift(&shifts)?
            .f_bitwise_and(1)?
            .f_view([masks.len() as i64, words_per_row as i64 * 32])?
            .f_narrow(1, 0, width)?
            .f_to_kind(Kind::Bool)
    })()
    .map_err(torch)?;
    (|| -> Result<(), tch::TchError> {
        let index = Tensor::f_from_slice(&rows)?.f_to_device(device)?;
        let masked = logits
            .f_index_select(0, &index)?
            .f_masked_fill(&allowed.f_logical_not()?, f64::NEG_INFINITY)?;
        // In place: the returned tensor is `logits` itself.
        let _ = logits.f_index_copy_(0, &index, &masked)?;
        Ok(())
    })()
    .map_err(torch)
}

/// The next token of every row of `logits` (`[rows, vocab]`, float32, any device):
/// `rows[i]` gives row i's sampling parameters and step, `None` for a row nobody reads.
/// With `reduce`, sampled rows that need no log probabilities are drawn where the logits
/// are ([`super::reduce`]; on the CPU not those cut by top-p alone); the tokens are the
/// same either way.
pub(crate) fn pick_tokens(
    logits: &Tensor,
    rows: &[Option<(&SamplingParams, u64)>],
    reduce: bool,
) -> Result<Vec<Option<Picked>>, EngineError> {
    let torch = |e: tch::TchError| EngineError::from(ModelError::from(e));
    let mut picked = vec![None; rows.len()];
    let (greedy, sampled): (Vec<usize>, Vec<usize>) = (0..rows.len())
        .filter(|&i| rows[i].is_some())
        .partition(|&i| {
            rows[i].is_some_and(|(params, _)| params.is_greedy() && params.logprobs().is_none())
        });

    if !greedy.is_empty() {
        let (values, indices) = select_rows(logits, &greedy, rows.len())
            .and_then(|r| r.f_max_dim(1, false))
            .map_err(torch)?;
        let values = Vec::<f32>::try_from(values).map_err(torch)?;
        let indices = Vec::<i64>::try_from(indices).map_err(torch)?;
        for ((&row, value), index) in greedy.iter().zip(values).zip(indices) {
            if value.is_nan() {
                return Err(SamplingError::BadLogits { reason: "NaN" }.into());
            }
            if value == f32::NEG_INFINITY {
                return Err(SamplingError::BadLogits {
                    reason: "no finite logit",
                }
                .into());
            }
            let token = u32::try_from(index).map_err(|_| SamplingError::BadLogits {
                reason: "index out of range",
            })?;
            picked[row] = Some(Picked {
                token,
                logprobs: None,
            });
        }
    }

    // A top-p cut alone sorts the whole row: on a GPU that is cheap, on the CPU several
    // times the host's partial ranking (BENCHMARKS.md, Engine).
    let vocab = logits.size().last().copied().unwrap_or(0);
    let sorts_well = logits.device().is_cuda();
    let (reduced, sampled): (Vec<usize>, Vec<usize>) = sampled.into_iter().partition(|&i| {
        reduce
            && rows[i].is_some_and(|(params, _)| {
                let top_k = i64::from(params.top_k());
                let top_p_alone = params.top_p() < 1.0 && (top_k == 0 || top_k >= vocab);
                params.logprobs().is_none() && (sorts_well || !top_p_alone)
            })
    });
    if !reduced.is_empty() {
        let params: Vec<(&SamplingParams, u64)> = reduced.iter().filter_map(|&i| rows[i]).collect();
        let which = select_rows(logits, &reduced, rows.len()).map_err(torch)?;
        let drawn = super::reduce::pick_sampled(&which, &params)?;
        for (&row, token) in reduced.iter().zip(drawn.tokens) {
            picked[row] = Some(Picked {
                token,
                logprobs: None,
            });
        }
    }

    if !sampled.is_empty() {
        let host = select_rows(logits, &sampled, rows.len())
            .and_then(|r| r.f_flatten(0, -1))
            .map_err(torch)?;
        let host = Vec::<f32>::try_from(host).map_err(torch)?;
        let vocab = host.len() / sampled.len();
        for (&row, values) in sampled.iter().zip(host.chunks_exact(vocab.max(1))) {
            if let Some((params, step)) = rows[row] {
                picked[row] = Some(pick_host(values, params, step)?);
            }
        }
    }
    Ok(picked)
}

/// Rows `which` of `logits`, without a copy when they are all of its `total` rows.
fn select_rows(logits: &Tensor, which: &[usize], total: usize) -> Result<Tensor, tch::TchError> {
    if which.len() == total {
        return Ok(logits.shallow_clone());
    }
    let index: Vec<i64> = which.iter().map(|&i| i as i64).collect();
    logits.f_index_select(
        0,
        &Tensor::f_from_slice(&index)?.f_to_device(logits.device())?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sampling::SamplingRequest;

    fn params(temperature: f64) -> SamplingParams {
        SamplingRequest {
            temperature: Some(temperature),
            seed: Some(5),
            ..Default::default()
        }
        .validate(64)
        .unwrap()
    }

    /// Picks drawing on the host and reduced where the logits are: both must agree.
    fn pick_both(
        logits: &Tensor,
        rows: &[Option<(&SamplingParams, u64)>],
    ) -> Result<Vec<Option<Picked>>, EngineError> {
        let host = pick_tokens(logits, rows, false);
        let reduced = pick_tokens(logits, rows, true);
        assert_eq!(format!("{host:?}"), format!("{reduced:?}"));
        host
    }

    fn tokens(picked: Vec<Option<Picked>>) -> Vec<Option<u32>> {
        picked.into_iter().map(|p| p.map(|p| p.token)).collect()
    }

    fn logits(rows: &[Vec<f32>]) -> Tensor {
        let width = rows[0].len() as i64;
        let flat: Vec<f32> = rows.concat();
        Tensor::from_slice(&flat).view([rows.len() as i64, width])
    }

    #[test]
    fn greedy_rows_match_the_host_argmax_and_sampled_rows_the_host_sampler() {
        let rows = vec![
            vec![0.5, 2.0, 2.0, -1.0, 0.0],
            vec![f32::NEG_INFINITY, -3.0, -2.5, f32::NEG_INFINITY, -2.5],
            vec![1.0, 0.0, 3.0, 2.0, 1.0],
            vec![f32::INFINITY, 1.0, f32::INFINITY, 0.0, 0.0],
        ];
        let (greedy, hot) = (params(0.0), params(1.0));
        let which = [
            Some((&greedy, 0)),
            Some((&hot, 3)),
            None,
            Some((&greedy, 1)),
        ];
        let picked = tokens(pick_both(&logits(&rows), &which).unwrap());
        assert_eq!(picked[0], Some(sampling::argmax(&rows[0]).unwrap()));
        assert_eq!(picked[0], Some(1), "first index of a tied maximum");
        assert_eq!(
            picked[1],
            Some(sampling::sample(&rows[1], &hot, 3).unwrap())
        );
        assert_eq!(picked[2], None);
        assert_eq!(picked[3], Some(0));
        // All rows greedy (no row selection) and all rows sampled take the same answers.
        let all_greedy = [Some((&greedy, 0)); 4];
        let picked = tokens(pick_both(&logits(&rows), &all_greedy).unwrap());
        for (row, pick) in rows.iter().zip(picked) {
            assert_eq!(pick, Some(sampling::argmax(row).unwrap()));
        }
        let all_hot = [Some((&hot, 9)); 3];
        let picked = tokens(pick_both(&logits(&rows[..3]), &all_hot).unwrap());
        for (row, pick) in rows.iter().zip(picked) {
            assert_eq!(pick, Some(sampling::sample(row, &hot, 9).unwrap()));
        }
    }

    #[test]
    fn masked_rows_pick_the_best_allowed_token_and_other_rows_are_untouched() {
        let rows = vec![
            vec![0.5, 9.0, 2.0, -1.0, 3.0],
            vec![0.5, 9.0, 2.0, -1.0, 3.0],
            vec![1.0, 0.0, 3.0, 2.0, 8.0],
        ];
        let mut masked = logits(&rows);
        // Row 0 may not take its best token 1; row 2 may take 0 and 3 only; the mask
        // covers 4 tokens, so token 4 (logits wider than the vocabulary) is refused too.
        let (first, last) = (
            TokenMask::from_allowed(5, &[0, 2, 3, 4]),
            TokenMask::from_allowed(4, &[0, 3]),
        );
        mask_rows(&mut masked, &[(0, &first), (2, &last)]).unwrap();
        let host: Vec<Vec<f32>> = (0..3)
            .map(|r| Vec::<f32>::try_from(masked.get(r)).unwrap())
            .collect();
        let inf = f32::NEG_INFINITY;
        assert_eq!(host[0], [0.5, inf, 2.0, -1.0, 3.0]);
        assert_eq!(host[1], rows[1], "an unmasked row is untouched");
        assert_eq!(host[2], [1.0, inf, inf, 2.0, inf]);
        let (greedy, hot) = (params(0.0), params(1.0));
        let picked = tokens(
            pick_both(
                &masked,
                &[Some((&greedy, 0)), Some((&greedy, 0)), Some((&greedy, 0))],
            )
            .unwrap(),
        );
        assert_eq!(picked, [Some(4), Some(1), Some(3)]);
        // Sampling draws from the allowed tokens only.
        for step in 0..200 {
            let picked = tokens(
                pick_both(&masked, &[Some((&hot, step)), None, Some((&hot, step))]).unwrap(),
            );
            assert!(first.is_allowed(picked[0].unwrap()), "{picked:?}");
            assert!(last.is_allowed(picked[2].unwrap()), "{picked:?}");
        }
        // No masks: nothing changes.
        let mut free = logits(&rows);
        mask_rows(&mut free, &[]).unwrap();
        assert!(free.equal(&logits(&rows)));
    }

    #[test]
    fn rows_asking_for_logprobs_get_them_from_the_masked_row_they_were_picked_from() {
        let rows = vec![
            vec![0.5, 9.0, 2.0, -1.0, 3.0],
            vec![1.0, 0.0, 3.0, 2.0, 8.0],
        ];
        let mut masked = logits(&rows);
        let mask = TokenMask::from_allowed(5, &[0, 2, 4]);
        mask_rows(&mut masked, &[(0, &mask)]).unwrap();
        let greedy = params(0.0).with_logprobs(Some(2));
        let hot = params(1.0).with_logprobs(Some(0));
        let picked = pick_both(&masked, &[Some((&greedy, 0)), Some((&hot, 4))]).unwrap();
        let first = picked[0].clone().unwrap();
        assert_eq!(first.token, 4, "best allowed token");
        let lp = first.logprobs.unwrap();
        // Softmax over the allowed tokens 0, 2 and 4 only.
        let z: f64 = [0.5f64, 2.0, 3.0].iter().map(|l| l.exp()).sum();
        assert!((f64::from(lp.logprob) - (3.0 - z.ln())).abs() < 1e-6);
        assert_eq!(lp.top.iter().map(|t| t.0).collect::<Vec<_>>(), [4, 2]);
        let second = picked[1].clone().unwrap();
        assert_eq!(second.token, sampling::sample(&rows[1], &hot, 4).unwrap());
        assert!(
            second.logprobs.unwrap().top.is_empty(),
            "0 alternatives asked"
        );
        // Without the option, nothing is computed.
        let plain = pick_both(&masked, &[Some((&params(0.0), 0))]).unwrap();
        assert_eq!(plain[0].clone().unwrap().logprobs, None);
    }

    #[test]
    fn greedy_rows_with_nan_or_no_finite_logit_are_refused_as_on_the_host() {
        let greedy = params(0.0);
        for (row, reason) in [
            (vec![0.0, f32::NAN, 1.0], "NaN"),
            (vec![f32::NAN, 5.0, 1.0], "NaN"),
            (vec![f32::NEG_INFINITY; 3], "no finite logit"),
        ] {
            assert_eq!(
                sampling::argmax(&row),
                Err(SamplingError::BadLogits { reason })
            );
            let err = pick_both(&logits(&[row]), &[Some((&greedy, 0))]).unwrap_err();
            assert!(
                matches!(err, EngineError::Sampling(SamplingError::BadLogits { reason: r }) if r == reason),
                "{err:?}"
            );
        }
    }
}
