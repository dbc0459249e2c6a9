//! Receipt bodies and signatures (rows 1–4, 26, 27): other spellings of the same body
//! signed by the operator, version and schema confusion, an erasure event passed off as a
//! receipt, unsigned copies that contradict the signed body, and signature encodings a
//! lenient decoder would accept.
//!
//! A body the operator signed in a non-canonical spelling has a valid Ed25519 signature
//! under the pinned key: only the canonical-form check refuses it, and its leaf (computed
//! from the bytes given) is in no tree the log signed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::fixture::{ORIGIN, key};
use crate::mutate::{Vector, attacker, export_leaves, pretty, with_body};

/// `body` with `from` replaced once by `to`; the change must happen.
fn edit(body: &str, from: &str, to: &str) -> String {
    assert!(body.contains(from), "the body has no {from:?}");
    body.replacen(from, to, 1)
}

pub(crate) fn body_vectors(material: &Value) -> Vec<Vector> {
    let honest = &material["bundle"];
    let body = honest["receipt"]["body"].as_str().unwrap().to_string();
    let mut out = Vec::new();
    let mut add = |file: &str, row, title, failed: &[&'static str], f: &dyn Fn(&mut Value)| {
        let mut b = honest.clone();
        f(&mut b);
        out.push(Vector::receipt(file, row, title, failed, pretty(&b)));
    };
    let both = &["signature", "inclusion"][..];

    // Row 4: the same JSON value, spelled otherwise, signed by the operator.
    let resigned = |b: &mut Value, spelled: String| {
        assert_ne!(spelled, body);
        with_body(b, &spelled, &key());
    };
    add(
        "04b-body-escaped-solidus",
        4,
        "the body's origin spelled with an escaped solidus (`\\/`), signed by the log key",
        both,
        &|b| resigned(b, edit(&body, "example/vectors", "example\\/vectors")),
    );
    add(
        "04c-body-unicode-escape",
        4,
        "a letter of the request id spelled as a \\u escape, signed by the log key",
        both,
        &|b| {
            let spelled = edit(&body, "\"request_id\":\"r", "\"request_id\":\"\\u0072");
            resigned(b, spelled);
        },
    );
    add(
        "04d-body-float-tokens",
        4,
        "prompt tokens written 12.0 (the same number to a JSON reader), signed by the log key",
        both,
        &|b| resigned(b, edit(&body, "\"tokens\":12", "\"tokens\":12.0")),
    );
    add(
        "04e-body-exponent",
        4,
        "max_tokens written 6.4e1, signed by the log key",
        both,
        &|b| resigned(b, edit(&body, "\"max_tokens\":64", "\"max_tokens\":6.4e1")),
    );
    add(
        "04f-body-member-order",
        4,
        "`v` moved to the front of the body (member order is not RFC 8785's), signed by the log key",
        both,
        &|b| {
            let rest = body.strip_suffix(",\"v\":1}").unwrap();
            resigned(b, format!("{{\"v\":1,{}}}", &rest[1..]));
        },
    );
    add(
        "04g-body-trailing-newline",
        4,
        "the body with a trailing newline, signed by the log key",
        both,
        &|b| resigned(b, format!("{body}\n")),
    );
    add(
        "04h-body-uppercase-commitment",
        4,
        "the prompt commitment in upper-case hex (the same bytes to a lenient reader), signed by the log key",
        both,
        &|b| {
            let commitment = body.split("\"commitment\":\"").nth(1).unwrap()[..64].to_string();
            resigned(b, edit(&body, &commitment, &commitment.to_uppercase()));
        },
    );

    // Row 26: version, schema and kind confusion.
    add(
        "26-body-version-2",
        26,
        "a canonical body claiming `v` 2, signed by the log key",
        both,
        &|b| resigned(b, edit(&body, ",\"v\":1}", ",\"v\":2}")),
    );
    add(
        "26b-bundle-version-2",
        26,
        "the receipt JSON claims bundle version 2 over an honest body",
        &["signature"],
        &|b| b["receipt"]["v"] = json!(2),
    );
    add(
        "26c-body-unknown-member",
        26,
        "a canonical body with an extra member `approved: true`, signed by the log key",
        both,
        &|b| resigned(b, format!("{{\"approved\":true,{}", &body[1..])),
    );
    add(
        "26d-receipt-unknown-member",
        26,
        "the receipt JSON carries an unsigned `verified_by` member beside the honest body",
        &["signature"],
        &|b| b["receipt"]["verified_by"] = json!("sworn.example/auditor"),
    );
    add(
        "26e-body-mistyped-member",
        26,
        "prompt tokens as the string \"12\" in a canonical body, signed by the log key",
        both,
        &|b| resigned(b, edit(&body, "\"tokens\":12", "\"tokens\":\"12\"")),
    );
    add(
        "26f-receipt-mistyped-index",
        26,
        "the receipt JSON's index as the string \"6\"",
        &["signature"],
        &|b| b["receipt"]["index"] = json!(b["receipt"]["index"].to_string()),
    );
    // A real, signed, included entry of the log: but an erasure event, not a receipt.
    let erased = &material["erased"]["bundle"];
    let event = &erased["erasure"]["entry"];
    let mut confused = erased.clone();
    confused["receipt"] = json!({
        "v": 1, "log": ORIGIN, "index": event["index"], "leaf_hash": event["leaf_hash"],
        "body": event["body"], "signature": event["signature"], "salts": null,
    });
    confused["inclusion"] = erased["erasure"]["inclusion"].clone();
    confused.as_object_mut().unwrap().remove("erasure");
    out.push(Vector::receipt(
        "26g-erasure-as-receipt",
        26,
        "the log's signed erasure event, with its valid inclusion proof, presented as a receipt",
        &["signature"],
        pretty(&confused),
    ));
    let mut add = |file: &str, row, title, failed: &[&'static str], f: &dyn Fn(&mut Value)| {
        let mut b = honest.clone();
        f(&mut b);
        out.push(Vector::receipt(file, row, title, failed, pretty(&b)));
    };

    // Row 27: the receipt's unsigned copies contradict its signed body.
    add(
        "27-receipt-index-copy",
        27,
        "the receipt JSON's unsigned index says 5; the signed body and the proof say 6",
        both,
        &|b| b["receipt"]["index"] = json!(5),
    );
    let leaves = export_leaves(material);
    add(
        "27b-receipt-leaf-hash-copy",
        27,
        "the receipt JSON's unsigned leaf_hash is entry 5's (a dedup by leaf hash would merge them)",
        &["signature"],
        &|b| b["receipt"]["leaf_hash"] = json!(leaves[5].to_hex()),
    );

    // Rows 1–3: signature encodings and keys.
    let sig = BASE64
        .decode(honest["receipt"]["signature"].as_str().unwrap())
        .unwrap();
    add(
        "01c-signature-63-bytes",
        1,
        "the signature's last byte cut off",
        &["signature"],
        &|b| b["receipt"]["signature"] = json!(BASE64.encode(&sig[..63])),
    );
    add(
        "01d-signature-65-bytes",
        1,
        "a zero byte appended to the signature (its first 64 bytes verify)",
        &["signature"],
        &|b| {
            let mut longer = sig.clone();
            longer.push(0);
            b["receipt"]["signature"] = json!(BASE64.encode(longer));
        },
    );
    add(
        "01e-signature-unpadded-base64",
        1,
        "the signature's base64 without its `==` padding",
        &["signature"],
        &|b| {
            let text = BASE64.encode(&sig);
            b["receipt"]["signature"] = json!(text.trim_end_matches('='));
        },
    );
    add(
        "01f-signature-wrapped-base64",
        1,
        "the signature's base64 wrapped MIME-style with a newline inside",
        &["signature"],
        &|b| {
            let text = BASE64.encode(&sig);
            b["receipt"]["signature"] = json!(format!("{}\n{}", &text[..44], &text[44..]));
        },
    );
    add(
        "02b-same-key-other-origin",
        2,
        "a body naming another origin, signed by this log's own key (an operator reusing its key for two logs)",
        both,
        &|b| {
            let other = "sworn.example/other";
            with_body(b, &body.replace(ORIGIN, other), &key());
            b["receipt"]["log"] = json!(other);
        },
    );
    add(
        "02c-attacker-key-resigned-body",
        2,
        "the body edited (prompt tokens 12 → 13) and signed by an attacker's key, leaf hash updated",
        both,
        &|b| {
            with_body(
                b,
                &edit(&body, "\"tokens\":12", "\"tokens\":13"),
                &attacker(),
            )
        },
    );
    out
}
