//! A closed-loop load generator for any OpenAI-compatible `/v1/completions` (or, with
//! `--chat`, `/v1/chat/completions`) endpoint, with
//! vLLM's serving-benchmark metrics (`../shared/reference/serving.md` §3b):
//!
//! * TTFT: from just before the POST to the first chunk with non-empty text;
//! * ITL: the gap before each later text-bearing chunk, pooled over all requests;
//! * E2EL: from the POST to the end of the stream (`data: [DONE]`);
//! * TPOT: per request `(E2EL − TTFT) / (output_tokens − 1)` when it produced more than one
//!   token, `output_tokens` being the server's `usage.completion_tokens`;
//! * request and output throughput over the wall time from the first dispatch to the last
//!   completion.
//!
//! Each of `--concurrency` clients sends its next request as soon as its last one ends
//! (vLLM's `--max-concurrency` with `--request-rate inf`), greedy, streamed with
//! `stream_options.include_usage`. One warm-up request runs first. Prompts are
//! `--input-words` words, different for every request.
//!
//! Run: `cargo run --release -p sworn-benches --example loadgen -- --base-url
//! http://127.0.0.1:8080/v1 --model ID --concurrency 1,16 --requests 32`; `--json` prints
//! one JSON object per concurrency level instead of the table. `--chat` sends each prompt
//! as one user message; `--extra FILE` merges a JSON object's members into every request
//! (e.g. a `response_format`, to measure constrained decoding under the same load).

use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use futures::StreamExt;
use serde_json::{Value, json};

/// Words prompts are drawn from.
const WORDS: &[&str] = &[
    "ledger", "market", "report", "quarter", "revenue", "account", "balance", "asset", "risk",
    "audit", "filing", "equity", "bond", "yield", "capital", "margin", "credit", "fund", "price",
    "trade", "client", "policy", "review", "note", "cash", "loan", "rate", "term",
];

