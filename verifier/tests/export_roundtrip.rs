//! The NDJSON export written by a real store and audited by the one export auditor
//! (`audit_export`) with nothing but the pinned key: the honest export passes with the
//! right counts and root, and every kind of tampering is a failed `log` layer. (This was
//! the ledger's second, test-only auditor; there is one auditor now, the verifier's.)

use sworn_ledger::export::MAX_EXPORT_LINE_BYTES;
use sworn_ledger::key_history::KeyHistory;
use sworn_ledger::keys::LogKey;
use sworn_verifier::audit::{AuditOptions, AuditOutcome, audit_export};
use sworn_verifier::report::EXIT_OK;

use crate::fixture::{ORIGIN, TestLog, key};

/// 31 receipts with checkpoints at 10 and 20, `req-4` erased (entry 31), sealed at 32.
fn exported() -> (Vec<String>, TestLog) {
    let log = TestLog::new();
    log.append_range(0, 10);
    log.append_range(10, 20);
    log.append_range(20, 31);
    log.ledger.erase("req-4").unwrap();
    log.ledger.seal_now().unwrap().unwrap();
    let lines = log.export().lines().map(str::to_string).collect();
    (lines, log)
}

fn audit_with(key: &sworn_ledger::keys::PinnedKey, lines: &[String]) -> AuditOutcome {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    audit_export(
        &KeyHistory::single(key.clone()),
        text.as_bytes(),
        None,
        &AuditOptions::default(),
    )
    .unwrap()
}

fn audit(lines: &[String]) -> AuditOutcome {
    audit_with(&key().pinned(ORIGIN).unwrap(), lines)
}

#[test]
fn export_audits_with_only_the_pinned_key() {
    let (lines, log) = exported();
    assert_eq!(lines.len(), 1 + 32 + 4 + 1);
    let outcome = audit(&lines);
    assert_eq!(
        outcome.report.exit_code(),
        EXIT_OK,
        "{:?}",
        outcome.findings
    );
    let s = &outcome.summary;
    assert_eq!((s.entries, s.receipts, s.erasures), (32, 31, 1));
    assert_eq!((s.checkpoints, s.checkpoints_reproduced), (4, 4));
    assert_eq!(s.root, log.ledger.root(32).unwrap().to_hex());
}

#[test]
fn every_tampering_is_rejected() {
    let (lines, _log) = exported();
    let entry_line = |i: usize| 1 + i + usize::from(i >= 10) + usize::from(i >= 20);
    assert!(lines[entry_line(12)].contains("\"index\":12"));
    let mut cases: Vec<(&str, Vec<String>)> = Vec::new();
    let mut l = lines.clone();
    l.remove(entry_line(5));
    cases.push(("dropped entry", l));
    let mut l = lines.clone();
    l.swap(entry_line(2), entry_line(3));
    cases.push(("reordered entries", l));
    let mut l = lines.clone();
    l.insert(entry_line(7), lines[entry_line(7)].clone());
    cases.push(("duplicated entry", l));
    let mut l = lines.clone();
    l[entry_line(8)] = l[entry_line(8)].replacen("\\\"tokens\\\":5", "\\\"tokens\\\":9", 1);
    assert_ne!(l[entry_line(8)], lines[entry_line(8)]);
    cases.push(("edited body", l));
    let mut l = lines.clone();
    l.pop();
    cases.push(("truncated (no end line)", l));
    let mut l = lines.clone();
    l[0] = l[0].replacen(ORIGIN, "sworn.example/other", 1);
    cases.push(("other origin in header", l));
    let mut l = lines.clone();
    let cp = l.remove(entry_line(10) - 1);
    l.insert(entry_line(12), cp);
    cases.push(("checkpoint moved", l));
    let mut l = lines.clone();
    l.retain(|line| !line.contains("\"type\":\"checkpoint\"") || !line.contains("\"size\":20"));
    cases.push(("checkpoint dropped (end count)", l));
    let mut l = lines.clone();
    l.insert(3, "{\"type\":\"entry\"".to_string());
    cases.push(("garbage line", l));
    let mut l = lines.clone();
    l.insert(3, "x".repeat(MAX_EXPORT_LINE_BYTES + 1));
    cases.push(("overlong line", l));
    let mut l = lines.clone();
    l.push(lines[1].clone());
    cases.push(("data after end", l));
    let mut l = lines.clone();
    l.remove(0);
    cases.push(("no header", l));
    let mut l = lines.clone();
    l[entry_line(3)] = l[entry_line(3)].replacen("\"index\":3", "\"index\":3,\"index\":3", 1);
    cases.push(("duplicate member in an entry line", l));
    for (name, l) in cases {
        assert_ne!(audit(&l).report.exit_code(), EXIT_OK, "{name} was accepted");
    }
    let other_key = LogKey::from_seed([6; 32]).pinned(ORIGIN).unwrap();
    assert_ne!(audit_with(&other_key, &lines).report.exit_code(), EXIT_OK);
}
