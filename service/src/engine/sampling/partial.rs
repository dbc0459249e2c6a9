//! Finishing a draw from part of a row: the token [`sample`](super::sample) picks from the
//! whole row, computed from the few numbers a reduction on the device hands over, or
//! [`Draw::Unsure`] where rounding could make the two disagree.
//!
//! Top-k needs nothing but the k best logits: the draw over them is exact. A draw over
//! the whole row, and the top-p cut, compare the step's uniform number with running sums
//! of weights; summed on the device in another order (and through another `exp`), those
//! sums differ from the host's by at most a few parts in 10¹² of the total (a sequential
//! sum of n non-negative terms is off by at most (n − 1)·2⁻⁵³ of it). A decision is taken
//! here only when every sum it rests on is further than [`margin`] (64 times that bound)
//! from the number it is compared with; otherwise the caller draws from the whole row.
//! At SmolLM2's 49,152 tokens the margin is 3.5 × 10⁻¹⁰ of the total, so a row falls
//! back about as often as its draw lands on a token that rare, or that near a border.

use super::{SamplingParams, keep_of_top_k, rank_key, reaching, step_uniform, walk_kept, weight};

/// The outcome of a draw finished from part of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Draw {
    /// The token [`sample`](super::sample) picks from the whole row.
    Token(u32),
    /// Too close to call from sums made elsewhere: draw from the whole row.
    Unsure,
}

/// How far (in weight) a compared sum must be from its bound for the decision to hold
/// whichever order the `vocab` weights were summed in, where `total` is their sum.
pub(crate) fn margin(vocab: usize, total: f64) -> f64 {
    64.0 * vocab as f64 * (f64::EPSILON / 2.0) * total
}

/// A draw over a whole row (no top-k, no top-p) located to one block of the row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BlockDraw {
    /// The block (of consecutive ids) where the draw falls.
    pub(crate) block: usize,
    /// Weight of the blocks before it.
    before: f64,
    /// Where the draw falls in the row's weight.
    threshold: f64,
    margin: f64,
    max: f64,
    inv_t: f64,
}

impl BlockDraw {
    /// Locates step `step`'s draw among `sums`, the weights of consecutive blocks of a
    /// `vocab`-token row whose largest logit is `max` (finite). `None` when it falls too
    /// near the end of the row to be sure.
    pub(crate) fn locate(
        sums: &[f64],
        vocab: usize,
        max: f32,
        params: &SamplingParams,
        step: u64,
    ) -> Option<BlockDraw> {
        let total: f64 = sums.iter().sum();
        if !(total.is_finite() && total > 0.0) {
            return None;
        }
        let threshold = step_uniform(params.seed, step) * total;
        let margin = margin(vocab, total);
        if total - threshold <= margin {
            return None;
        }
        let mut before = 0.0;
        for (block, &sum) in sums.iter().enumerate() {
            if threshold < before + sum {
                return Some(BlockDraw {
                    block,
                    before,
                    threshold,
                    margin,
                    max: f64::from(max),
                    inv_t: 1.0 / params.temperature,
                });
            }
            before += sum;
        }
        None
    }

    /// Finishes the draw inside the block: `logits` are the block's, the first of them
    /// token `first`.
    pub(crate) fn finish(&self, logits: &[f32], first: u32) -> Draw {
        let mut before = self.before;
        for (id, &logit) in (first..).zip(logits) {
            let w = weight(logit, self.max, self.inv_t);
            if w > 0.0 {
                let after = before + w;
                if self.threshold < after {
                    let sure = self.threshold - before > self.margin
                        && after - self.threshold > self.margin;
                    return if sure { Draw::Token(id) } else { Draw::Unsure };
                }
                before = after;
            }
        }
        Draw::Unsure
    }
}

/// The draw of a row whose top-k cut is in force (`k` smaller than its count of finite
/// logits), from exactly its `k` best `(id, logit)` in any order: no tie at the k-th
/// place may leave a candidate out. Exact: these are all the numbers the draw reads.
pub(crate) fn draw_top_k(best: &[(u32, f32)], params: &SamplingParams, step: u64) -> Draw {
    let Some(max) = best.iter().map(|&(_, l)| l).reduce(f32::max) else {
        return Draw::Unsure;
    };
    let ranked = rank_keys(best, max, params);
    let kept = keep_of_top_k(ranked, params.top_p);
    walk_kept(&kept, step_uniform(params.seed, step)).map_or(Draw::Unsure, Draw::Token)
}

