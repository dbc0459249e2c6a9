//! Streaming audits of large exports: bounded memory (peak resident memory of the real
//! binary, measured by the binary itself from `/proc/self/status`) and exact counts.

use std::io::BufWriter;
use std::process::Command;

use serde_json::Value;
use sworn_ledger::key_history::KeyHistory;
use sworn_verifier::audit::{AuditOptions, audit_export};

use crate::synthetic::{SYNTHETIC_ORIGIN, synthetic_key, write_synthetic_export};

/// Audits a synthetic export of `n` entries with the real binary `runs` times; returns the
/// first report and the smallest peak resident memory seen.
fn audit_file_with_binary(n: u64, runs: usize) -> (Value, u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.ndjson");
    write_synthetic_export(n, BufWriter::new(std::fs::File::create(&path).unwrap())).unwrap();
    let vkey = synthetic_key().pinned(SYNTHETIC_ORIGIN).unwrap().to_vkey();
    let reports: Vec<Value> = (0..runs)
        .map(|_| {
            let out = Command::new(env!("CARGO_BIN_EXE_sworn-verify"))
                .args([
                    "audit",
                    path.to_str().unwrap(),
                    "--key",
                    &vkey,
                    "--json",
                    "--threads",
                    "2",
                ])
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let peak = reports
        .iter()
        .map(|r| r["summary"]["peak_rss_kib"].as_u64().unwrap())
        .min()
        .unwrap();
    (reports[0].clone(), peak)
}

#[test]
fn peak_memory_does_not_grow_with_the_export() {
    // Both sizes are past the request-id sort's in-memory run (16 Ki records), so any
    // difference would be memory that grows with the log. mimalloc's peak moves in steps
    // of about 2 MiB from run to run at the same size, so each size is audited twice and
    // the smaller peak kept.
    let (small, s) = audit_file_with_binary(20_000, 2);
    let (large, l) = audit_file_with_binary(200_000, 2);
    assert_eq!(small["summary"]["entries"], 20_000);
    assert_eq!(large["summary"]["entries"], 200_000);
    assert_eq!(large["summary"]["checkpoints_reproduced"], 196);
    eprintln!("peak resident memory: 20k entries {s} KiB, 200k entries {l} KiB");
    // Ten times the entries may cost at most allocator noise; holding even one 32-byte
    // leaf hash per entry would add ~5.5 MiB over the extra 180k entries.
    assert!(l <= s + 4 * 1024, "peak grew from {s} KiB to {l} KiB");
}

#[test]
fn one_thread_and_many_agree() {
    let mut export = Vec::new();
    write_synthetic_export(3_000, &mut export).unwrap();
    let key = synthetic_key().pinned(SYNTHETIC_ORIGIN).unwrap();
    let one = audit_export(
        &KeyHistory::single(key.clone()),
        &export[..],
        None,
        &AuditOptions {
            threads: 1,
            ..AuditOptions::default()
        },
    )
    .unwrap();
    let four = audit_export(
        &KeyHistory::single(key),
        &export[..],
        None,
        &AuditOptions {
            threads: 4,
            ..AuditOptions::default()
        },
    )
    .unwrap();
    assert_eq!(one.summary, four.summary);
    assert_eq!(one.findings.total, 0);
    assert_eq!(one.summary.receipts, 3_000);
    assert_eq!(one.summary.checkpoints, 3);
}

#[test]
fn a_real_ledger_export_with_an_erasure_audits_clean_and_a_forged_erasure_is_found() {
    let log = crate::fixture::TestLog::new();
    log.append_range(0, 5);
    log.ledger.erase("req-2").unwrap();
    log.ledger.seal_now().unwrap();
    let export = log.export();
    let key = log.ledger.public_key();
    let clean = audit_export(
        &KeyHistory::single(key.clone()),
        export.as_bytes(),
        None,
        &AuditOptions::default(),
    )
    .unwrap();
    assert_eq!(clean.findings.total, 0, "{:?}", clean.findings.kept);
    assert_eq!((clean.summary.receipts, clean.summary.erasures), (5, 1));
    // Point the erasure at entry 3 (re-signed by the operator): the leaf hash it carries
    // is entry 2's, so the reference is caught.
    let forged: Vec<String> = export
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if v["type"] == "entry" && v["body"].as_str().unwrap().contains("\"kind\":\"erasure\"")
            {
                let body = v["body"]
                    .as_str()
                    .unwrap()
                    .replace("\"index\":2,", "\"index\":3,");
                use base64::Engine as _;
                let sig = crate::fixture::key().sign(body.as_bytes());
                v["signature"] =
                    Value::from(base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()));
                v["body"] = Value::from(body);
            }
            v.to_string()
        })
        .collect();
    let forged = forged.join("\n") + "\n";
    let found = audit_export(
        &KeyHistory::single(key),
        forged.as_bytes(),
        None,
        &AuditOptions::default(),
    )
    .unwrap();
    assert!(
        found
            .findings
            .kept
            .iter()
            .any(|f| f.kind == "bad-erasure" && f.index == Some(5)),
        "{:?}",
        found.findings.kept
    );
}