struct Args {
    base_url: String,
    model: String,
    api_key: String,
    concurrency: Vec<usize>,
    requests: usize,
    input_words: usize,
    max_tokens: u32,
    json: bool,
    chat: bool,
    extra: serde_json::Map<String, Value>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        base_url: "http://127.0.0.1:8080/v1".into(),
        model: String::new(),
        api_key: "none".into(),
        concurrency: vec![1],
        requests: 32,
        input_words: 100,
        max_tokens: 128,
        json: false,
        chat: false,
        extra: serde_json::Map::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--json" => args.json = true,
            "--chat" => args.chat = true,
            _ => {}
        }
        if flag == "--json" || flag == "--chat" {
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--base-url" => args.base_url = value,
            "--model" => args.model = value,
            "--api-key" => args.api_key = value,
            "--requests" => args.requests = number(&value)?.max(1),
            "--input-words" => args.input_words = number(&value)?.max(1),
            "--max-tokens" => args.max_tokens = number(&value)?.max(1) as u32,
            "--extra" => {
                let text = std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?;
                match serde_json::from_str(&text).map_err(|e| format!("{value}: {e}"))? {
                    Value::Object(members) => args.extra = members,
                    _ => return Err(format!("--extra {value}: not a JSON object")),
                }
            }
            "--concurrency" => {
                args.concurrency = value.split(',').map(number).collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.model.is_empty() {
        return Err("--model is required".into());
    }
    Ok(args)
}

/// What one request measured.
#[derive(Debug, Default)]
struct Sample {
    ttft: Option<Duration>,
    itl: Vec<Duration>,
    e2el: Duration,
    prompt_tokens: u64,
    output_tokens: u64,
    ok: bool,
}

fn prompt(index: usize, words: usize) -> String {
    (0..words)
        .map(|i| WORDS[(index * 31 + i * 7 + i * i) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

async fn one(client: &Client<OpenAIConfig>, args: &Args, index: usize) -> Sample {
    let text = prompt(index, args.input_words);
    let mut request = json!({
        "model": args.model,
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    match args.chat {
        true => request["messages"] = json!([{"role": "user", "content": text}]),
        false => request["prompt"] = json!(text),
    }
    for (name, value) in &args.extra {
        request[name] = value.clone();
    }
    let mut sample = Sample::default();
    let start = Instant::now();
    let stream = match args.chat {
        true => {
            (client.chat())
                .create_stream_byot::<_, Value>(request)
                .await
        }
        false => {
            (client.completions())
                .create_stream_byot::<_, Value>(request)
                .await
        }
    };
    let Ok(mut stream) = stream else {
        return sample;
    };
    let mut last = start;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { return sample };
        let now = Instant::now();
        let choice = &chunk["choices"][0];
        let text = choice["text"]
            .as_str()
            .or(choice["delta"]["content"].as_str())
            .unwrap_or("");
        if !text.is_empty() {
            match sample.ttft {
                None => sample.ttft = Some(now - start),
                Some(_) => sample.itl.push(now - last),
            }
            last = now;
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            sample.prompt_tokens = usage["prompt_tokens"].as_u64().unwrap_or(0);
            sample.output_tokens = usage["completion_tokens"].as_u64().unwrap_or(0);
        }
    }
    sample.e2el = start.elapsed();
    sample.ok = sample.ttft.is_some() && sample.output_tokens > 0;
    sample
}

/// Mean, median and p99 in milliseconds (vLLM: numpy's linear-interpolated percentile).
fn stats(mut values: Vec<f64>) -> Value {
    if values.is_empty() {
        return json!(null);
    }
    values.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let at = p / 100.0 * (values.len() - 1) as f64;
        let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
        values[lo] + (values[hi] - values[lo]) * (at - lo as f64)
    };
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    json!({"mean": mean, "median": pct(50.0), "p99": pct(99.0)})
}

async fn level(client: &Client<OpenAIConfig>, args: &Args, concurrency: usize) -> Value {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let clients = (0..concurrency).map(|_| async {
        let mut samples = Vec::new();
        loop {
            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if index >= args.requests {
                return samples;
            }
            samples.push(one(client, args, index + 1).await);
        }
    });
    let samples: Vec<Sample> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    let duration = started.elapsed().as_secs_f64();
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.ok).collect();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let output: u64 = ok.iter().map(|s| s.output_tokens).sum();
    let input: u64 = ok.iter().map(|s| s.prompt_tokens).sum();
    json!({
        "concurrency": concurrency,
        "completed": ok.len(),
        "failed": samples.len() - ok.len(),
        "duration_s": duration,
        "request_throughput": ok.len() as f64 / duration,
        "output_throughput": output as f64 / duration,
        "total_token_throughput": (input + output) as f64 / duration,
        "mean_input_tokens": input as f64 / ok.len().max(1) as f64,
        "mean_output_tokens": output as f64 / ok.len().max(1) as f64,
        "ttft_ms": stats(ok.iter().filter_map(|s| s.ttft.map(ms)).collect()),
        "tpot_ms": stats(ok.iter().filter(|s| s.output_tokens > 1).map(|s| {
            (ms(s.e2el) - s.ttft.map_or(0.0, ms)) / (s.output_tokens - 1) as f64
        }).collect()),
        "itl_ms": stats(ok.iter().flat_map(|s| s.itl.iter().copied().map(ms)).collect()),
        "e2el_ms": stats(ok.iter().map(|s| ms(s.e2el)).collect()),
    })
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let config = OpenAIConfig::new()
        .with_api_base(&args.base_url)
        .with_api_key(&args.api_key);
    let client = Client::with_config(config);
    let warm = one(&client, &args, 0).await;
    if !warm.ok {
        eprintln!(
            "loadgen: the warm-up request failed against {}",
            args.base_url
        );
        std::process::exit(1);
    }
    if !args.json {
        println!(
            "{:>4} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8}",
            "conc",
            "done",
            "TTFT mean",
            "TTFT p99",
            "TPOT mean",
            "TPOT p99",
            "ITL mean",
            "ITL p99",
            "E2EL mean",
            "req/s",
            "out tok/s"
        );
    }
    for &concurrency in &args.concurrency {
        let r = level(&client, &args, concurrency.max(1)).await;
        if args.json {
            println!("{r}");
            continue;
        }
        let f = |k: &str, s: &str| r[k][s].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:>4} {:>5} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7.2} {:>8.1}",
            concurrency,
            r["completed"],
            f("ttft_ms", "mean"),
            f("ttft_ms", "p99"),
            f("tpot_ms", "mean"),
            f("tpot_ms", "p99"),
            f("itl_ms", "mean"),
            f("itl_ms", "p99"),
            f("e2el_ms", "mean"),
            r["request_throughput"].as_f64().unwrap_or(f64::NAN),
            r["output_throughput"].as_f64().unwrap_or(f64::NAN),
        );
    }
}
