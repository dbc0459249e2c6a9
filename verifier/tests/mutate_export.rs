//! Export mutations (rows 3, 12, 15, 17, 18, 20, 25, 27, 30): every order shape (drop,
//! reorder, duplicate, swap), tampering, framing (truncation, trailing data, a line over
//! the cap, a missing header, lines whose unsigned fields lie), forged and equivocating
//! checkpoint lines, a whole log re-signed under a small-order key, a replayed request id,
//! and erasure events that name what they cannot erase — the operator's versions
//! re-signed with the log key and re-sealed, so only the audit's own checks catch them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sworn_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use sworn_ledger::entry::ErasedRef;
use sworn_ledger::export::{ExportLine, MAX_EXPORT_LINE_BYTES};
use sworn_ledger::jcs;
use sworn_ledger::keys::note_key_id;
use sworn_ledger::merkle::{CompactRange, hash_leaf};

use crate::fixture::{ORIGIN, key};
use crate::mutate::{Vector, attacker, erasure_event, erasure_text, export_leaves, sign_b64};

/// Export lines: 0 header, 1..=3 entries 0..2, 4 checkpoint 3, 5..=8 entries 3..6,
/// 9 checkpoint 7, 10 entry 7 (the erasure event of entry 2), 11 checkpoint 8, 12 end.
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
        prompt: None,
        response: None,
    }
}

/// Re-signs every checkpoint line with the root of the entries before it (what a
/// dishonest operator holding the key would do to hide an edit).
fn reseal(lines: &mut [String]) {
    let mut range = CompactRange::new();
    for line in lines.iter_mut() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["type"] == "entry" {
            range.push(hash_leaf(v["body"].as_str().unwrap().as_bytes()));
        } else if v["type"] == "checkpoint" {
            let cp = Checkpoint::new(ORIGIN, range.size(), range.root());
            *line = checkpoint_line(
                range.size(),
                &SignedCheckpoint::sign(cp, &key()).unwrap().note,
            );
        }
    }
}

/// A checkpoint line as the export writer spells it.
fn checkpoint_line(size: u64, note: &str) -> String {
    serde_json::to_string(&ExportLine::Checkpoint {
        size,
        note: note.to_string(),
    })
    .unwrap()
}

/// An entry line as the export writer spells it.
fn entry_text(index: u64, body: &str, signature: &str) -> String {
    serde_json::to_string(&ExportLine::Entry {
        index,
        body: body.to_string(),
        signature: signature.to_string(),
    })
    .unwrap()
}

/// The line at `at` with `member` set to `value`.
fn set_member(lines: &mut [String], at: usize, member: &str, value: Value) {
    let mut v: Value = serde_json::from_str(&lines[at]).unwrap();
    v[member] = value;
    lines[at] = serde_json::to_string(&v).unwrap();
}

/// Positions of the checkpoint lines.
fn checkpoint_lines(lines: &[String]) -> Vec<usize> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, s)| s.contains("\"type\":\"checkpoint\""))
        .map(|(i, _)| i)
        .collect()
}

/// Appends an entry signed by the log key, with a checkpoint after it, and fixes the
/// header and end lines and every checkpoint: the export the operator would serve.
fn append_signed(lines: &mut Vec<String>, body: &str) {
    let end = lines.len() - 1;
    let size = export_size(lines);
    lines.insert(end, entry_text(size, body, &sign_b64(&key(), body)));
    lines.insert(end + 1, checkpoint_line(size + 1, ""));
    set_member(lines, 0, "size", json!(size + 1));
    let last = lines.len() - 1;
    let checkpoints = checkpoint_lines(lines).len();
    set_member(lines, last, "size", json!(size + 1));
    set_member(lines, last, "checkpoints", json!(checkpoints));
    reseal(lines);
}

fn export_size(lines: &[String]) -> u64 {
    let header: Value = serde_json::from_str(&lines[0]).unwrap();
    header["size"].as_u64().unwrap()
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
    out.extend(framing_vectors(material));
    out.extend(erasure_vectors(material));
    out
}

