//! A real log for the tests: the ledger's sled store in a temporary directory, a fixed
//! key, real appends, real checkpoints, the real export writer.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sworn_ledger::keys::LogKey;
use sworn_ledger::receipt::{ModelInfo, ParamValue};
use sworn_ledger::{AppendRequest, Ledger, LedgerConfig};
use time::OffsetDateTime;

/// The vectors' log origin.
pub(crate) const ORIGIN: &str = "sworn.example/vectors";
/// Seed of the vectors' log key (a test key: never use it for anything real).
pub(crate) const SEED: [u8; 32] = [0x5a; 32];

pub(crate) fn key() -> LogKey {
    LogKey::from_seed(SEED)
}

pub(crate) fn vkey() -> String {
    key().pinned(ORIGIN).unwrap().to_vkey()
}

pub(crate) fn prompt(i: u64) -> Vec<u8> {
    format!("[{{\"content\":\"What is {i} + {i}?\",\"role\":\"user\"}}]").into_bytes()
}

pub(crate) fn response(i: u64) -> Vec<u8> {
    format!("{} is the answer.", 2 * i).into_bytes()
}

pub(crate) fn request(i: u64) -> AppendRequest {
    let mut params = BTreeMap::new();
    params.insert("max_tokens".to_string(), ParamValue::Int(64));
    params.insert("temperature".to_string(), ParamValue::Str("0.7".into()));
    AppendRequest {
        request_id: format!("req-{i}"),
        tenant: "team-a".into(),
        model: ModelInfo {
            id: "SmolLM2-135M-Instruct".into(),
            sha256: "ab".repeat(32),
            dtype: "f32".into(),
            device: "cpu".into(),
            engine: "sworn 0.1.0".into(),
            libtorch: "2.11.0".into(),
        },
        params,
        prompt: prompt(i),
        prompt_tokens: 12,
        response: response(i),
        response_tokens: 5,
        finish_reason: "stop".into(),
        time: OffsetDateTime::from_unix_timestamp(1_790_000_000 + i as i64).unwrap(),
    }
}

/// A log on disk; dropped with its directory.
pub(crate) struct TestLog {
    pub(crate) ledger: Ledger,
    _dir: tempfile::TempDir,
}

impl TestLog {
    /// An empty log with the fixed key and no background sealer.
    pub(crate) fn new() -> TestLog {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LedgerConfig::new(dir.path().join("db"), ORIGIN, key());
        config.sealer = false;
        TestLog {
            ledger: Ledger::open(config).unwrap(),
            _dir: dir,
        }
    }

    /// Appends requests `from..to` and seals a checkpoint at the end.
    pub(crate) fn append_range(&self, from: u64, to: u64) {
        for i in from..to {
            self.ledger.append(request(i)).unwrap();
        }
        self.ledger.seal_now().unwrap();
    }

    /// The full bundle of `req-{i}` exactly as the server's
    /// `/v1/audit/receipts/{id}` builds it (proof to the newest checkpoint).
    pub(crate) fn bundle(&self, i: u64) -> Value {
        let receipt = self
            .ledger
            .receipt_by_request_id(&format!("req-{i}"))
            .unwrap()
            .unwrap();
        let checkpoint = self.ledger.latest_checkpoint().unwrap().unwrap();
        let proof = self
            .ledger
            .inclusion_proof(receipt.entry.index, checkpoint.checkpoint.size)
            .unwrap();
        json!({
            "receipt": receipt.to_json(),
            "inclusion": {
                "index": proof.index,
                "tree_size": proof.tree_size,
                "hashes": proof.path.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
            },
            "checkpoint": {
                "size": checkpoint.checkpoint.size,
                "root_hash": checkpoint.checkpoint.root.to_hex(),
                "note": checkpoint.note,
            },
        })
    }

    /// The bundle of an erased `req-{i}` exactly as the server builds it: the receipt
    /// without salts, and the signed erasure event with its own inclusion proof, both to
    /// the newest checkpoint.
    pub(crate) fn erased_bundle(&self, i: u64) -> Value {
        let mut bundle = self.bundle(i);
        assert!(
            bundle["receipt"]["salts"].is_null(),
            "req-{i} is not erased"
        );
        let index = bundle["receipt"]["index"].as_u64().unwrap();
        let at = self.ledger.erasure_of(index).unwrap().unwrap();
        let entry = self.ledger.entry(at).unwrap().unwrap();
        let size = bundle["checkpoint"]["size"].as_u64().unwrap();
        let proof = self.ledger.inclusion_proof(at, size).unwrap();
        bundle["erasure"] = json!({
            "entry": {
                "index": entry.index,
                "leaf_hash": entry.leaf_hash().to_hex(),
                "body": String::from_utf8(entry.body.clone()).unwrap(),
                "signature": BASE64.encode(entry.signature.to_bytes()),
            },
            "inclusion": {
                "index": proof.index,
                "tree_size": proof.tree_size,
                "hashes": proof.path.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
            },
        });
        bundle
    }

    /// The export, as text.
    pub(crate) fn export(&self) -> String {
        let mut out = Vec::new();
        sworn_ledger::export::write_export(&self.ledger, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }
}
