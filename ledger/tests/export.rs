//! The NDJSON export: written from a real store, audited with only the pinned key, and
//! every kind of tampering rejected with a typed error.

use sworn_ledger::Ledger;
use sworn_ledger::export::{ExportAuditor, ExportError, MAX_EXPORT_LINE_BYTES, write_export};
use sworn_ledger::keys::LogKey;

use crate::store::{ORIGIN, config, request};

fn exported() -> (Vec<String>, Ledger, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(config(dir.path())).unwrap();
    for i in 0..31 {
        ledger.append(request(&format!("x-{i}"))).unwrap();
        if i == 9 || i == 19 {
            ledger.seal_now().unwrap().unwrap();
        }
    }
    ledger.erase("x-4").unwrap();
    ledger.seal_now().unwrap().unwrap();
    let mut out = Vec::new();
    assert_eq!(write_export(&ledger, &mut out).unwrap(), (32, 3));
    let text = String::from_utf8(out).unwrap();
    let lines = text.lines().map(str::to_string).collect();
    (lines, ledger, dir)
}

fn audit(lines: &[String]) -> Result<sworn_ledger::export::ExportSummary, ExportError> {
    let key = LogKey::from_seed([5; 32]).pinned(ORIGIN).unwrap();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    ExportAuditor::audit(key, text.as_bytes())
}

#[test]
fn export_audits_with_only_the_pinned_key() {
    let (lines, ledger, _dir) = exported();
    assert_eq!(lines.len(), 1 + 32 + 3 + 1);
    let summary = audit(&lines).unwrap();
    assert_eq!(summary.size, 32);
    assert_eq!(summary.receipts, 31);
    assert_eq!(summary.erasures, 1);
    assert_eq!(summary.checkpoints, 3);
    assert_eq!(summary.last_checkpoint_size, Some(32));
    assert_eq!(summary.root, ledger.root(32).unwrap());
}

#[test]
fn every_tampering_is_rejected() {
    let (lines, _ledger, _dir) = exported();
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
    l[entry_line(8)] = l[entry_line(8)].replacen("\\\"tokens\\\":3", "\\\"tokens\\\":9", 1);
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
    for (name, l) in cases {
        assert!(audit(&l).is_err(), "{name} was accepted");
    }
    let other_key = LogKey::from_seed([6; 32]).pinned(ORIGIN).unwrap();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert!(ExportAuditor::audit(other_key, text.as_bytes()).is_err());
}