/// Order, framing and checkpoint lines.
fn framing_vectors(material: &Value) -> Vec<Vector> {
    let honest = lines(material);
    let mut out = Vec::new();
    let erasure = erasure_event(material);
    let checkpoints = checkpoint_lines(&honest);
    assert_eq!(checkpoints.len(), 3, "checkpoints at 3, 7 and 8");

    let mut l = honest.clone();
    l.remove(entry_line(&l, erasure.index));
    out.push(vector(
        "18g-export-dropped-erasure",
        18,
        "the erasure event dropped (the operator hides that it erased a record)",
        vec![
            ("misplaced-checkpoint", Some(erasure.index + 1)),
            ("end-size", None),
        ],
        join(&l),
    ));

    let mut l = honest.clone();
    l.remove(checkpoints[0]);
    out.push(vector(
        "18h-export-dropped-checkpoint",
        18,
        "the checkpoint line of size 3 dropped",
        vec![("end-checkpoints", None)],
        join(&l),
    ));

    let mut l = honest.clone();
    l.pop();
    out.push(vector(
        "18i-export-truncated",
        18,
        "the end line cut off",
        vec![("truncated", None)],
        join(&l),
    ));

    let mut l = honest.clone();
    l.push("PGP SIGNATURE: trust me".into());
    out.push(vector(
        "18j-export-trailing-garbage",
        18,
        "a line of non-JSON garbage after the end line",
        vec![("bad-line", None)],
        join(&l),
    ));

    let mut l = honest.clone();
    l.push(l[entry_line(&l, 0)].clone());
    out.push(vector(
        "18k-export-entry-after-end",
        18,
        "entry 0 again after the end line",
        vec![("after-end", None)],
        join(&l),
    ));

    let mut l = honest.clone();
    let at = entry_line(&l, 3);
    let mut v: Value = serde_json::from_str(&l[at]).unwrap();
    let padded = format!(
        "{}{}",
        v["body"].as_str().unwrap(),
        " ".repeat(MAX_EXPORT_LINE_BYTES)
    );
    v["body"] = json!(padded);
    l[at] = serde_json::to_string(&v).unwrap();
    assert!(l[at].len() > MAX_EXPORT_LINE_BYTES);
    out.push(vector(
        "18l-export-line-over-cap",
        18,
        "entry 3's line padded past the line cap (a reader without one buffers without bound)",
        vec![("unreadable", None), ("truncated", None)],
        join(&l),
    ));

    let mut l = honest.clone();
    l.remove(0);
    out.push(vector(
        "18m-export-no-header",
        18,
        "the header line removed",
        vec![("no-header", None), ("end-size", None)],
        join(&l),
    ));

    let mut l = honest.clone();
    set_member(&mut l, checkpoints[1], "size", json!(6));
    out.push(vector(
        "27i-export-checkpoint-size-lies",
        27,
        "the size-7 checkpoint line's unsigned size says 6",
        vec![("checkpoint-size", Some(6))],
        join(&l),
    ));

    let mut l = honest.clone();
    let at = entry_line(&l, 5);
    set_member(&mut l, at, "index", json!(4));
    out.push(vector(
        "27j-export-entry-index-lies",
        27,
        "entry 5's line claims index 4 (its signed body says 5)",
        vec![("duplicate-index", Some(4)), ("bad-entry", Some(4))],
        join(&l),
    ));

    let mut l = honest.clone();
    let at = entry_line(&l, 5);
    assert!(l[at].starts_with("{\"type\":\"entry\",\"index\":5,"));
    l[at] = l[at].replacen("\"index\":5,", "\"index\":4,\"index\":5,", 1);
    out.push(vector(
        "25k-export-entry-duplicate-member",
        25,
        "entry 5's line with `index` twice (4 first, 5 last)",
        vec![("bad-line", None), ("missing", Some(5))],
        join(&l),
    ));

    let mut l = honest.clone();
    set_member(&mut l, 0, "origin", json!("sworn.example/other"));
    out.push(vector(
        "20c-export-header-other-origin",
        20,
        "the header names another origin (the entries and notes are this log's)",
        vec![("wrong-origin", None)],
        join(&l),
    ));

    // A checkpoint line of size 5 with the right root, signed by an attacker.
    let leaves = export_leaves(material);
    let mut range = CompactRange::new();
    for leaf in &leaves[..5] {
        range.push(*leaf);
    }
    let forged = SignedCheckpoint::sign(Checkpoint::new(ORIGIN, 5, range.root()), &attacker())
        .unwrap()
        .note;
    let mut l = honest.clone();
    let at = entry_line(&l, 4);
    l.insert(at + 1, checkpoint_line(5, &forged));
    out.push(vector(
        "12g-export-forged-checkpoint-line",
        12,
        "a checkpoint line of size 5 with the true root, signed by an attacker",
        vec![("bad-checkpoint", Some(5)), ("end-checkpoints", None)],
        join(&l),
    ));

    // The operator signs a second size-7 checkpoint with another root.
    let fork = SignedCheckpoint::sign(
        Checkpoint::new(ORIGIN, 7, hash_leaf(b"a different history")),
        &key(),
    )
    .unwrap()
    .note;
    let mut l = honest.clone();
    l.insert(checkpoints[1] + 1, checkpoint_line(7, &fork));
    out.push(vector(
        "17f-export-equivocating-checkpoints",
        17,
        "two log-signed checkpoint lines of size 7 with different roots",
        vec![("checkpoint-order", Some(7)), ("checkpoint-root", Some(7))],
        join(&l),
    ));

    out.push(small_order_log(&honest));
    out
}

