//! `sworn generate`: load a model, generate for one prompt, stream the text to stdout and
//! print timing to stderr.
//!
//! The prompt goes through the server's own path: a one-slot [`Scheduler`] over the engine,
//! so stop strings, `max_tokens` and the streamed text are exactly what a served request
//! gets.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sworn_service::engine::chat_template::ChatMessage;
use sworn_service::engine::cuda_graph::CudaGraphs;
use sworn_service::engine::runner::{
    DeviceChoice, DtypeChoice, Engine, EngineOptions, WeightsChoice,
};
use sworn_service::engine::sampling::{SamplingParams, SamplingRequest, applied_value};
use sworn_service::scheduler::Scheduler;
use sworn_service::scheduler::engine_adapter::EngineGenerator;
use sworn_service::scheduler::request::{FinishReason, GenerationEvent, GenerationRequest};

/// Most tokens `--max-tokens` may ask for.
const MAX_TOKENS_LIMIT: u32 = 1 << 16;

#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// GGUF file or Hugging Face checkpoint directory.
    #[arg(long, env = "SWORN_MODEL")]
    model: PathBuf,
    /// The prompt text.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt as one user message in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling mass, in (0, 1].
    #[arg(long)]
    top_p: Option<f64>,
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    top_k: Option<u32>,
    /// Seed for sampling (random when absent; printed to stderr).
    #[arg(long)]
    seed: Option<u64>,
    /// Stop when this string appears (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// `auto` (CUDA if present), `cpu`, `cuda` (device 0) or `cuda:N`.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Compute dtype: `auto` (f32 on CPU, bf16 on CUDA), `f32` or `bf16`.
    #[arg(long, default_value = "auto")]
    dtype: String,
    /// Linear weights: `auto`, `dense` (a GGUF's 4-bit weights dequantised to the compute
    /// dtype: the exact mode) or `int4` (kept 4-bit, libtorch's int4 CPU kernel).
    #[arg(long, default_value = "auto")]
    weights: WeightsChoice,
    /// Context positions to allocate (prompt + generated).
    #[arg(long, default_value_t = 2048)]
    max_ctx: usize,
    /// The decode step as CUDA graphs, on CUDA: `auto` (when the CUDA-graph shim loads
    /// and the capture succeeds, else eager), `on` (or refuse to start) or `off`.
    #[arg(long, default_value = "auto")]
    cuda_graphs: CudaGraphs,
    /// libtorch intra-op threads (default: what libtorch chose).
    #[arg(long)]
    threads: Option<i32>,
}

