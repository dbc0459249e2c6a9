//! Sampled rows of a decode step drawn where their logits are: only a few hundred numbers
//! a row cross to the host instead of the whole `[vocab]` row, and the token is still
//! exactly the one [`sampling::sample`] picks from the whole row.
//!
//! - **Top-k** (k below the row's count of finite logits): the device ranks the k best
//!   (and one more, to see a tie at the k-th place); the draw over them is exact
//!   ([`sampling::draw_top_k`]).
//! - **Top-p alone**: the device sorts the row, sums its weights and finds its cut; the
//!   ranked entries up to just past the cut cross, and the host cuts and draws again from
//!   them ([`sampling::draw_top_p`]).
//! - **Neither**: the device sums the weights of each block of [`BLOCK`] consecutive ids;
//!   the sums cross, the host finds the block where the draw falls, and that block's
//!   logits cross to finish the draw ([`BlockDraw`]).
//!
//! Weights are `exp((logit − max) / temperature)` in float64 on both sides. Where sums
//! made on the device could lead to another token than the host's own sums (a tie at the
//! top-k cut; a draw within a rounding margin of a border), the row is copied whole and
//! drawn on the host: so the choice never depends on where it was computed.

use tch::{Kind, Tensor};

use super::error::EngineError;
use crate::engine::model::ModelError;
use crate::engine::sampling::{self, BlockDraw, Draw, SamplingError, SamplingParams};

/// Consecutive ids per weight sum: a 49,152-token row crosses as 96 sums and one block
/// of 512 logits.
pub(crate) const BLOCK: i64 = 512;
/// Ranked entries fetched past the device's top-p cut, for the host's own cut.
const TOP_P_SLACK: i64 = 16;

/// Tokens drawn for each row, and how many rows had to be copied whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reduced {
    pub(crate) tokens: Vec<u32>,
    pub(crate) whole_rows: usize,
}