/// The whole log re-signed under a small-order public key: with A = R = the identity
/// point and S = 0, `[S]B = R + [k]A` holds for every message, so a verifier that took
/// the header's key and verified loosely would accept any body. Entry 3 is edited to show
/// it.
fn small_order_log(honest: &[String]) -> Vector {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut blob = identity.to_vec();
    blob.extend_from_slice(&[0u8; 32]);
    let signature = BASE64.encode(&blob);
    let mut typed = vec![1u8];
    typed.extend_from_slice(&identity);
    let vkey = format!(
        "{ORIGIN}+{}+{}",
        hex::encode(note_key_id(ORIGIN, &identity)),
        BASE64.encode(typed)
    );
    let mut l = honest.to_vec();
    set_member(&mut l, 0, "public_key", json!(vkey));
    let mut range = CompactRange::new();
    for line in l.iter_mut() {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["type"] == "entry" {
            let index = v["index"].as_u64().unwrap();
            let mut body = v["body"].as_str().unwrap().to_string();
            if index == 3 {
                body = body.replacen("\"tokens\":12", "\"tokens\":13", 1);
            }
            range.push(hash_leaf(body.as_bytes()));
            *line = entry_text(index, &body, &signature);
        } else if v["type"] == "checkpoint" {
            let text = Checkpoint::new(ORIGIN, range.size(), range.root()).to_text();
            let mut sig = note_key_id(ORIGIN, &identity).to_vec();
            sig.extend_from_slice(&blob);
            let note = format!("{text}\n\u{2014} {ORIGIN} {}\n", BASE64.encode(sig));
            *line = checkpoint_line(range.size(), &note);
        }
    }
    vector(
        "03c-export-small-order-key",
        3,
        "the whole log re-signed under a small-order key named in the header (R = identity, S = 0), entry 3 edited",
        vec![
            ("bad-entry", Some(0)),
            ("bad-entry", Some(3)),
            ("bad-checkpoint", Some(7)),
        ],
        join(&l),
    )
}

/// Erasure events the operator logs, re-signed and re-sealed.
fn erasure_vectors(material: &Value) -> Vec<Vector> {
    let honest = lines(material);
    let leaves = export_leaves(material);
    let event = erasure_event(material);
    let next = export_size(&honest);
    let mut out = Vec::new();
    let later = |erased: ErasedRef| {
        let mut e = event.clone();
        e.index = next;
        e.erased = erased;
        erasure_text(&e)
    };

    let mut l = honest.clone();
    append_signed(
        &mut l,
        &later(ErasedRef {
            index: event.index,
            leaf_hash: leaves[event.index as usize],
        }),
    );
    out.push(vector(
        "30l-export-erasure-of-erasure",
        30,
        "an erasure event appended that erases the erasure event 7 (re-signed, re-sealed)",
        vec![("bad-erasure", Some(next))],
        join(&l),
    ));

    let mut l = honest.clone();
    append_signed(&mut l, &later(event.erased.clone()));
    out.push(vector(
        "30m-export-erased-twice",
        30,
        "a second erasure event of entry 2 appended (re-signed, re-sealed)",
        vec![("bad-erasure", Some(next))],
        join(&l),
    ));

    let mut l = honest.clone();
    let mut wrong = event.clone();
    wrong.erased.leaf_hash = leaves[wrong.erased.index as usize + 1];
    let text = erasure_text(&wrong);
    let at = entry_line(&l, event.index);
    l[at] = entry_text(event.index, &text, &sign_b64(&key(), &text));
    reseal(&mut l);
    out.push(vector(
        "30n-export-erasure-wrong-leaf",
        30,
        "the erasure event rewritten to name entry 2 with entry 3's leaf hash (re-signed, re-sealed)",
        vec![("bad-erasure", Some(event.index))],
        join(&l),
    ));

    // An erasure of an entry after it: not a body the ledger would write, so built as
    // canonical JSON by hand.
    let mut l = honest;
    let mut value = serde_json::to_value(&event).unwrap();
    value["index"] = json!(next);
    value["erased"]["index"] = json!(next + 1);
    let text = String::from_utf8(jcs::canonicalize(&value).unwrap()).unwrap();
    append_signed(&mut l, &text);
    out.push(vector(
        "30o-export-erasure-of-later-entry",
        30,
        "an erasure event naming an entry after itself (signed by the log key, re-sealed)",
        vec![("bad-entry", Some(next))],
        join(&l),
    ));
    out
}