/// The draw of a row cut by top-p alone, from a prefix of its finite logits in rank
/// order (`(id, logit)`, no tie across the prefix's end) and the row's `total` weight as
/// summed elsewhere over `vocab` tokens.
pub(crate) fn draw_top_p(
    prefix: &[(u32, f32)],
    total: f64,
    vocab: usize,
    params: &SamplingParams,
    step: u64,
) -> Draw {
    let Some(max) = prefix.iter().map(|&(_, l)| l).reduce(f32::max) else {
        return Draw::Unsure;
    };
    let mut ranked = rank_keys(prefix, max, params);
    ranked.sort_unstable();
    let target = params.top_p * total;
    let margin = margin(vocab, total);
    match reaching(&ranked, target) {
        Some((n, before, mass)) if target - before > margin && mass - target > margin => {
            walk_kept(&ranked[..n], step_uniform(params.seed, step))
                .map_or(Draw::Unsure, Draw::Token)
        }
        _ => Draw::Unsure,
    }
}

fn rank_keys(entries: &[(u32, f32)], max: f32, params: &SamplingParams) -> Vec<u128> {
    let (max, inv_t) = (f64::from(max), 1.0 / params.temperature);
    entries
        .iter()
        .map(|&(id, l)| rank_key((f64::from(l) - max) * inv_t, id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sampling::SamplingRequest;

    fn params(top_p: f64, seed: u64) -> SamplingParams {
        SamplingRequest {
            temperature: Some(1.0),
            top_p: Some(top_p),
            seed: Some(seed),
            ..Default::default()
        }
        .validate(16)
        .unwrap()
    }

    #[test]
    fn a_draw_within_the_margin_of_a_border_is_left_to_the_whole_row() {
        // Block 1 holds four tokens of weight exactly 1 (logit = max = 0): borders at
        // `before`, `before + 1`, … Put the draw `delta` past the second border.
        let seed = (0..)
            .find(|&s| (0.3..0.9).contains(&step_uniform(s, 0)))
            .unwrap();
        let (p, u) = (params(1.0, seed), step_uniform(seed, 0));
        let block = [0.0f32; 4];
        let vocab = 49_152;
        for (delta, expected) in [
            (0.01, Draw::Token(101)),
            (-0.01, Draw::Token(100)),
            (1e-12, Draw::Unsure),
            (-1e-12, Draw::Unsure),
        ] {
            // u·(before + 4) = before + 1 + delta.
            let before = (4.0 * u - 1.0 - delta) / (1.0 - u);
            let draw = BlockDraw::locate(&[before, 4.0], vocab, 0.0, &p, 0).unwrap();
            assert_eq!(draw.block, 1);
            assert_eq!(draw.finish(&block, 100), expected, "delta {delta}");
        }
        // Too near the end of the row to say: no block.
        let before = (4.0 * u - 4.0 + 1e-13) / (1.0 - u);
        assert!(before < 0.0 || BlockDraw::locate(&[before, 4.0], vocab, 0.0, &p, 0).is_none());
    }

    #[test]
    fn a_top_p_cut_within_the_margin_of_the_target_is_left_to_the_whole_row() {
        // Three candidates of weight 1; top-p 0.5 of a total of 4 is exactly the mass of
        // two: the device's total could put the cut on either side.
        let prefix = [(7, 0.0f32), (3, 0.0), (5, 0.0)];
        let p = params(0.5, 1);
        assert_eq!(draw_top_p(&prefix, 4.0, 100, &p, 0), Draw::Unsure);
        assert_eq!(
            draw_top_p(&prefix, 4.0 * (1.0 + 1e-14), 100, &p, 0),
            Draw::Unsure
        );
        // Well clear of it: three candidates kept (ranked 3, 5, 7 by id), drawn exactly.
        let clear = draw_top_p(&prefix, 4.004, 100, &p, 0);
        let expected = [3, 5, 7][(step_uniform(1, 0) * 3.0) as usize];
        assert_eq!(clear, Draw::Token(expected));
        // The target past everything the prefix holds.
        assert_eq!(draw_top_p(&prefix, 8.0, 100, &p, 0), Draw::Unsure);
    }
}
