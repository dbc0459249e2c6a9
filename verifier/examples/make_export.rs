//! Writes a synthetic `sworn-log-export` of N receipts (signed with a fixed test key) for
//! memory and throughput measurements of `sworn-verify audit`:
//!
//! ```sh
//! cargo run --release -p sworn-verifier --example make_export -- 100000 /tmp/export-100k.ndjson
//! sworn-verify audit /tmp/export-100k.ndjson --key "$(cat /tmp/export-100k.ndjson.vkey)" --json
//! ```

#[path = "../tests/synthetic.rs"]
mod synthetic;

use std::io::BufWriter;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().unwrap_or_else(|| "100000".into()).parse()?;
    let path = args.next().unwrap_or_else(|| format!("export-{n}.ndjson"));
    let file = std::fs::File::create(&path)?;
    synthetic::write_synthetic_export(n, BufWriter::with_capacity(1 << 20, file))?;
    let vkey = synthetic::synthetic_key()
        .pinned(synthetic::SYNTHETIC_ORIGIN)?
        .to_vkey();
    std::fs::write(format!("{path}.vkey"), format!("{vkey}\n"))?;
    eprintln!("wrote {n} entries to {path} (key in {path}.vkey)");
    Ok(())
}
