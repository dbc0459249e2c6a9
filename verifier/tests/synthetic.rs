//! Large exports without a store: entries signed with the ledger's own key and body code,
//! checkpoints from the ledger's compact range, written in `sworn-log-export` v1. For
//! memory and throughput measurements where going through sled would only add time.
//! (Shared by the tests, the bench and `examples/make_export.rs`.)

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;
use sworn_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use sworn_ledger::commitment::Commitment;
use sworn_ledger::keys::LogKey;
use sworn_ledger::merkle::{CompactRange, hash_leaf};
use sworn_ledger::receipt::{
    ModelInfo, ParamValue, PromptInfo, ReceiptBody, ReceiptKind, ResponseInfo,
};

/// Origin of synthetic logs.
pub(crate) const SYNTHETIC_ORIGIN: &str = "sworn.example/synthetic";
/// Seed of their key.
pub(crate) const SYNTHETIC_SEED: [u8; 32] = [0x42; 32];
/// A checkpoint every this many entries, as the sealer's default.
pub(crate) const CHECKPOINT_EVERY: u64 = 1024;

/// The synthetic log's key.
pub(crate) fn synthetic_key() -> LogKey {
    LogKey::from_seed(SYNTHETIC_SEED)
}

fn body(i: u64) -> Vec<u8> {
    let mut params = BTreeMap::new();
    params.insert("max_tokens".to_string(), ParamValue::Int(256));
    params.insert("temperature".to_string(), ParamValue::Str("0.7".into()));
    let micros = i % 1_000_000;
    ReceiptBody {
        v: 1,
        kind: ReceiptKind::Receipt,
        log: SYNTHETIC_ORIGIN.to_string(),
        index: i,
        time: format!(
            "2026-11-27T12:{:02}:{:02}.{micros:06}Z",
            (i / 60) % 60,
            i % 60
        ),
        request_id: format!("req-{i:012}"),
        tenant: "tenant-a".into(),
        model: ModelInfo {
            id: "SmolLM2-135M-Instruct".into(),
            sha256: "ab".repeat(32),
            dtype: "bf16".into(),
            device: "cuda:0".into(),
            engine: "sworn 0.1.0".into(),
            libtorch: "2.11.0".into(),
        },
        params,
        prompt: PromptInfo {
            commitment: Commitment(hash_leaf(&i.to_be_bytes()).0),
            tokens: 40 + i % 100,
        },
        response: ResponseInfo {
            commitment: Commitment(hash_leaf(&(!i).to_be_bytes()).0),
            tokens: 100 + i % 200,
            finish_reason: "stop".into(),
        },
    }
    .to_canonical_bytes()
    .expect("synthetic bodies are valid")
}

/// Writes an export of `n` receipts to `out`.
pub(crate) fn write_synthetic_export<W: Write>(n: u64, mut out: W) -> std::io::Result<()> {
    let key = synthetic_key();
    let vkey = key
        .pinned(SYNTHETIC_ORIGIN)
        .expect("valid origin")
        .to_vkey();
    let header = json!({"type": "header", "format": "sworn-log-export", "version": 1,
        "origin": SYNTHETIC_ORIGIN, "public_key": vkey, "size": n});
    writeln!(out, "{header}")?;
    let mut range = CompactRange::new();
    let mut checkpoints = 0u64;
    for i in 0..n {
        let body = body(i);
        let signature = BASE64.encode(key.sign(&body).to_bytes());
        range.push(hash_leaf(&body));
        let body = String::from_utf8(body).expect("canonical JSON is UTF-8");
        writeln!(
            out,
            "{}",
            json!({"type": "entry", "index": i, "body": body, "signature": signature})
        )?;
        if (i + 1) % CHECKPOINT_EVERY == 0 || i + 1 == n {
            let cp = Checkpoint::new(SYNTHETIC_ORIGIN, i + 1, range.root());
            let note = SignedCheckpoint::sign(cp, &key)
                .expect("valid checkpoint")
                .note;
            writeln!(
                out,
                "{}",
                json!({"type": "checkpoint", "size": i + 1, "note": note})
            )?;
            checkpoints += 1;
        }
    }
    writeln!(
        out,
        "{}",
        json!({"type": "end", "size": n, "checkpoints": checkpoints})
    )?;
    out.flush()
}
