//! Log exports: ledger's line reader (`export::ExportReader`) and the auditor's whole-log
//! audit (`sworn_verifier::audit::audit_export`, one thread, no chain, pinned to the
//! verifier vectors' key) on arbitrary NDJSON.
//!
//! Invariants: every line the reader accepts reads back as the same line after being
//! written again; the audit ends in a report (never a panic) that renders, and its
//! summary never counts more receipts and erasures than entry lines.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sworn_ledger::export::{ExportLine, ExportReader};
use sworn_ledger::keys::PinnedKey;
use sworn_verifier::audit::{AuditOptions, audit_export};
use sworn_verifier::render;

const VECTORS_KEY: &str = include_str!("../../verifier/tests/vectors/key.vkey");

fn pinned() -> &'static PinnedKey {
    static KEY: OnceLock<PinnedKey> = OnceLock::new();
    KEY.get_or_init(|| PinnedKey::from_vkey(VECTORS_KEY.trim()).expect("vectors key"))
}

fn reread(line: &ExportLine) -> ExportLine {
    let mut text = serde_json::to_vec(line).expect("a line serialises");
    text.push(b'\n');
    ExportReader::new(text.as_slice())
        .next_line()
        .expect("a written line reads back")
        .expect("one line")
}

fuzz_target!(|data: &[u8]| {
    let mut reader = ExportReader::new(data);
    while let Ok(Some(line)) = reader.next_line() {
        assert_eq!(reread(&line), line);
    }
    let options = AuditOptions {
        threads: 1,
        progress: false,
        dedup_run_records: 16,
    };
    if let Ok(outcome) = audit_export(pinned(), data, None, &options) {
        let s = &outcome.summary;
        assert!(s.receipts + s.erasures <= s.entries, "{s:?}");
        let _ = (render::human_audit(&outcome), render::json_audit(&outcome));
    }
});
