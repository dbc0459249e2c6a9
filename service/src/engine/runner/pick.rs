//! Choosing each decode row's next token from the batch's logits, moving as little as
//! possible off the device.
//!
//! Greedy rows are reduced where the logits are (`max` over the vocabulary: its value and
//! first index cross to the host, 12 bytes a row); only rows that sample copy their whole
//! `[vocab]` row to the host for [`sampling::sample`]. On a GPU at batch 64 the full
//! copy and host argmax were two thirds of a greedy step (BENCHMARKS.md, Engine).
//!
//! The device reduction keeps [`sampling::argmax`]'s contract: the first index of the
//! maximum, a row with a NaN refused (the maximum of such a row is NaN), a row of −∞
//! refused.

use tch::Tensor;

use super::error::EngineError;
use crate::engine::model::ModelError;
use crate::engine::sampling::{self, SamplingError, SamplingParams};

/// The next token of every row of `logits` (`[rows, vocab]`, float32, any device):
/// `rows[i]` gives row i's sampling parameters and step, `None` for a row nobody reads.
pub(crate) fn pick_tokens(
    logits: &Tensor,
    rows: &[Option<(&SamplingParams, u64)>],
) -> Result<Vec<Option<u32>>, EngineError> {
    let torch = |e: tch::TchError| EngineError::from(ModelError::from(e));
    let mut picked = vec![None; rows.len()];
    let (greedy, sampled): (Vec<usize>, Vec<usize>) = (0..rows.len())
        .filter(|&i| rows[i].is_some())
        .partition(|&i| rows[i].is_some_and(|(params, _)| params.is_greedy()));

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
            picked[row] = Some(u32::try_from(index).map_err(|_| SamplingError::BadLogits {
                reason: "index out of range",
            })?);
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
                picked[row] = Some(sampling::sample(values, params, step)?);
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
        let picked = pick_tokens(&logits(&rows), &which).unwrap();
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
        let picked = pick_tokens(&logits(&rows), &all_greedy).unwrap();
        for (row, pick) in rows.iter().zip(picked) {
            assert_eq!(pick, Some(sampling::argmax(row).unwrap()));
        }
        let all_hot = [Some((&hot, 9)); 3];
        let picked = pick_tokens(&logits(&rows[..3]), &all_hot).unwrap();
        for (row, pick) in rows.iter().zip(picked) {
            assert_eq!(pick, Some(sampling::sample(row, &hot, 9).unwrap()));
        }
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
            let err = pick_tokens(&logits(&[row]), &[Some((&greedy, 0))]).unwrap_err();
            assert!(
                matches!(err, EngineError::Sampling(SamplingError::BadLogits { reason: r }) if r == reason),
                "{err:?}"
            );
        }
    }
}
