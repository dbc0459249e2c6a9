//! `sworn generate`: load a model, generate for one prompt, stream the text to stdout and
//! print timing to stderr.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use sworn_service::engine::chat_template::ChatMessage;
use sworn_service::engine::generate::{DeviceChoice, DtypeChoice, Engine, EngineOptions};
use sworn_service::engine::sampling::SamplingRequest;

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
    /// Context positions to allocate (prompt + generated).
    #[arg(long, default_value_t = 2048)]
    max_ctx: usize,
    /// libtorch intra-op threads (default: what libtorch chose).
    #[arg(long)]
    threads: Option<i32>,
}

pub(crate) fn run(args: &GenerateArgs) -> Result<()> {
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
    let params = SamplingRequest {
        temperature: Some(args.temperature),
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
        max_tokens: Some(args.max_tokens),
        stop: args.stop.clone(),
    }
    .validate(MAX_TOKENS_LIMIT)?;

    let started = Instant::now();
    let options = EngineOptions {
        device,
        dtype,
        slots: 1,
        max_ctx: args.max_ctx,
    };
    let mut engine = Engine::load(&args.model, &options)
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

    let info = engine.info().clone();
    let seed = params.seed();
    let started = Instant::now();
    let mut first_token = None;
    let mut stdout = std::io::stdout().lock();
    let mut write_error = None;
    let output = engine.generate(&prompt, params, |event| {
        first_token.get_or_insert_with(|| started.elapsed());
        if let Err(e) = stdout
            .write_all(event.text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            write_error = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing to stdout");
    }
    writeln!(stdout)?;
    let total = started.elapsed();
    let ttft = first_token.unwrap_or(total);
    let decoded = output.completion_tokens.saturating_sub(1);
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
        output.prompt_tokens,
        ttft.as_secs_f64() * 1e3,
        output.prompt_tokens as f64 / ttft.as_secs_f64().max(1e-9),
        output.completion_tokens,
        if decode_secs > 0.0 {
            decoded as f64 / decode_secs
        } else {
            0.0
        },
        output.finish_reason.as_str(),
    );
    Ok(())
}