/// Draws row i of `rows` (`[rows, vocab]`, float32, any device) with `params[i]`: its
/// sampling parameters (not greedy) and step.
pub(crate) fn pick_sampled(
    rows: &Tensor,
    params: &[(&SamplingParams, u64)],
) -> Result<Reduced, EngineError> {
    let torch = |e: tch::TchError| EngineError::from(ModelError::from(e));
    let (count, vocab) = rows.size2().map_err(torch)?;
    if count as usize != params.len() {
        return Err(SamplingError::BadLogits {
            reason: "rows and parameters differ in number",
        }
        .into());
    }
    let device = rows.device();
    let maxima = Vec::<f32>::try_from(rows.f_amax(1, false).map_err(torch)?).map_err(torch)?;
    for &max in &maxima {
        check_max(max)?;
    }
    let mut tokens: Vec<Option<u32>> = vec![None; params.len()];
    let mut whole: Vec<usize> = Vec::new();
    let (mut top_p, mut full): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
    let mut top_k: Vec<usize> = Vec::new();
    for (i, (p, _)) in params.iter().enumerate() {
        let k = i64::from(p.top_k());
        if k > 0 && k < vocab {
            top_k.push(i);
        } else if p.top_p() < 1.0 {
            top_p.push(i);
        } else {
            full.push(i);
        }
    }

    if !top_k.is_empty() {
        let most = top_k
            .iter()
            .map(|&i| i64::from(params[i].0.top_k()))
            .max()
            .unwrap_or(1);
        let take = (most + 1).min(vocab);
        let (values, ids) = (|| {
            let (values, ids) = select(rows, &top_k)?.f_topk(take, 1, true, true)?;
            Ok((
                Vec::<f32>::try_from(values.f_flatten(0, -1)?)?,
                Vec::<i64>::try_from(ids.f_flatten(0, -1)?)?,
            ))
        })()
        .map_err(torch)?;
        let width = take as usize;
        for (at, &i) in top_k.iter().enumerate() {
            let (p, step) = params[i];
            let k = p.top_k() as usize;
            let values = &values[at * width..][..width];
            let ids = &ids[at * width..][..width];
            if values[k] == f32::NEG_INFINITY {
                // No more than k finite logits: the cut is not in force.
                if p.top_p() < 1.0 {
                    top_p.push(i);
                } else {
                    full.push(i);
                }
            } else if values[k] == values[k - 1] {
                whole.push(i);
            } else {
                let best: Vec<(u32, f32)> = ids[..k]
                    .iter()
                    .zip(&values[..k])
                    .map(|(&id, &l)| (id as u32, l))
                    .collect();
                settle(
                    &mut tokens,
                    &mut whole,
                    i,
                    sampling::draw_top_k(&best, p, step),
                );
            }
        }
    }

    if !top_p.is_empty() {
        let group = select(rows, &top_p).map_err(torch)?;
        let (scale, shift, share) = (
            column(
                top_p.iter().map(|&i| 1.0 / params[i].0.temperature()),
                device,
            ),
            column(top_p.iter().map(|&i| f64::from(maxima[i])), device),
            column(top_p.iter().map(|&i| params[i].0.top_p()), device),
        );
        let (sorted, order, totals, cuts) = (|| {
            let (sorted, order) = group.f_sort(1, true)?;
            let mut weights = sorted.f_to_kind(Kind::Double)?;
            let _ = weights.f_sub_(&shift?)?.f_mul_(&scale?)?.f_exp_()?;
            let mass = weights.f_cumsum(1, Kind::Double)?;
            let totals = mass.f_select(1, vocab - 1)?;
            let target = totals.f_unsqueeze(1)?.f_mul(&share?)?;
            let cuts = mass
                .f_lt_tensor(&target)?
                .f_sum_dim_intlist(1, false, Kind::Int64)?;
            Ok((
                sorted,
                order,
                Vec::<f64>::try_from(totals)?,
                Vec::<i64>::try_from(cuts)?,
            ))
        })()
        .map_err(torch)?;
        let deepest = cuts.iter().copied().max().unwrap_or(0);
        let width = (deepest + TOP_P_SLACK + 2).min(vocab);
        let (values, ids) = (|| {
            Ok((
                Vec::<f32>::try_from(sorted.f_narrow(1, 0, width)?.f_flatten(0, -1)?)?,
                Vec::<i64>::try_from(order.f_narrow(1, 0, width)?.f_flatten(0, -1)?)?,
            ))
        })()
        .map_err(torch)?;
        let width = width as usize;
        for (at, &i) in top_p.iter().enumerate() {
            let (p, step) = params[i];
            let values = &values[at * width..][..width];
            let ids = &ids[at * width..][..width];
            // The host cuts within the device's cut and some slack past it; the prefix
            // must not split a run of equal logits, whose order only the host decides.
            let mut n = ((cuts[at] + 1 + TOP_P_SLACK) as usize).min(width);
            let finite = values[..n]
                .iter()
                .take_while(|&&l| l > f32::NEG_INFINITY)
                .count();
            if finite < n {
                n = finite;
            } else if n < vocab as usize && (n == width || values[n] == values[n - 1]) {
                // The prefix may end inside a run of equal logits (or, past the fetched
                // width, nobody can tell): whole row.
                whole.push(i);
                continue;
            }
            let prefix: Vec<(u32, f32)> = ids[..n]
                .iter()
                .zip(&values[..n])
                .map(|(&id, &l)| (id as u32, l))
                .collect();
            let draw = sampling::draw_top_p(&prefix, totals[at], vocab as usize, p, step);
            settle(&mut tokens, &mut whole, i, draw);
        }
    }

    if !full.is_empty() {
        let blocks = (vocab + BLOCK - 1) / BLOCK;
        let pad = blocks * BLOCK - vocab;
        let group = select(rows, &full).map_err(torch)?;
        let (scale, shift) = (
            column(
                full.iter().map(|&i| 1.0 / params[i].0.temperature()),
                device,
            ),
            column(full.iter().map(|&i| f64::from(maxima[i])), device),
        );
        let sums = (|| {
            // In place: on the CPU each fresh `[rows, vocab]` float64 buffer is megabytes
            // of page faults.
            let mut weights = group.f_to_kind(Kind::Double)?;
            let _ = weights.f_sub_(&shift?)?.f_mul_(&scale?)?.f_exp_()?;
            if pad > 0 {
                weights = weights.f_constant_pad_nd([0, pad])?;
            }
            let sums = weights
                .f_view([full.len() as i64, blocks, BLOCK])?
                .f_sum_dim_intlist(2, false, Kind::Double)?;
            Vec::<f64>::try_from(sums.f_flatten(0, -1)?)
        })()
        .map_err(torch)?;
        let mut located: Vec<(usize, BlockDraw)> = Vec::new();
        for (at, &i) in full.iter().enumerate() {
            let (p, step) = params[i];
            let row_sums = &sums[at * blocks as usize..][..blocks as usize];
            match BlockDraw::locate(row_sums, vocab as usize, maxima[i], p, step) {
                Some(draw) => located.push((at, draw)),
                None => whole.push(i),
            }
        }
        if !located.is_empty() {
            let wanted: Vec<i64> = located
                .iter()
                .map(|(at, draw)| *at as i64 * blocks + draw.block as i64)
                .collect();
            let logits = (|| {
                let picked = group
                    .f_constant_pad_nd([0, pad])?
                    .f_view([full.len() as i64 * blocks, BLOCK])?
                    .f_index_select(0, &Tensor::f_from_slice(&wanted)?.f_to_device(device)?)?;
                Vec::<f32>::try_from(picked.f_flatten(0, -1)?)
            })()
            .map_err(torch)?;
            for ((at, draw), block) in located.iter().zip(logits.chunks_exact(BLOCK as usize)) {
                let first = (draw.block as i64 * BLOCK) as u32;
                // The padding's zeros are logits of weight 1: read real ids only.
                let real = ((vocab - i64::from(first)) as usize).min(block.len());
                settle(
                    &mut tokens,
                    &mut whole,
                    full[*at],
                    draw.finish(&block[..real], first),
                );
            }
        }
    }

    if !whole.is_empty() {
        whole.sort_unstable();
        let host = select(rows, &whole)
            .and_then(|r| r.f_flatten(0, -1))
            .and_then(Vec::<f32>::try_from)
            .map_err(torch)?;
        for (&i, row) in whole.iter().zip(host.chunks_exact(vocab as usize)) {
            let (p, step) = params[i];
            tokens[i] = Some(sampling::sample(row, p, step)?);
        }
    }
    let tokens = tokens
        .into_iter()
        .map(|t| t.ok_or(SamplingError::BadLogits { reason: "no draw" }))
        .collect::<Result<Vec<u32>, _>>()?;
    Ok(Reduced {
        tokens,
        whole_rows: whole.len(),
    })
}

