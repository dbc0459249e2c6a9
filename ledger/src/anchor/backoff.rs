//! Bounded, jittered exponential back-off for an unreachable or failing RPC.
//!
//! Delays double from `initial` up to `max`, and each is drawn uniformly from
//! `[delay/2, delay]` ("equal jitter"), so many Sworn instances that lost the same RPC
//! do not all come back at the same instant, while the wait never exceeds `max`.

use std::time::Duration;

use rand::Rng;

/// How long to wait between failing passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The first delay after a failure.
    pub initial: Duration,
    /// The cap: no delay is ever longer.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(250),
            // A public RPC that is rate-limiting us should see at most one try per half
            // minute; a local Anvil that restarts is picked up within that.
            max: Duration::from_secs(30),
        }
    }
}

/// The back-off state: failures so far.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    /// A fresh back-off (no failures yet).
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            failures: 0,
        }
    }

    /// Records a failure and returns how long to wait before the next try.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let half = ceiling / 2;
        let spread = ceiling.saturating_sub(half);
        half + spread.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
    }

    /// Forgets past failures after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The un-jittered delay for the next failure: initial * 2^failures, capped.
    fn ceiling(&self) -> Duration {
        // 2^20 * initial is far past any sensible cap; stop doubling there.
        let doublings = self.failures.min(20);
        self.policy
            .initial
            .saturating_mul(1u32 << doublings)
            .min(self.policy.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BackoffPolicy = BackoffPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };

    #[test]
    fn delays_grow_within_their_jitter_band_and_stay_capped() {
        let mut b = Backoff::new(POLICY);
        let mut ceiling = POLICY.initial;
        for _ in 0..40 {
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            assert!(d <= POLICY.max);
            ceiling = (ceiling * 2).min(POLICY.max);
        }
        assert_eq!(b.failures(), 40);
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(POLICY);
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.failures(), 0);
        assert!(b.next_delay() <= POLICY.initial);
    }

    #[test]
    fn jitter_actually_varies() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(POLICY);
            for _ in 0..5 {
                b.next_delay();
            }
            seen.insert(b.next_delay());
        }
        assert!(seen.len() > 1, "50 draws gave one value: no jitter");
    }
}
