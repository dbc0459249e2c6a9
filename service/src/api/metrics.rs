//! Prometheus text exposition with vLLM's metric names and buckets (namespace `sworn:`), so
//! dashboards built for vLLM work unchanged, plus the ledger's figures.
//!
//! A small hand-written registry: a fixed set of counters and histograms, lock-free on the
//! request path (atomics), rendered on scrape.
//!
//! The anchor figures are the anchorer's latest [`AnchorStatus`], which it derives from
//! its records after every pass: after a reorg deeper than finality the lost anchors are
//! no longer counted as finalized, so the finalized size drops and the lag grows until
//! they are anchored again. The names are listed in `docs/API.md` (## Metrics).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sworn_ledger::anchor::{AnchorState, AnchorStatus};

use crate::histogram::{Histogram, REQUEST_TOKEN_BUCKETS};
use crate::scheduler::SchedulerStats;

/// vLLM's buckets for time to first token (seconds).
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
];
/// vLLM's buckets for inter-token latency (seconds).
const ITL_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// vLLM's buckets for end-to-end and queue latency (seconds).
const REQUEST_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0,
];
/// Buckets for the ledger append (swearing) latency: group commit is sub-millisecond to tens of ms.
const APPEND_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// The anchorer's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnchorFigures {
    /// Newest finalized seq that still stands on chain.
    pub finalized_seq: u64,
    /// Tree size covered by the newest finalized anchor.
    pub finalized_tree_size: u64,
    /// Newest anchor's state: 0 none, 1 submitted, 2 included, 3 finalized.
    pub state: u64,
    /// Whether the last RPC exchange succeeded.
    pub rpc_healthy: bool,
    /// Failed passes in a row.
    pub consecutive_failures: u64,
    /// Transactions resubmitted since start (dropped, reorged out, or lost after finality).
    pub resubmissions: u64,
    /// Reorgs seen moving or dropping an anchor before finality, since start.
    pub reorgs: u64,
    /// Reorgs deeper than finality that removed finalized anchors, since start.
    pub deep_reorgs: u64,
}

impl From<&AnchorStatus> for AnchorFigures {
    fn from(status: &AnchorStatus) -> Self {
        AnchorFigures {
            finalized_seq: status.finalized_seq,
            finalized_tree_size: status.finalized_tree_size,
            state: match status.current {
                None => 0,
                Some((_, AnchorState::Submitted)) => 1,
                Some((_, AnchorState::Included { .. })) => 2,
                Some((_, AnchorState::Finalized { .. })) => 3,
            },
            rpc_healthy: status.rpc_healthy,
            consecutive_failures: u64::from(status.consecutive_failures),
            resubmissions: status.resubmissions,
            reorgs: status.reorgs_seen,
            deep_reorgs: status.deep_reorgs,
        }
    }
}

/// Ledger figures read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct LedgerFigures {
    /// Durable entries.
    pub entries: u64,
    /// Size of the latest signed checkpoint.
    pub checkpoint_size: u64,
    /// Number of anchor records.
    pub anchors: u64,
    /// The anchorer, when anchoring runs.
    pub anchor: Option<AnchorFigures>,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    success: Mutex<BTreeMap<&'static str, u64>>,
    failure: Mutex<BTreeMap<&'static str, u64>>,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    /// Time to first token.
    pub ttft: Histogram,
    /// Gap between streamed pieces of text.
    pub inter_token: Histogram,
    /// Whole request, from arrival to answer.
    pub e2e: Histogram,
    /// Time in the queue.
    pub queue: Histogram,
    /// Ledger append (commit, sign, durable flush).
    pub append: Histogram,
    /// Prompt tokens of each answered request.
    pub request_prompt_tokens: Histogram,
    /// Generated tokens of each answered request.
    pub request_generation_tokens: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            success: Mutex::default(),
            failure: Mutex::default(),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BUCKETS),
            inter_token: Histogram::new(ITL_BUCKETS),
            e2e: Histogram::new(REQUEST_BUCKETS),
            queue: Histogram::new(REQUEST_BUCKETS),
            append: Histogram::new(APPEND_BUCKETS),
            request_prompt_tokens: Histogram::tokens(REQUEST_TOKEN_BUCKETS),
            request_generation_tokens: Histogram::tokens(REQUEST_TOKEN_BUCKETS),
        }
    }
}

fn bump(map: &Mutex<BTreeMap<&'static str, u64>>, label: &'static str) {
    // Counters stay usable even if a panicking thread poisoned the lock.
    let mut map = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *map.entry(label).or_insert(0) += 1;
}

