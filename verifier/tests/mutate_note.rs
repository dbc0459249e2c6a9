//! Checkpoint notes inside bundles (rows 3, 12, 27, 28, 29): C2SP signed-note and
//! tlog-checkpoint texts a lenient parser would read as the honest checkpoint — extension
//! lines, other spellings of the size and root, a missing blank line, trailing data, CRLF,
//! control characters, non-UTF-8 — signature lines that should not count, and the
//! section's unsigned copies contradicting the note. Each fails the checkpoint layer (or,
//! for bytes that are not even JSON text, the bundle).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sworn_ledger::keys::note_key_id;
use sworn_ledger::merkle::hash_leaf;

use crate::fixture::{ORIGIN, key};
use crate::mutate::{Vector, attacker, hand_note, hash, non_canonical_s, pretty, signature_line};

pub(crate) fn note_vectors(material: &Value) -> Vec<Vector> {
    let honest = &material["bundle"];
    let note = honest["checkpoint"]["note"].as_str().unwrap().to_string();
    let size = honest["checkpoint"]["size"].as_u64().unwrap();
    let root = hash(&honest["checkpoint"]["root_hash"]);
    let (text, sig_line) = note.split_once("\n\n").unwrap();
    let text = format!("{text}\n");
    let sig_line = sig_line.strip_suffix('\n').unwrap().to_string();
    assert_eq!(text, format!("{ORIGIN}\n{size}\n{}\n", root.to_base64()));
    let mut out = Vec::new();
    let mut add = |file: &str, row, title, f: &dyn Fn(&mut Value)| {
        let mut b = honest.clone();
        f(&mut b);
        assert_ne!(&b, honest, "{file} must change the bundle");
        out.push(Vector::receipt(
            file,
            row,
            title,
            &["checkpoint"],
            pretty(&b),
        ));
    };
    let set_note = |b: &mut Value, n: String| b["checkpoint"]["note"] = json!(n);
    // A checkpoint text of the operator's making, signed with the log key.
    let signed_text = |b: &mut Value, t: String| set_note(b, hand_note(&t, ORIGIN, &key()));
    let b64 = |bytes: &[u8]| BASE64.encode(bytes);

    // Row 28: checkpoint texts, all signed by the log key.
    add(
        "28-extension-line",
        28,
        "a log-signed checkpoint with an extension line after the root",
        &|b| signed_text(b, format!("{text}batch 9 anchored\n")),
    );
    add(
        "28b-size-leading-zero",
        28,
        "a log-signed checkpoint whose size is written 07",
        &|b| signed_text(b, format!("{ORIGIN}\n0{size}\n{}\n", root.to_base64())),
    );
    add(
        "28c-size-plus-sign",
        28,
        "a log-signed checkpoint whose size is written +7",
        &|b| signed_text(b, format!("{ORIGIN}\n+{size}\n{}\n", root.to_base64())),
    );
    add(
        "28d-size-overflow",
        28,
        "a log-signed checkpoint whose size is 2^64 + 7 (7 to a wrapping reader)",
        &|b| {
            let wrapped = (1u128 << 64) + u128::from(size);
            signed_text(b, format!("{ORIGIN}\n{wrapped}\n{}\n", root.to_base64()));
        },
    );
    add(
        "28e-root-31-bytes",
        28,
        "a log-signed checkpoint whose root is the first 31 bytes of the real one",
        &|b| signed_text(b, format!("{ORIGIN}\n{size}\n{}\n", b64(&root.0[..31]))),
    );
    add(
        "28f-root-33-bytes",
        28,
        "a log-signed checkpoint whose root is the real one and a zero byte",
        &|b| {
            let mut long = root.0.to_vec();
            long.push(0);
            signed_text(b, format!("{ORIGIN}\n{size}\n{}\n", b64(&long)));
        },
    );
    add(
        "28g-root-as-hex",
        28,
        "a log-signed checkpoint whose root line is hex, not base64",
        &|b| signed_text(b, format!("{ORIGIN}\n{size}\n{}\n", root.to_hex())),
    );
    add(
        "28h-missing-blank-line",
        28,
        "the honest note without the blank line before its signature",
        &|b| set_note(b, note.replacen("\n\n", "\n", 1)),
    );
    add(
        "28i-trailing-data",
        28,
        "the honest note with a line of trailing data after its signature",
        &|b| set_note(b, format!("{note}witnessed: yes\n")),
    );
    add(
        "28j-crlf",
        28,
        "the honest note with CRLF line ends",
        &|b| set_note(b, note.replace('\n', "\r\n")),
    );
    add(
        "28k-control-character",
        28,
        "a log-signed checkpoint whose origin line ends in a tab (a trimming reader sees the origin)",
        &|b| {
            let t = format!("{ORIGIN}\t\n{size}\n{}\n", root.to_base64());
            set_note(b, format!("{t}\n{}\n", signature_line(&t, ORIGIN, &key())));
        },
    );
    add(
        "28m-hyphen-signature-line",
        28,
        "the honest signature line introduced by a hyphen instead of the em dash",
        &|b| set_note(b, note.replacen('\u{2014}', "-", 1)),
    );
    // Not UTF-8: an overlong encoding of '/' (0xC0 0xAF) in the note's origin, which a
    // lossy or lenient decoder turns back into the origin.
    let mut bytes = pretty(honest);
    let marker = format!("\"note\": \"{ORIGIN}");
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .unwrap()
        + marker.find('/').unwrap();
    bytes.splice(at..=at, [0xC0, 0xAF]);
    out.push(Vector::receipt(
        "28l-note-not-utf8",
        28,
        "the note's origin with an overlong UTF-8 encoding of '/' (the bundle is not UTF-8)",
        &["bundle"],
        bytes,
    ));
    let mut add = |file: &str, row, title, f: &dyn Fn(&mut Value)| {
        let mut b = honest.clone();
        f(&mut b);
        out.push(Vector::receipt(
            file,
            row,
            title,
            &["checkpoint"],
            pretty(&b),
        ));
    };

    // Rows 3 and 12: signature lines that must not count.
    add(
        "12d-two-signatures-one-forged",
        12,
        "the honest signature line, then a second line for the pinned key whose signature is forged",
        &|b| {
            let forged = signature_line(&text, ORIGIN, &attacker());
            let blob = BASE64.decode(forged.rsplit_once(' ').unwrap().1).unwrap();
            let mut claimed = note_key_id(ORIGIN, &key().public_key_bytes()).to_vec();
            claimed.extend_from_slice(&blob[4..]);
            let line = format!("\u{2014} {ORIGIN} {}", BASE64.encode(claimed));
            set_note(b, format!("{text}\n{sig_line}\n{line}\n"));
        },
    );
    add(
        "12e-unknown-signer-only",
        12,
        "the honest text signed only by a witness key the verifier does not pin",
        &|b| set_note(b, hand_note(&text, "sworn.example/witness", &attacker())),
    );
    add(
        "12f-pinned-name-wrong-key-id",
        12,
        "the honest signature under the pinned name, but with another key id",
        &|b| {
            let mut blob = BASE64.decode(sig_line.rsplit_once(' ').unwrap().1).unwrap();
            blob[0] ^= 0xff;
            set_note(
                b,
                format!("{text}\n\u{2014} {ORIGIN} {}\n", BASE64.encode(blob)),
            );
        },
    );
    add(
        "03b-note-non-canonical-s",
        3,
        "the note's signature with S + ℓ (the same checkpoint with another note hash)",
        &|b| {
            let blob = BASE64.decode(sig_line.rsplit_once(' ').unwrap().1).unwrap();
            let mut malleated = blob[..4].to_vec();
            malleated.extend_from_slice(&non_canonical_s(&blob[4..]));
            let line = format!("\u{2014} {ORIGIN} {}", BASE64.encode(malleated));
            set_note(b, format!("{text}\n{line}\n"));
        },
    );

    // Row 27: the section's unsigned copies contradict the signed note.
    add(
        "27c-checkpoint-size-copy",
        27,
        "the checkpoint section's unsigned size says 8; the signed note says 7",
        &|b| b["checkpoint"]["size"] = json!(size + 1),
    );
    add(
        "27d-checkpoint-root-copy",
        27,
        "the checkpoint section's unsigned root_hash is another root",
        &|b| b["checkpoint"]["root_hash"] = json!(hash_leaf(b"another root").to_hex()),
    );
    add(
        "27e-checkpoint-origin-copy",
        27,
        "the checkpoint section's unsigned origin names another log",
        &|b| b["checkpoint"]["origin"] = json!("sworn.example/other"),
    );
    add(
        "29h-checkpoint-size-mistyped",
        29,
        "the checkpoint section's size as the string \"7\"",
        &|b| b["checkpoint"]["size"] = json!(size.to_string()),
    );
    out
}
