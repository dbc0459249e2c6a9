//! `sworn tokenize --model PATH`: stdin carries one JSON string per line; stdout gets one
//! JSON array of token ids per line, in order. Only the tokenizer is read, not the weights.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use sworn_service::engine::runner::read_tokenizer;

/// Longest input line accepted (bytes): a guard against a runaway producer, far above
/// any real prompt.
const MAX_LINE_BYTES: usize = 16 << 20;

#[derive(Debug, clap::Args)]
pub(crate) struct TokenizeArgs {
    /// GGUF file or Hugging Face checkpoint directory.
    #[arg(long, env = "SWORN_MODEL")]
    model: PathBuf,
    /// Do not add the tokenizer's special tokens (BOS) even where the model asks for them.
    #[arg(long)]
    no_special: bool,
}

pub(crate) fn run(args: &TokenizeArgs) -> Result<()> {
    let tokenizer = read_tokenizer(&args.model)
        .with_context(|| format!("loading the tokenizer of {}", args.model.display()))?;
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    for (number, line) in stdin.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", number + 1))?;
        if line.len() > MAX_LINE_BYTES {
            anyhow::bail!(
                "line {}: {} bytes exceed the limit of {MAX_LINE_BYTES}",
                number + 1,
                line.len()
            );
        }
        if line.trim().is_empty() {
            continue;
        }
        let text: String = serde_json::from_str(&line)
            .with_context(|| format!("line {}: expected one JSON string", number + 1))?;
        let ids = tokenizer
            .encode(&text, !args.no_special)
            .with_context(|| format!("line {}: tokenizing", number + 1))?;
        serde_json::to_writer(&mut stdout, &ids)?;
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    Ok(())
}
