//! A lock-free cumulative histogram (Prometheus semantics), shared by the API's `/metrics`
//! and the scheduler, which observes per-step and per-request token counts on the engine
//! thread. Rendering is in [`crate::api::metrics`]'s tables.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// vLLM's 1-2-5 buckets for per-request token counts (`request_prompt_tokens`,
/// `request_generation_tokens`, `request_params_max_tokens`). vLLM stops them at the model's
/// context length; these run to a million tokens for every model, so a bucket above the
/// context length simply stays equal to `+Inf`.
pub(crate) const REQUEST_TOKEN_BUCKETS: &[f64] = &[
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1_000.0,
    2_000.0,
    5_000.0,
    10_000.0,
    20_000.0,
    50_000.0,
    100_000.0,
    200_000.0,
    500_000.0,
    1_000_000.0,
];
/// vLLM's buckets for tokens per engine step (`iteration_tokens_total`).
pub(crate) const ITERATION_TOKEN_BUCKETS: &[f64] = &[
    1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1_024.0, 2_048.0, 4_096.0, 8_192.0, 16_384.0,
];

/// A cumulative histogram of durations (seconds) or of counts (tokens).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in integer units, so it can be atomic: nanoseconds or tokens.
    sum_units: AtomicU64,
    /// Units per rendered unit: 1e9 for seconds, 1 for tokens.
    units_per_value: f64,
}

impl Histogram {
    /// A histogram of durations, fed with [`observe`](Self::observe).
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Self::with_units(bounds, 1e9)
    }

    /// A histogram of token counts, fed with [`observe_tokens`](Self::observe_tokens).
    pub(crate) fn tokens(bounds: &'static [f64]) -> Self {
        Self::with_units(bounds, 1.0)
    }

    fn with_units(bounds: &'static [f64], units_per_value: f64) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_units: AtomicU64::new(0),
            units_per_value,
        }
    }

    /// Records one duration (a histogram made with seconds buckets).
    pub fn observe(&self, value: Duration) {
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.record(value.as_secs_f64(), nanos);
    }

    /// Records one token count (a histogram made by [`tokens`](Self::tokens)).
    pub fn observe_tokens(&self, tokens: u64) {
        self.record(tokens as f64, tokens);
    }

    fn record(&self, value: f64, units: u64) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if value <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_units.fetch_add(units, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends the Prometheus text exposition of this histogram as `name`.
    pub(crate) fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let total = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_units.load(Ordering::Relaxed) as f64 / self.units_per_value;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}
