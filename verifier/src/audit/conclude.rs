//! The end of an audit: what is missing, repeated request ids, and the anchor and
//! finality layers from what the stream reproduced.

use crate::chain::AnchoredEvent;
use crate::report::{Layer, Outcome, Report};

use super::auditor::Auditor;
use super::options::ChainView;
use super::outcome::{AuditError, AuditOutcome};

pub(super) fn finish(
    mut auditor: Auditor<'_>,
    chain: Option<&ChainView>,
) -> Result<AuditOutcome, AuditError> {
    if !auditor.ended {
        auditor.find(
            Layer::Log,
            "truncated",
            None,
            None,
            "the export has no end line: truncated".into(),
        );
    }
    let missing: Vec<(u64, u64)> = auditor.order.missing().collect();
    for (from, to) in missing {
        auditor.find(
            Layer::Log,
            "missing",
            None,
            Some(from),
            format!("entries {from}..{} never appear: dropped", to - 1),
        );
    }
    let finder = std::mem::take(&mut auditor.request_ids);
    let (duplicates, count) = finder.finish()?;
    let unreported = count.saturating_sub(duplicates.len() as u64);
    if unreported > 0 {
        auditor.find(
            Layer::Log,
            "duplicate-request-id",
            None,
            None,
            format!("{unreported} more repeated request ids past the reporting cap"),
        );
    }
    for d in duplicates {
        auditor.find(
            Layer::Log,
            "duplicate-request-id",
            None,
            Some(d.again),
            format!(
                "entry {} repeats the request id of entry {} (replay)",
                d.again, d.first
            ),
        );
    }
    let size = auditor.range.size();
    auditor.summary.root = auditor.range.root().to_hex();
    let mut report = Report::new("log");
    report.fact("origin", auditor.key.origin());
    if auditor.key.rotated() {
        report.fact(
            "keys",
            auditor
                .key
                .epochs()
                .iter()
                .map(|e| {
                    format!(
                        "key id {} from entry {}",
                        hex::encode(e.key.key_id()),
                        e.from_size
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    report.fact("entries", size.to_string());
    report.fact("root", auditor.summary.root.clone());
    let log_findings = auditor.findings.count_in(Layer::Log);
    report.set(
        Layer::Log,
        true,
        if auditor.findings.any_in(Layer::Log) {
            Outcome::Failed(format!("{log_findings} finding(s) in the entries and checkpoints"))
        } else {
            Outcome::Ok(format!(
                "{size} entries recomputed in order (no gap, duplicate or reorder), every signature strict under the pinned key (the key history's key for its index), request ids unique, {} checkpoint(s) reproduced",
                auditor.summary.checkpoints_reproduced
            ))
        },
    );
    match chain {
        None => {
            report.set(
                Layer::Anchor,
                false,
                Outcome::Skipped("no --rpc/--contract: anchors not checked".into()),
            );
            report.set(
                Layer::Finality,
                false,
                Outcome::Skipped("no --rpc/--contract".into()),
            );
        }
        Some(view) => chain_layers(&mut auditor, view, size, &mut report),
    }
    Ok(AuditOutcome {
        report,
        summary: auditor.summary,
        findings: auditor.findings,
    })
}

fn chain_layers(auditor: &mut Auditor<'_>, view: &ChainView, size: u64, report: &mut Report) {
    report.fact("chain", view.description.clone());
    auditor.summary.anchors = auditor.anchors.len() as u64;
    let mut by_seq: Vec<u64> = auditor.anchors.iter().map(|a| a.event.seq).collect();
    by_seq.sort_unstable();
    for (i, seq) in by_seq.iter().enumerate() {
        let expected = i as u64 + 1;
        if *seq != expected {
            auditor.find(
                Layer::Anchor,
                "seq-gap",
                None,
                None,
                format!("anchor seqs are not contiguous: found {seq} where {expected} belongs"),
            );
            break;
        }
    }
    for seq in &view.noncanonical {
        auditor.find(
            Layer::Anchor,
            "reorged",
            None,
            None,
            format!("anchor seq {seq}: its block is no longer canonical"),
        );
    }
    let pending: Vec<AnchoredEvent> = auditor.anchors.iter().map(|a| a.event.clone()).collect();
    let states: Vec<(Option<bool>, bool)> = auditor
        .anchors
        .iter()
        .map(|a| (a.root_ok, a.note_seen))
        .collect();
    let mut reproduced = 0;
    let mut not_final = 0;
    for (event, (root_ok, note_seen)) in pending.iter().zip(states) {
        match root_ok {
            None => auditor.find(
                Layer::Anchor,
                "beyond-export",
                None,
                Some(event.tree_size),
                format!("anchor seq {} covers {} entries; the export has only {size}: truncated or stale export", event.seq, event.tree_size),
            ),
            Some(true) if !note_seen => auditor.find(
                Layer::Anchor,
                "anchored-note-missing",
                None,
                Some(event.tree_size),
                format!("anchor seq {}: no checkpoint note in the export has its checkpoint hash {}", event.seq, event.checkpoint_hash),
            ),
            Some(true) => reproduced += 1,
            Some(false) => {}
        }
        if view.finalized.is_none_or(|f| event.block_number > f) {
            not_final += 1;
        }
    }
    auditor.summary.anchors_reproduced = reproduced;
    auditor.summary.anchors_final = auditor.summary.anchors - not_final;
    let anchor_findings = auditor.findings.count_in(Layer::Anchor);
    report.set(
        Layer::Anchor,
        true,
        if anchor_findings > 0 {
            Outcome::Failed(format!("{anchor_findings} finding(s) about anchors"))
        } else if auditor.anchors.is_empty() {
            Outcome::Pending("the log has no anchor on this contract yet".into())
        } else {
            Outcome::Ok(format!(
                "{reproduced} anchor(s), seqs 1..{} contiguous, each root reproduced at its size and its note present; successive anchors are consistent",
                auditor.anchors.len()
            ))
        },
    );
    report.set(
        Layer::Finality,
        true,
        match view.finalized {
            _ if auditor.anchors.is_empty() => Outcome::Skipped("no anchors".into()),
            None => Outcome::Pending("the endpoint reports no finalized block".into()),
            Some(f) if not_final == 0 => {
                Outcome::Ok(format!("every anchor is at or below finalized block {f}"))
            }
            Some(f) => Outcome::Pending(format!(
                "{not_final} newest anchor(s) above finalized block {f}"
            )),
        },
    );
}