impl Metrics {
    /// A finished (sworn) request with its finish reason and token counts.
    pub fn record_success(
        &self,
        finish_reason: &'static str,
        prompt_tokens: u64,
        generation_tokens: u64,
    ) {
        bump(&self.success, finish_reason);
        self.prompt_tokens
            .fetch_add(prompt_tokens, Ordering::Relaxed);
        self.generation_tokens
            .fetch_add(generation_tokens, Ordering::Relaxed);
        self.request_prompt_tokens.observe_tokens(prompt_tokens);
        self.request_generation_tokens
            .observe_tokens(generation_tokens);
    }

    /// A refused or failed request, by error label.
    pub fn record_failure(&self, label: &'static str) {
        bump(&self.failure, label);
    }

    /// Prometheus text.
    #[rustfmt::skip] // Tables of metrics, one row a line.
    pub fn render(&self, scheduler: &SchedulerStats, ledger: &LedgerFigures) -> String {
        const GAUGE: &str = "gauge";
        const COUNTER: &str = "counter";
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut scalars = vec![
            ("sworn:num_requests_running", GAUGE, "Sequences in the running batch.", scheduler.running.load(Ordering::Relaxed) as u64),
            ("sworn:num_requests_waiting", GAUGE, "Requests waiting in the queue.", scheduler.waiting.load(Ordering::Relaxed) as u64),
            ("sworn:prompt_tokens_total", COUNTER, "Prompt tokens processed.", load(&self.prompt_tokens)),
            ("sworn:generation_tokens_total", COUNTER, "Tokens generated.", load(&self.generation_tokens)),
            ("sworn:request_dropped_total", COUNTER, "Requests whose client disconnected before the end.", load(&scheduler.dropped)),
            ("sworn:request_queue_full_total", COUNTER, "Requests refused with 503 because the queue was full.", load(&scheduler.rejected)),
            ("sworn:ledger_entries", GAUGE, "Durable entries in the log.", ledger.entries),
            ("sworn:ledger_checkpoint_size", GAUGE, "Tree size of the latest signed checkpoint.", ledger.checkpoint_size),
            ("sworn:ledger_checkpoint_lag_entries", GAUGE, "Durable entries not yet covered by a checkpoint.", ledger.entries.saturating_sub(ledger.checkpoint_size)),
            ("sworn:anchor_enabled", GAUGE, "1 when checkpoints are anchored on chain.", u64::from(ledger.anchor.is_some())),
            ("sworn:anchor_records", GAUGE, "Anchor records in the ledger (seqs anchored or being anchored).", ledger.anchors),
        ];
        if let Some(anchor) = &ledger.anchor {
            scalars.extend([
                ("sworn:anchor_finalized_seq", GAUGE, "Newest seq whose anchor is final and still on chain.", anchor.finalized_seq),
                ("sworn:anchor_finalized_tree_size", GAUGE, "Tree size covered by the newest finalized anchor.", anchor.finalized_tree_size),
                ("sworn:anchor_lag_entries", GAUGE, "Durable entries not yet covered by a finalized anchor.", ledger.entries.saturating_sub(anchor.finalized_tree_size)),
                ("sworn:anchor_state", GAUGE, "Newest anchor: 0 none, 1 submitted, 2 included, 3 finalized.", anchor.state),
                ("sworn:anchor_rpc_healthy", GAUGE, "1 when the last chain RPC exchange succeeded.", u64::from(anchor.rpc_healthy)),
                ("sworn:anchor_consecutive_failures", GAUGE, "Failed anchoring passes in a row.", anchor.consecutive_failures),
                ("sworn:anchor_resubmissions_total", COUNTER, "Anchor transactions resubmitted (dropped, reorged out, or lost after finality).", anchor.resubmissions),
                ("sworn:anchor_reorgs_total", COUNTER, "Reorgs that moved or dropped an anchor before it was final.", anchor.reorgs),
                ("sworn:anchor_deep_reorgs_total", COUNTER, "Reorgs deeper than finality that removed finalized anchors (re-anchored).", anchor.deep_reorgs),
            ]);
        }
        let mut out = String::with_capacity(8192);
        for (name, kind, help, value) in scalars {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        let ratios = [
            ("sworn:kv_cache_usage_perc", "KV-cache use, 0 to 1: KV slots held by sequences over all slots.", scheduler.kv_cache_usage()),
        ];
        for (name, help, value) in ratios {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        let labelled = [
            ("sworn:request_success_total", "Requests answered and sworn, by finish reason.", "finished_reason", &self.success),
            ("sworn:request_failure_total", "Requests refused or failed, by error type.", "error_type", &self.failure),
        ];
        for (name, help, label, map) in labelled {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let map = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (value, count) in map.iter() {
                let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {count}");
            }
        }
        let histograms = [
            (&self.ttft, "sworn:time_to_first_token_seconds", "Time to first token."),
            (&self.inter_token, "sworn:inter_token_latency_seconds", "Time between streamed text pieces."),
            (&self.e2e, "sworn:e2e_request_latency_seconds", "Request latency, arrival to answer."),
            (&self.queue, "sworn:request_queue_time_seconds", "Time spent waiting in the queue."),
            (&self.append, "sworn:ledger_append_seconds", "Swearing latency: commit, sign and durable append of a receipt."),
            (&self.request_prompt_tokens, "sworn:request_prompt_tokens", "Prompt tokens per answered request."),
            (&self.request_generation_tokens, "sworn:request_generation_tokens", "Generated tokens per answered request."),
            (&scheduler.max_tokens, "sworn:request_params_max_tokens", "The max_tokens in force for each request the engine admitted."),
            (&scheduler.iteration_tokens, "sworn:iteration_tokens_total", "Tokens per engine step: prompt tokens prefilled plus sequences decoded."),
        ];
        for (histogram, name, help) in histograms {
            histogram.render(&mut out, name, help);
        }
        out
    }
}

impl crate::swear::MetricsSink for Metrics {
    fn queued(&self, waited: Duration) {
        self.queue.observe(waited);
    }
    fn first_text(&self, after: Duration) {
        self.ttft.observe(after);
    }
    fn next_text(&self, gap: Duration) {
        self.inter_token.observe(gap);
    }
    fn appended(&self, took: Duration) {
        self.append.observe(took);
    }
    fn answered(&self, after: Duration) {
        self.e2e.observe(after);
    }
    fn succeeded(&self, finish_reason: &'static str, prompt_tokens: u64, completion_tokens: u64) {
        self.record_success(finish_reason, prompt_tokens, completion_tokens);
    }
    fn failed(&self, label: &'static str) {
        self.record_failure(label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_rendered() {
        let m = Metrics::default();
        m.ttft.observe(Duration::from_millis(3));
        m.ttft.observe(Duration::from_millis(300));
        m.record_success("stop", 10, 5);
        m.record_failure("overloaded");
        let text = m.render(
            &SchedulerStats::default(),
            &LedgerFigures {
                entries: 7,
                checkpoint_size: 4,
                ..LedgerFigures::default()
            },
        );
        assert!(text.contains("sworn:time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("sworn:time_to_first_token_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("sworn:time_to_first_token_seconds_count 2\n"));
        assert!(text.contains("sworn:request_success_total{finished_reason=\"stop\"} 1\n"));
        assert!(text.contains("sworn:request_failure_total{error_type=\"overloaded\"} 1\n"));
        assert!(text.contains("sworn:prompt_tokens_total 10\n"));
        assert!(text.contains("sworn:ledger_checkpoint_lag_entries 3\n"));
    }

    #[test]
    fn token_histograms_and_kv_cache_usage_render_exact_buckets() {
        let m = Metrics::default();
        m.record_success("stop", 7, 1);
        m.record_success("length", 200, 16);
        m.record_success("stop", 1_500, 3);
        let stats = SchedulerStats::default();
        for tokens in [1, 9, 16, 20_000] {
            stats.iteration_tokens.observe_tokens(tokens);
        }
        stats.max_tokens.observe_tokens(16);
        stats.kv_slots.store(8, Ordering::Relaxed);
        stats.kv_slots_held.store(2, Ordering::Relaxed);
        let text = m.render(&stats, &LedgerFigures::default());
        for line in [
            "# TYPE sworn:request_prompt_tokens histogram",
            "sworn:request_prompt_tokens_bucket{le=\"5\"} 0",
            "sworn:request_prompt_tokens_bucket{le=\"10\"} 1",
            "sworn:request_prompt_tokens_bucket{le=\"200\"} 2",
            "sworn:request_prompt_tokens_bucket{le=\"1000\"} 2",
            "sworn:request_prompt_tokens_bucket{le=\"2000\"} 3",
            "sworn:request_prompt_tokens_bucket{le=\"1000000\"} 3",
            "sworn:request_prompt_tokens_bucket{le=\"+Inf\"} 3",
            "sworn:request_prompt_tokens_sum 1707",
            "sworn:request_prompt_tokens_count 3",
            "sworn:request_generation_tokens_bucket{le=\"1\"} 1",
            "sworn:request_generation_tokens_bucket{le=\"5\"} 2",
            "sworn:request_generation_tokens_bucket{le=\"10\"} 2",
            "sworn:request_generation_tokens_bucket{le=\"20\"} 3",
            "sworn:request_generation_tokens_sum 20",
            "sworn:request_generation_tokens_count 3",
            "sworn:request_params_max_tokens_bucket{le=\"10\"} 0",
            "sworn:request_params_max_tokens_bucket{le=\"20\"} 1",
            "sworn:request_params_max_tokens_sum 16",
            "sworn:request_params_max_tokens_count 1",
            "sworn:iteration_tokens_total_bucket{le=\"1\"} 1",
            "sworn:iteration_tokens_total_bucket{le=\"8\"} 1",
            "sworn:iteration_tokens_total_bucket{le=\"16\"} 3",
            "sworn:iteration_tokens_total_bucket{le=\"16384\"} 3",
            "sworn:iteration_tokens_total_bucket{le=\"+Inf\"} 4",
            "sworn:iteration_tokens_total_sum 20026",
            "sworn:iteration_tokens_total_count 4",
            "# TYPE sworn:kv_cache_usage_perc gauge",
            "sworn:kv_cache_usage_perc 0.25",
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "missing `{line}` in\n{text}"
            );
        }
    }

    #[test]
    fn kv_cache_usage_is_zero_without_slots_and_at_most_one() {
        let stats = SchedulerStats::default();
        assert_eq!(stats.kv_cache_usage(), 0.0);
        stats.kv_slots.store(4, Ordering::Relaxed);
        stats.kv_slots_held.store(4, Ordering::Relaxed);
        assert_eq!(stats.kv_cache_usage(), 1.0);
        let text = Metrics::default().render(&stats, &LedgerFigures::default());
        assert!(text.contains("sworn:kv_cache_usage_perc 1\n"), "{text}");
    }

    /// The value of metric `name` in `text`.
    fn value(text: &str, name: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn anchor_figures_after_a_deep_reorg_show_the_lost_anchors() {
        // What the anchorer publishes once a reorg deeper than finality removed seqs 2
        // and 3 (of 10, 20, 30 entries) and seq 2 went out again: seq 1 is the newest
        // final anchor, the lost seqs are not counted as finalized.
        let status = AnchorStatus {
            current: Some((3, AnchorState::Submitted)),
            finalized_seq: 1,
            finalized_tree_size: 10,
            newest_checkpoint_size: 30,
            lag_entries: 20,
            rpc_healthy: true,
            resubmissions: 1,
            reorgs_seen: 2,
            deep_reorgs: 1,
            ..AnchorStatus::default()
        };
        let text = Metrics::default().render(
            &SchedulerStats::default(),
            &LedgerFigures {
                entries: 32,
                checkpoint_size: 30,
                anchors: 3,
                anchor: Some(AnchorFigures::from(&status)),
            },
        );
        for (name, expected) in [
            ("sworn:anchor_enabled", 1),
            ("sworn:anchor_records", 3),
            ("sworn:anchor_finalized_seq", 1),
            ("sworn:anchor_finalized_tree_size", 10),
            ("sworn:anchor_lag_entries", 22),
            ("sworn:anchor_state", 1),
            ("sworn:anchor_rpc_healthy", 1),
            ("sworn:anchor_resubmissions_total", 1),
            ("sworn:anchor_reorgs_total", 2),
            ("sworn:anchor_deep_reorgs_total", 1),
        ] {
            assert_eq!(value(&text, name), Some(expected), "{name} in\n{text}");
        }
        assert!(text.contains("# TYPE sworn:anchor_deep_reorgs_total counter\n"));
        assert!(text.contains("# TYPE sworn:anchor_reorgs_total counter\n"));
    }

    #[test]
    fn anchor_figures_are_absent_without_an_anchorer() {
        let text = Metrics::default().render(&SchedulerStats::default(), &LedgerFigures::default());
        assert_eq!(value(&text, "sworn:anchor_enabled"), Some(0));
        assert_eq!(value(&text, "sworn:anchor_finalized_seq"), None);
        assert_eq!(value(&text, "sworn:anchor_deep_reorgs_total"), None);
    }
}