pub(crate) fn run(args: &GenerateArgs) -> Result<()> {
    // The engine thread reports a failed step in its log: show errors (only) on stderr.
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::ERROR)
        .with_writer(std::io::stderr)
        .try_init();
    if let Some(threads) = args.threads {
        tch::set_num_threads(threads.max(1));
    }
    let device = match args.device.as_str() {
        "auto" => DeviceChoice::Auto,
        "cpu" => DeviceChoice::Cpu,
        "cuda" => DeviceChoice::Cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse) {
            Some(Ok(n)) => DeviceChoice::Cuda(n),
            _ => anyhow::bail!("--device must be auto, cpu, cuda or cuda:N, got `{other}`"),
        },
    };
    let dtype = match args.dtype.as_str() {
        "auto" => DtypeChoice::Auto,
        "f32" => DtypeChoice::Float32,
        "bf16" => DtypeChoice::BFloat16,
        other => anyhow::bail!("--dtype must be auto, f32 or bf16, got `{other}`"),
    };
    // Request floats follow the server's rule: applied as the shortest decimal of their f32.
    let params = SamplingRequest {
        temperature: Some(applied_value(args.temperature as f32)),
        top_p: args.top_p.map(|p| applied_value(p as f32)),
        top_k: args.top_k.map(u64::from),
        seed: args.seed,
        max_tokens: Some(args.max_tokens),
        stop: args.stop.clone(),
    }
    .validate(MAX_TOKENS_LIMIT)?;

    let started = Instant::now();
    let options = EngineOptions {
        device,
        dtype,
        weights: args.weights,
        slots: 1,
        max_ctx: args.max_ctx,
        cuda_graphs: args.cuda_graphs,
    };
    let engine = Engine::load_on_own_thread(&args.model, &options)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let load_time = started.elapsed();

    let prompt = if args.chat {
        let template = engine
            .chat_template()
            .context("--chat: the model has no chat template")?;
        let text = template.render(&[ChatMessage::new("user", args.prompt.clone())], true)?;
        engine.tokenizer().encode(&text, false)?
    } else {
        engine.tokenizer().encode(&args.prompt, true)?
    };

    // The engine's own check, before the engine thread takes it: its message names the
    // limit and the prompt's length.
    engine.check_prompt(&prompt)?;
    let info = engine.info().clone();
    let seed = params.seed();
    let prompt_tokens = prompt.len();
    let answer = run_one(engine, generation_request(prompt, &params))?;
    let total = answer.total;
    let ttft = answer.first_text.map_or(total, |(at, _)| at);
    // Tokens decoded after the first streamed text (usually the first token).
    let decoded = answer
        .completion_tokens
        .saturating_sub(answer.first_text.map_or(1, |(_, tokens)| tokens));
    let decode_secs = (total - ttft).as_secs_f64();
    eprintln!(
        "model {} ({}, {} on {}, sha256 {}), loaded in {:.2} s",
        info.id,
        info.architecture,
        info.dtype,
        info.device,
        info.sha256,
        load_time.as_secs_f64()
    );
    eprintln!(
        "prompt {} tokens, prefill {:.1} ms ({:.1} tok/s); completion {} tokens, decode {:.1} tok/s; finish {}; seed {seed}",
        prompt_tokens,
        ttft.as_secs_f64() * 1e3,
        prompt_tokens as f64 / ttft.as_secs_f64().max(1e-9),
        answer.completion_tokens,
        if decode_secs > 0.0 {
            decoded as f64 / decode_secs
        } else {
            0.0
        },
        answer.finish.as_str(),
    );
    Ok(())
}

/// The scheduler's request for `prompt` under validated sampling `params`.
fn generation_request(prompt: Vec<u32>, params: &SamplingParams) -> GenerationRequest {
    GenerationRequest {
        prompt_tokens: prompt,
        params: params.clone(),
        constraint: None,
        enqueued_at: Instant::now(),
        choices: 1,
    }
}

/// How one generation went, as `sworn generate` reports it.
struct Answer {
    /// Time from submission to the first streamed text, with the tokens generated by then.
    first_text: Option<(Duration, u32)>,
    /// Time from submission to the end.
    total: Duration,
    completion_tokens: u32,
    finish: FinishReason,
}

/// Runs `request` on `engine` behind a one-slot scheduler, writing its text to stdout as it
/// streams. The engine thread is joined before this returns.
fn run_one(engine: Engine, request: GenerationRequest) -> Result<Answer> {
    let (scheduler, engine_thread) =
        Scheduler::start(EngineGenerator::new(engine), 1).context("starting the engine thread")?;
    let started = Instant::now();
    let streamed = scheduler
        .submit(request)
        .context("submitting the prompt")
        .and_then(|mut events| stream_to_stdout(&mut events, started));
    // Dropping the last handle (and any receiver, which cancels) lets the thread return.
    drop(scheduler);
    engine_thread.join();
    let answer = streamed?;
    if answer.finish == FinishReason::Error {
        anyhow::bail!("generation failed in the engine (see the error above)");
    }
    Ok(answer)
}

/// Writes each text event to stdout until `Finished`; a failed write cancels generation.
fn stream_to_stdout(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<GenerationEvent>,
    started: Instant,
) -> Result<Answer> {
    let mut stdout = std::io::stdout().lock();
    let mut first_text = None;
    loop {
        match events.blocking_recv() {
            Some(GenerationEvent::Started { .. }) => {}
            Some(GenerationEvent::Text { text, tokens, .. }) => {
                first_text.get_or_insert((started.elapsed(), tokens));
                stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush())
                    .context("writing to stdout")?;
            }
            Some(GenerationEvent::Finished {
                reason,
                completion_tokens,
            }) => {
                if reason != FinishReason::Error {
                    writeln!(stdout)?;
                }
                return Ok(Answer {
                    first_text,
                    total: started.elapsed(),
                    completion_tokens,
                    finish: reason,
                });
            }
            None => anyhow::bail!("the engine thread stopped before the answer finished"),
        }
    }
}
