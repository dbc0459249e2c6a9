//! The negative test suite: provenance.md §7's bad inputs as named vector files under
//! `tests/vectors/`, each a real bundle (or export, or checkpoint) from the real ledger
//! with one mutation, each rejected by the layer it names.
//!
//! `material.json` is the honest material, made by the real ledger (sled in a temporary
//! directory, fixed key; salts are random, so it is made once and committed). Every
//! vector is a pure function of it (`mutate.rs`): a test checks the committed files are
//! exactly what the derivation gives, and another runs the whole suite again on fresh
//! material from a new ledger, so the vectors cannot drift from the ledger's code.
//!
//! Regenerate: `cargo test -p sworn-verifier --test tests -- --ignored regenerate_vectors`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sworn_verifier::audit::{AuditOptions, audit_export};
use sworn_verifier::cli::KeyArgs;
use sworn_verifier::commands::{content_of, runtime, verify_bundle_bytes};
use sworn_verifier::report::Report;
use sworn_verifier::state::{SeenCheckpoint, StateDir};
use sworn_verifier::trust::load_key;
use sworn_verifier::watch::{ConsistencyJson, check_checkpoint};

use crate::fixture::{TestLog, prompt, response, vkey};
use crate::mutate::{Vector, derive};

pub(crate) fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Honest material from a fresh real ledger: 7 receipts, checkpoints at 3 and 7, the
/// bundle of entry 6 (the last leaf of an unbalanced tree).
pub(crate) fn fresh_material() -> Value {
    let log = TestLog::new();
    log.append_range(0, 3);
    let old = log.ledger.latest_checkpoint().unwrap().unwrap();
    log.append_range(3, 7);
    let bundle = log.bundle(6);
    let sibling = log.ledger.inclusion_proof(5, 7).unwrap();
    let consistency = log.ledger.consistency_proof(3, 7).unwrap();
    json!({
        "origin": crate::fixture::ORIGIN,
        "vkey": vkey(),
        "bundle": bundle,
        "prompt": String::from_utf8(prompt(6)).unwrap(),
        "response": String::from_utf8(response(6)).unwrap(),
        "sibling_hashes": sibling.path.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
        "old_checkpoint": {
            "size": old.checkpoint.size,
            "root_hash": old.checkpoint.root.to_hex(),
            "note": old.note,
        },
        "consistency": {
            "old_size": 3,
            "new_size": 7,
            "old_root_hash": old.checkpoint.root.to_hex(),
            "new_root_hash": bundle["checkpoint"]["root_hash"],
            "hashes": consistency.path.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
        },
        "export": log.export(),
    })
}

fn manifest(vectors: &[Vector]) -> Value {
    json!(vectors
        .iter()
        .map(|v| json!({
            "file": v.file,
            "row": v.row,
            "title": v.title,
            "command": v.command,
            "failed_layers": v.failed,
            "outcomes": v.outcomes.iter().map(|(l, s)| json!({"layer": l, "status": s})).collect::<Vec<_>>(),
            "findings": v.findings.iter().map(|(k, i)| json!({"kind": k, "index": i})).collect::<Vec<_>>(),
            "needs_chain": v.needs_chain,
        }))
        .collect::<Vec<_>>())
}

