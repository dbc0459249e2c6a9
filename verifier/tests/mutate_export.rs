//! Export mutations (provenance.md §7 rows 15 and 18, and the tamper list):
//! tamper one byte, drop an entry, reorder two, duplicate one, swap checkpoints, and a
//! replayed request id re-signed by a dishonest operator.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sworn_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use sworn_ledger::merkle::{CompactRange, hash_leaf};

use crate::fixture::{ORIGIN, key};
use crate::mutate::Vector;

/// Export lines: 0 header, 1..=3 entries 0..2, 4 checkpoint 3, 5..=8 entries 3..6,
/// 9 checkpoint 7, 10 end.
fn lines(material: &Value) -> Vec<String> {
    material["export"]
        .as_str()
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn entry_line(lines: &[String], index: u64) -> usize {
    lines
        .iter()
        .position(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["type"] == "entry" && v["index"] == index
        })
        .unwrap()
}

fn join(lines: &[String]) -> Vec<u8> {
    let mut s = lines.join("\n");
    s.push('\n');
    s.into_bytes()
}

fn vector(
    file: &str,
    row: u32,
    title: &'static str,
    findings: Vec<(&'static str, Option<u64>)>,
    content: Vec<u8>,
) -> Vector {
    Vector {
        file: format!("{file}.ndjson"),
        row,
        title,
        command: "audit",
        failed: if findings.is_empty() {
            vec![]
        } else {
            vec!["log"]
        },
        outcomes: vec![],
        findings,
        needs_chain: false,
        content,
    }
}

/// Re-signs every checkpoint line with the root of the entries before it (what a
/// dishonest operator holding the key would do to hide an edit).
fn reseal(lines: &mut [String]) {
    let mut range = CompactRange::new();
    for line in lines.iter_mut() {
        let mut v: Value = serde_json::from_str(line).unwrap();
        if v["type"] == "entry" {
            range.push(hash_leaf(v["body"].as_str().unwrap().as_bytes()));
        } else if v["type"] == "checkpoint" {
            let cp = Checkpoint::new(ORIGIN, range.size(), range.root());
            v["note"] = json!(SignedCheckpoint::sign(cp, &key()).unwrap().note);
            *line = serde_json::to_string(&v).unwrap();
        }
    }
}

pub(crate) fn export_vectors(material: &Value) -> Vec<Vector> {
    let honest = lines(material);
    let mut out = vec![vector(
        "18-export-honest",
        0,
        "the honest export",
        vec![],
        join(&honest),
    )];

    let mut l = honest.clone();
    let (a, b) = (entry_line(&l, 4), entry_line(&l, 5));
    l.swap(a, b);
    out.push(vector(
        "18b-export-reordered",
        18,
        "entries 4 and 5 swapped",
        vec![
            ("gap", Some(5)),
            ("reordered", Some(4)),
            ("checkpoint-root", Some(7)),
        ],
        join(&l),
    ));

    let mut l = honest.clone();
    l.remove(entry_line(&l, 4));
    out.push(vector(
        "18c-export-dropped",
        18,
        "entry 4 dropped",
        vec![
            ("gap", Some(5)),
            ("missing", Some(4)),
            ("misplaced-checkpoint", Some(7)),
            ("end-size", None),
        ],
        join(&l),
    ));

    let mut l = honest.clone();
    let at = entry_line(&l, 6);
    l.insert(at + 1, l[at].clone());
    out.push(vector(
        "18d-export-duplicated",
        18,
        "entry 6 present twice",
        vec![
            ("duplicate-index", Some(6)),
            ("misplaced-checkpoint", Some(7)),
            ("end-size", None),
        ],
        join(&l),
    ));

    let mut l = honest.clone();
    let checkpoints: Vec<usize> = l
        .iter()
        .enumerate()
        .filter(|(_, s)| s.contains("\"type\":\"checkpoint\""))
        .map(|(i, _)| i)
        .collect();
    l.swap(checkpoints[0], checkpoints[1]);
    out.push(vector(
        "18e-export-swapped-checkpoints",
        18,
        "the two checkpoint lines swapped",
        vec![
            ("misplaced-checkpoint", Some(7)),
            ("misplaced-checkpoint", Some(3)),
            ("checkpoint-order", Some(3)),
        ],
        join(&l),
    ));

    let mut l = honest.clone();
    let at = entry_line(&l, 3);
    l[at] = l[at].replacen("\\\"tokens\\\":12", "\\\"tokens\\\":13", 1);
    assert_ne!(l[at], honest[at], "the tamper must change the line");
    out.push(vector(
        "18f-export-tampered-byte",
        18,
        "one byte of entry 3's body changed",
        vec![("bad-entry", Some(3)), ("checkpoint-root", Some(7))],
        join(&l),
    ));

    let mut l = honest;
    let at = entry_line(&l, 5);
    let mut v: Value = serde_json::from_str(&l[at]).unwrap();
    let body = v["body"]
        .as_str()
        .unwrap()
        .replace("\"request_id\":\"req-5\"", "\"request_id\":\"req-4\"");
    v["signature"] = json!(BASE64.encode(key().sign(body.as_bytes()).to_bytes()));
    v["body"] = json!(body);
    l[at] = serde_json::to_string(&v).unwrap();
    reseal(&mut l);
    out.push(vector(
        "15b-export-replayed-request-id",
        15,
        "entry 5 re-signed by the operator with entry 4's request id, checkpoints re-sealed",
        vec![("duplicate-request-id", Some(5))],
        join(&l),
    ));
    out
}
