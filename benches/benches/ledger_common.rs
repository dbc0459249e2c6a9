//! Shared by the ledger benches: a realistic append request and small helpers.

// Each bench binary includes this module and uses a different subset of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use sworn_ledger::keys::LogKey;
use sworn_ledger::receipt::{ModelInfo, ParamValue};
use sworn_ledger::{AppendRequest, LedgerConfig};

pub(crate) const ORIGIN: &str = "sworn.example/bench";

/// The allocator the `sworn` binary uses, so the ledger is measured as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A request shaped like a real chat completion: ~250 bytes of canonical prompt and
/// ~600 bytes of response unless `content` is false (then both are empty, to measure
/// the per-receipt overhead without content).
pub(crate) fn request(id: &str, content: bool) -> AppendRequest {
    let mut params = BTreeMap::new();
    params.insert("max_tokens".to_string(), ParamValue::Int(128));
    params.insert("seed".to_string(), ParamValue::Int(42));
    params.insert("temperature".to_string(), ParamValue::Str("0.7".into()));
    params.insert("top_p".to_string(), ParamValue::Str("0.95".into()));
    params.insert("stream".to_string(), ParamValue::Bool(false));
    let (prompt, response) = if content {
        (
            format!(
                "[{{\"content\":\"You are a careful assistant for a bank.\",\"role\":\"system\"}},\
                 {{\"content\":\"Summarise the attached trade confirmation {id} in three bullet points.\",\"role\":\"user\"}}]"
            )
            .into_bytes(),
            "- The trade settles T+2 in EUR.\n".repeat(20).into_bytes(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    AppendRequest {
        request_id: id.to_string(),
        tenant: "desk-fx-emea".into(),
        model: ModelInfo {
            id: "SmolLM2-135M-Instruct".into(),
            sha256: "9f".repeat(32),
            dtype: "bf16".into(),
            device: "cuda:0".into(),
            engine: "sworn 0.1.0".into(),
            libtorch: "2.11.0".into(),
        },
        params,
        prompt,
        prompt_tokens: 57,
        response,
        response_tokens: 128,
        finish_reason: "length".into(),
        time: time::OffsetDateTime::now_utc(),
    }
}

/// A ledger under `dir` (the store and its high-water record both inside it).
pub(crate) fn config(dir: &Path) -> LedgerConfig {
    let mut c = LedgerConfig::new(dir.join("ledger"), ORIGIN, LogKey::from_seed([7; 32]));
    c.sealer = true;
    // `SWORN_BENCH_SLED_CACHE_MIB` / `SWORN_BENCH_NODE_CACHE_MIB` override the two memory
    // settings (to see what memory follows them).
    let mib = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(m) = mib("SWORN_BENCH_SLED_CACHE_MIB") {
        c.cache_bytes = m * 1024 * 1024;
    }
    if let Some(m) = mib("SWORN_BENCH_NODE_CACHE_MIB") {
        c.node_cache_bytes = usize::try_from(m * 1024 * 1024).unwrap_or(usize::MAX);
    }
    c
}