fn write_all(material: &Value, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    std::fs::write(
        into.join("material.json"),
        serde_json::to_vec_pretty(material).unwrap(),
    )
    .unwrap();
    std::fs::write(
        into.join("key.vkey"),
        format!("{}\n", material["vkey"].as_str().unwrap()),
    )
    .unwrap();
    std::fs::write(
        into.join("honest.prompt"),
        material["prompt"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        into.join("honest.response"),
        material["response"].as_str().unwrap(),
    )
    .unwrap();
    let vectors = derive(material);
    for v in &vectors {
        std::fs::write(into.join(&v.file), &v.content).unwrap();
    }
    let mut m = serde_json::to_vec_pretty(&manifest(&vectors)).unwrap();
    m.push(b'\n');
    std::fs::write(into.join("manifest.json"), m).unwrap();
}

pub(crate) fn committed_material() -> Value {
    serde_json::from_slice(&std::fs::read(dir().join("material.json")).unwrap()).unwrap()
}

#[test]
#[ignore = "rewrites tests/vectors from a new ledger (random salts); run on purpose"]
fn regenerate_vectors() {
    write_all(&fresh_material(), &dir());
}

#[test]
fn committed_vectors_are_exactly_the_derived_ones() {
    let material = committed_material();
    let vectors = derive(&material);
    for v in &vectors {
        let on_disk =
            std::fs::read(dir().join(&v.file)).unwrap_or_else(|_| panic!("{} missing", v.file));
        assert!(
            on_disk == v.content,
            "{} differs from its derivation; regenerate",
            v.file
        );
    }
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(dir().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(on_disk, manifest(&vectors));
    let rows: BTreeSet<u32> = vectors.iter().map(|v| v.row).collect();
    // Every row of §7 has a vector here, except 14 (reorg), which needs a live chain and
    // is exercised by the Anvil tests.
    for row in (1..=24).filter(|r| *r != 14) {
        assert!(rows.contains(&row), "row {row} has no vector");
    }
}

/// Runs one vector and checks its expectations; returns a description of any mismatch.
pub(crate) fn run_vector(v: &Vector, material: &Value) -> Result<(), String> {
    let rt = runtime().unwrap();
    let vkey = material["vkey"].as_str().unwrap();
    let key_args = KeyArgs {
        key: Some(vkey.to_string()),
        from_chain: false,
        origin: None,
    };
    let report: Report = match v.command {
        "receipt" => verify_bundle_bytes(&v.content, &key_args, None, &rt).unwrap(),
        "content" => content_of(
            &v.content,
            material["prompt"].as_str().unwrap().as_bytes(),
            material["response"].as_str().unwrap().as_bytes(),
            Some(vkey),
            &rt,
        )
        .unwrap(),
        "checkpoint" => {
            let input: Value = serde_json::from_slice(&v.content).unwrap();
            let state_dir = tempfile::tempdir().unwrap();
            let state = StateDir::new(state_dir.path());
            let seen: SeenCheckpoint = serde_json::from_value(input["state"].clone()).unwrap();
            state.save(&seen).unwrap();
            let proof: Option<ConsistencyJson> =
                serde_json::from_value(input["consistency"].clone()).unwrap();
            let key = load_key(vkey).unwrap();
            let mut report = Report::new("checkpoint");
            check_checkpoint(
                input["note"].as_str().unwrap(),
                &key,
                &state,
                proof.as_ref(),
                &mut report,
            )
            .unwrap();
            report
        }
        "audit" => {
            let key = load_key(vkey).unwrap();
            let options = AuditOptions {
                dedup_run_records: 3,
                ..AuditOptions::default()
            };
            let outcome = audit_export(&key, &v.content[..], None, &options).unwrap();
            for (kind, index) in &v.findings {
                if !outcome
                    .findings
                    .kept
                    .iter()
                    .any(|f| f.kind == *kind && f.index == *index)
                {
                    return Err(format!(
                        "{}: no `{kind}` finding at {index:?}; got {:?}",
                        v.file, outcome.findings.kept
                    ));
                }
            }
            if v.findings.is_empty() && outcome.findings.total != 0 {
                return Err(format!(
                    "{}: unexpected findings {:?}",
                    v.file, outcome.findings.kept
                ));
            }
            outcome.report
        }
        other => return Err(format!("unknown command {other}")),
    };
    let failed: BTreeSet<&str> = report
        .layers
        .iter()
        .filter(|l| l.outcome.is_failed())
        .map(|l| l.layer.name())
        .collect();
    let expected: BTreeSet<&str> = v.failed.iter().copied().collect();
    if failed != expected {
        return Err(format!(
            "{}: failed layers {failed:?}, expected {expected:?}; report {report:#?}",
            v.file
        ));
    }
    for (layer, status) in &v.outcomes {
        let got = report
            .layers
            .iter()
            .find(|l| l.layer.name() == *layer)
            .map(|l| l.outcome.status());
        if got != Some(status) {
            return Err(format!(
                "{}: layer {layer} is {got:?}, expected {status}",
                v.file
            ));
        }
    }
    let expected_code = if v.failed.is_empty() { 0 } else { 1 };
    if report.exit_code() != expected_code {
        return Err(format!(
            "{}: exit code {}, expected {expected_code}",
            v.file,
            report.exit_code()
        ));
    }
    Ok(())
}

fn run_offline(material: &Value) {
    let vectors = derive(material);
    let errors: Vec<String> = vectors
        .iter()
        .filter(|v| !v.needs_chain)
        .filter_map(|v| run_vector(v, material).err())
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
}

#[test]
fn every_committed_vector_is_judged_by_the_layer_it_names() {
    run_offline(&committed_material());
}

#[test]
fn vectors_derived_from_a_fresh_ledger_are_judged_the_same() {
    run_offline(&fresh_material());
}

#[test]
fn a_weak_pinned_key_is_refused_at_load() {
    // The identity point has small order: `PinnedKey` refuses it, so no verification
    // can ever run under it (provenance.md §7 row 3, key side).
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(sworn_ledger::keys::PinnedKey::new(crate::fixture::ORIGIN, &identity).is_err());
    let mut typed = vec![1u8];
    typed.extend_from_slice(&identity);
    use base64::Engine as _;
    let vkey = format!(
        "{}+{}+{}",
        crate::fixture::ORIGIN,
        hex::encode(sworn_ledger::keys::note_key_id(
            crate::fixture::ORIGIN,
            &identity
        )),
        base64::engine::general_purpose::STANDARD.encode(typed)
    );
    assert!(load_key(&vkey).is_err());
}
