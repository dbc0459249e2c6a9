//! Human and JSON rendering of reports and audits. The human form prints every layer on
//! its own line with its status and what exactly was (or was not) checked, and never a
//! bare "valid".

use std::fmt::Write as _;

use serde_json::json;

use crate::audit::AuditOutcome;
use crate::report::Report;

/// Most findings printed in the human form (all are in `--json`, up to the kept cap).
const MAX_PRINTED_FINDINGS: usize = 200;

/// The human report.
pub fn human(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sworn-verify {}: {} (exit {})",
        report.subject,
        report.verdict().to_uppercase(),
        report.exit_code()
    );
    let width = report
        .facts
        .iter()
        .map(|f| f.label.len())
        .max()
        .unwrap_or(0);
    for fact in &report.facts {
        for (i, line) in fact.value.lines().enumerate() {
            let label = if i == 0 { fact.label.as_str() } else { "" };
            let _ = writeln!(out, "  {label:<width$}  {line}");
        }
    }
    let _ = writeln!(out);
    for l in &report.layers {
        let required = if l.required { "" } else { " (not required)" };
        let _ = writeln!(
            out,
            "  {:<12} {:<8} {}{required}",
            l.layer.name(),
            l.outcome.status(),
            l.outcome.detail()
        );
    }
    out
}

/// The JSON report.
pub fn json(report: &Report) -> serde_json::Value {
    json!({
        "subject": report.subject,
        "verdict": report.verdict(),
        "exit_code": report.exit_code(),
        "facts": report.facts,
        "layers": report.layers,
    })
}

/// The human audit: the report, a summary table, then every finding with its index.
pub fn human_audit(audit: &AuditOutcome) -> String {
    let mut out = human(&audit.report);
    let s = &audit.summary;
    let _ = writeln!(out);
    let _ = writeln!(out, "  {:<28} {:>12}", "summary", "count");
    for (label, value) in [
        ("entries", s.entries),
        ("receipts (verified)", s.receipts),
        ("erasure events (verified)", s.erasures),
        ("checkpoints", s.checkpoints),
        ("checkpoints reproduced", s.checkpoints_reproduced),
        ("anchors on chain", s.anchors),
        ("anchors reproduced", s.anchors_reproduced),
        ("anchors final", s.anchors_final),
        ("findings", audit.findings.total),
    ] {
        let _ = writeln!(out, "  {label:<28} {value:>12}");
    }
    if audit.findings.total > 0 {
        let _ = writeln!(out);
        let _ = writeln!(out, "  findings:");
        for f in audit.findings.kept.iter().take(MAX_PRINTED_FINDINGS) {
            let line = f.line.map_or(String::new(), |l| format!("line {l}, "));
            let index = f.index.map_or(String::new(), |i| format!("index {i}, "));
            let _ = writeln!(
                out,
                "  - [{}] {line}{index}{}: {}",
                f.layer.name(),
                f.kind,
                f.detail
            );
        }
        let shown = audit.findings.kept.len().min(MAX_PRINTED_FINDINGS) as u64;
        if audit.findings.total > shown {
            let _ = writeln!(
                out,
                "  … and {} more (see --json)",
                audit.findings.total - shown
            );
        }
    }
    out
}

/// The JSON audit.
pub fn json_audit(audit: &AuditOutcome) -> serde_json::Value {
    let mut value = json(&audit.report);
    value["summary"] = json!(audit.summary);
    value["findings"] = json!(audit.findings.kept);
    value["findings_total"] = json!(audit.findings.total);
    value
}