/// Refuses a row as [`sampling::sample`] does, from its maximum alone.
fn check_max(max: f32) -> Result<(), SamplingError> {
    let reason = if max.is_nan() {
        "NaN"
    } else if max == f32::NEG_INFINITY {
        "no finite logit"
    } else if max == f32::INFINITY {
        "infinite logit"
    } else {
        return Ok(());
    };
    Err(SamplingError::BadLogits { reason })
}

fn settle(tokens: &mut [Option<u32>], whole: &mut Vec<usize>, row: usize, draw: Draw) {
    match draw {
        Draw::Token(token) => tokens[row] = Some(token),
        Draw::Unsure => whole.push(row),
    }
}

/// Rows `which` of `rows`, without a copy when they are all of them.
fn select(rows: &Tensor, which: &[usize]) -> Result<Tensor, tch::TchError> {
    let all = which.len() as i64 == rows.size()[0];
    if all && which.iter().enumerate().all(|(at, &i)| at == i) {
        return Ok(rows.shallow_clone());
    }
    let index: Vec<i64> = which.iter().map(|&i| i as i64).collect();
    rows.f_index_select(
        0,
        &Tensor::f_from_slice(&index)?.f_to_device(rows.device())?,
    )
}

/// A `[n, 1]` float64 column on `device`.
fn column(values: impl Iterator<Item = f64>, device: tch::Device) -> Result<Tensor, tch::TchError> {
    let values: Vec<f64> = values.collect();
    Tensor::f_from_slice(&values)?
        .f_view([values.len() as i64, 1])?
        .f_to_device(device)
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    use super::*;
    use crate::engine::sampling::SamplingRequest;

    fn params(temperature: f64, top_k: u64, top_p: f64, seed: u64) -> SamplingParams {
        SamplingRequest {
            temperature: Some(temperature),
            top_k: Some(top_k),
            top_p: Some(top_p),
            seed: Some(seed),
            ..Default::default()
        }
        .validate(16)
        .unwrap()
    }

    /// A language model's kind of row: a few strong candidates over a long tail.
    fn lm_row(rng: &mut ChaCha8Rng, vocab: usize) -> Vec<f32> {
        let mut uniform = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut row: Vec<f32> = (0..vocab)
            .map(|_| (-2.0 * (uniform().max(1e-300)).ln()).sqrt() as f32 * 2.5 - 4.0)
            .collect();
        for _ in 0..6 {
            let at = (uniform() * vocab as f64) as usize;
            row[at] = 8.0 + 6.0 * uniform() as f32;
        }
        row
    }

    fn host(rows: &[Vec<f32>], params: &[(&SamplingParams, u64)]) -> Vec<u32> {
        rows.iter()
            .zip(params)
            .map(|(row, (p, step))| sampling::sample(row, p, *step).unwrap())
            .collect()
    }

    fn tensor(rows: &[Vec<f32>]) -> Tensor {
        Tensor::from_slice(&rows.concat()).view([rows.len() as i64, rows[0].len() as i64])
    }

    #[test]
    fn draws_on_model_sized_rows_are_the_hosts_and_seldom_need_the_whole_row() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let rows: Vec<Vec<f32>> = (0..6).map(|_| lm_row(&mut rng, 49_152)).collect();
        let t = tensor(&rows);
        let (mut drawn, mut whole) = (0, 0);
        for (temperature, top_k, top_p) in [
            (1.0, 0, 1.0),
            (0.7, 0, 1.0),
            (2.0, 0, 1.0),
            (1.0, 40, 1.0),
            (0.8, 50, 0.9),
            (1.0, 0, 0.95),
            (1.3, 0, 0.5),
        ] {
            for seed in 0..12 {
                let p: Vec<SamplingParams> = (0..rows.len() as u64)
                    .map(|r| params(temperature, top_k, top_p, seed * 100 + r))
                    .collect();
                let which: Vec<(&SamplingParams, u64)> = p
                    .iter()
                    .zip(0..)
                    .map(|(p, step)| (p, step + seed))
                    .collect();
                let reduced = pick_sampled(&t, &which).unwrap();
                assert_eq!(
                    reduced.tokens,
                    host(&rows, &which),
                    "T {temperature} top-k {top_k} top-p {top_p} seed {seed}"
                );
                drawn += rows.len();
                whole += reduced.whole_rows;
            }
        }
        assert!(whole * 100 < drawn, "{whole} of {drawn} rows copied whole");
    }

    #[test]
    fn ties_infinities_and_short_rows_are_drawn_as_the_host_draws_them() {
        let inf = f32::NEG_INFINITY;
        let rows = vec![
            // A tie across the top-k cut, and one inside it.
            vec![3.0, 1.0, 2.0, 2.0, 0.5, 3.0, -1.0],
            // Fewer finite logits than k: the cut is not in force.
            vec![inf, 1.5, inf, inf, 0.0, inf, inf],
            // One finite logit.
            vec![inf, inf, inf, 4.0, inf, inf, inf],
            // All equal.
            vec![0.25; 7],
        ];
        let t = tensor(&rows);
        for (top_k, top_p) in [(0, 1.0), (2, 1.0), (3, 1.0), (3, 0.6), (0, 0.7), (6, 1.0)] {
            for seed in 0..40 {
                let p = params(1.0, top_k, top_p, seed);
                let which: Vec<(&SamplingParams, u64)> = (0..4).map(|s| (&p, s)).collect();
                assert_eq!(
                    pick_sampled(&t, &which).unwrap().tokens,
                    host(&rows, &which),
                    "top-k {top_k} top-p {top_p} seed {seed}"
                );
            }
        }
        // A tie at the k-th place is left to the host: the row crosses whole.
        let p = params(1.0, 1 + 1, 1.0, 3);
        let tied = pick_sampled(&tensor(&rows[3..]), &[(&p, 0)]).unwrap();
        assert_eq!(tied.whole_rows, 1);
    }

    #[test]
    fn rows_that_cannot_be_drawn_are_refused_as_on_the_host() {
        let p = params(1.0, 0, 1.0, 1);
        for (row, reason) in [
            (vec![0.0, f32::NAN, 1.0], "NaN"),
            (vec![f32::NEG_INFINITY; 3], "no finite logit"),
            (vec![0.0, f32::INFINITY, 1.0], "infinite logit"),
        ] {
            assert_eq!(
                sampling::sample(&row, &p, 0),
                Err(SamplingError::BadLogits { reason })
            );
            let err = pick_sampled(&tensor(&[row]), &[(&p, 0)]).unwrap_err();
            assert!(
                matches!(err, EngineError::Sampling(SamplingError::BadLogits { reason: r }) if r == reason),
                "{err:?}"
            );
        }
    }
}
