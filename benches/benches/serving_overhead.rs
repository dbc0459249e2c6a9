//! Provenance overhead of the HTTP API (BENCHMARKS.md, section Serving).
//!
//! Runs the real server (real TCP, real sled ledger with group commit and fsync) in this
//! process over the byte-level toy model from the service's API tests, whose generation
//! costs microseconds, so the difference between the two modes is what swearing adds:
//! committing, signing, appending durably and returning the receipt. Each configuration
//! sends requests from 1 and from 32 concurrent clients (HTTP keep-alive) and reports
//! p50/p99 end-to-end latency; then resident memory after 100 sworn requests and every
//! 10,000 after that, up to 60,100.
//!
//!   cargo bench -p sworn-benches --bench serving_overhead [-- --requests N] [--memory-steps S]
// A benchmark harness: setup failures should abort loudly, and the shared toy model from
// the API tests is included by path, so its `pub` items are crate-local here.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

#[path = "../../service/tests/api/toy.rs"]
mod toy;

/// The allocator the `sworn` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sworn_ledger::keys::LogKey;
use sworn_ledger::receipt::ModelInfo;
use sworn_ledger::store::{Ledger, LedgerConfig};
use sworn_service::api::auth::Auth;
use sworn_service::api::state::{AppState, AppStateParts, ServedModel, SwearMode};
use sworn_service::api::validation::Limits;
use sworn_service::scheduler::Scheduler;
use sworn_service::server::{ListenOptions, Server};

struct Running {
    url: String,
    server: Server,
    state: Arc<AppState>,
    _dir: tempfile::TempDir,
}

async fn start(mode: SwearMode) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let key = LogKey::generate_to_file(&dir.path().join("log.key")).unwrap();
    let ledger = Ledger::open(LedgerConfig::new(
        dir.path().join("ledger"),
        "sworn.bench/serving",
        key,
    ))
    .unwrap();
    let (scheduler, _engine) = Scheduler::start(toy::ToyGenerator { max_batch: 64 }, 1024).unwrap();
    let state = AppState::new(AppStateParts {
        model: ServedModel {
            id: "toy".into(),
            info: ModelInfo {
                id: "toy".into(),
                sha256: "ab".repeat(32),
                dtype: "f32".into(),
                device: "cpu".into(),
                engine: "bench".into(),
                libtorch: "none".into(),
            },
            context_length: toy::TOY_CONTEXT,
            encoder: Arc::new(toy::ToyEncoder),
            created: 0,
        },
        limits: Limits::default(),
        max_body_bytes: 64 * 1024,
        auth: Auth::Disabled,
        scheduler,
        ledger,
        swear_mode: mode,
        anchor: None,
        overload_retry_after_s: 1,
        client_stall_timeout: std::time::Duration::from_secs(60),
    });
    let server = Server::start(
        state.clone(),
        ListenOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            allow_plain_http: false,
        },
    )
    .await
    .unwrap();
    Running {
        url: server.url(),
        server,
        state,
        _dir: dir,
    }
}

fn client(url: &str) -> async_openai::Client<async_openai::config::OpenAIConfig> {
    async_openai::Client::with_config(
        async_openai::config::OpenAIConfig::new()
            .with_api_base(format!("{url}/v1"))
            .with_api_key("unused"),
    )
}

/// Sends `total` requests from `concurrency` clients; returns each request's latency.
async fn load(url: &str, concurrency: usize, total: usize, mode: SwearMode) -> Vec<Duration> {
    let per_client = total.div_ceil(concurrency);
    let tasks: Vec<_> = (0..concurrency)
        .map(|c| {
            let client = client(url);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let request = json!({
                        "model": "toy", "temperature": 0, "max_tokens": 16,
                        "messages": [{"role": "user", "content": format!("client {c} request {i}")}]
                    });
                    let started = Instant::now();
                    let answer: Value = client
                        .chat()
                        .create_byot(request)
                        .await
                        .expect("request failed");
                    latencies.push(started.elapsed());
                    assert_eq!(answer.get("sworn").is_some(), mode == SwearMode::Durable);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total);
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn rss_kib() -> u64 {
    sworn_benches::proc_status_kib("VmRSS:").unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let requests = args
        .iter()
        .position(|a| a == "--requests")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(2000usize);
    let memory_steps = args
        .iter()
        .position(|a| a == "--memory-steps")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(6usize);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("requests per configuration: {requests} (after 200 warm-up)");
        println!("{:<10} {:>6} {:>10} {:>10} {:>10}", "mode", "conc.", "p50 ms", "p99 ms", "req/s");
        let mut table = Vec::new();
        for concurrency in [1usize, 32] {
            for mode in [SwearMode::SkipForBenchmark, SwearMode::Durable] {
                let running = start(mode).await;
                load(&running.url, concurrency, 200, mode).await;
                let started = Instant::now();
                let mut latencies = load(&running.url, concurrency, requests, mode).await;
                let elapsed = started.elapsed();
                latencies.sort();
                let (p50, p99) = (percentile(&latencies, 50.0), percentile(&latencies, 99.0));
                let name = if mode == SwearMode::Durable { "sworn" } else { "unsworn" };
                println!(
                    "{name:<10} {concurrency:>6} {:>10.3} {:>10.3} {:>10.0}",
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3,
                    latencies.len() as f64 / elapsed.as_secs_f64()
                );
                table.push((concurrency, mode, p50, p99));
                running.server.stop().await;
                drop(running.state);
            }
        }
        for concurrency in [1usize, 32] {
            let get = |m| table.iter().find(|(c, mode, ..)| *c == concurrency && *mode == m).unwrap();
            let (_, _, p50_off, p99_off) = get(SwearMode::SkipForBenchmark);
            let (_, _, p50_on, p99_on) = get(SwearMode::Durable);
            println!(
                "swearing adds at {concurrency:>2} clients: p50 {:+.3} ms, p99 {:+.3} ms",
                (p50_on.as_secs_f64() - p50_off.as_secs_f64()) * 1e3,
                (p99_on.as_secs_f64() - p99_off.as_secs_f64()) * 1e3
            );
        }
        // Memory: RSS after 100 sworn requests, then every 10,000 (`--memory-steps`, 6 by
        // default: up to 60,100), 32 clients.
        // The sled page cache (64 MiB by default) fills first; growth after it is full
        // would mean a leak.
        for mode in [SwearMode::SkipForBenchmark, SwearMode::Durable] {
            let running = start(mode).await;
            load(&running.url, 32, 100, mode).await;
            let mut points = vec![(100, rss_kib())];
            for step in 1..=memory_steps {
                load(&running.url, 32, 10_000, mode).await;
                points.push((100 + step * 10_000, rss_kib()));
            }
            let name = if mode == SwearMode::Durable { "sworn" } else { "unsworn" };
            let listed: Vec<String> = points
                .iter()
                .map(|(n, kib)| format!("{n}: {} MiB", kib / 1024))
                .collect();
            println!(
                "resident memory, {name} (server and clients in one process), after N requests: {} ({} log entries)",
                listed.join(", "),
                running.state.ledger.size()
            );
            running.server.stop().await;
        }
    });
}
