//! The bundle's own shape (rows 25, 29) and completion response files (row 31).
//!
//! Duplicate member names are written so that the honest member comes *last*: a reader
//! that keeps the last (serde_json, Python, Go) verifies the honest document, while one
//! that keeps the first (or a UI that shows the first) sees the hostile one. I-JSON
//! refuses both readings, and so must the verifier: the bundle layer fails, nothing else
//! runs.
//!
//! A completion response (`{"id", "choices", "sworn"}`) carries the salts and the answer
//! text side by side, so its answer text must open the receipt's response commitment.

use serde_json::{Value, json};
use sworn_verifier::bundle::MAX_BUNDLE_BYTES;

use crate::fixture::{ORIGIN, key};
use crate::mutate::{Vector, attacker, pretty, sign_b64, sign_checkpoint, with_duplicate};

/// A chat completion response as the API returns it, with `sworn` as its receipt.
fn chat(answer: &str, sworn: &Value) -> Value {
    json!({
        "id": "chatcmpl-vectors",
        "object": "chat.completion",
        "model": "SmolLM2-135M-Instruct",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": answer}}],
        "sworn": sworn,
    })
}

/// A (legacy) text completion response.
fn text_completion(answer: &str, sworn: &Value) -> Value {
    json!({
        "id": "cmpl-vectors",
        "object": "text_completion",
        "model": "SmolLM2-135M-Instruct",
        "choices": [{"index": 0, "finish_reason": "stop", "text": answer}],
        "sworn": sworn,
    })
}

const EDITED: &str = "Approved: wire the full amount.";

pub(crate) fn bundle_vectors(material: &Value) -> Vec<Vector> {
    let honest = &material["bundle"];
    let receipt = &honest["receipt"];
    let body = receipt["body"].as_str().unwrap();
    let answer = material["response"].as_str().unwrap();
    let size = honest["checkpoint"]["size"].as_u64().unwrap();
    let bundle = |file, row, title, failed: &[&'static str], content| {
        Vector::receipt(file, row, title, failed, content)
    };
    let refused = &["bundle"][..];
    // A receipt of the attacker's making: the honest one with another request id, signed
    // by the attacker.
    let forged_body = body.replacen("\"request_id\":\"req-", "\"request_id\":\"forged-", 1);
    assert_ne!(forged_body, body);
    let mut forged = receipt.clone();
    forged["body"] = json!(forged_body);
    forged["signature"] = json!(sign_b64(&attacker(), &forged_body));
    let fork_note = sign_checkpoint(
        ORIGIN,
        size,
        sworn_ledger::merkle::hash_leaf(b"a different history"),
        &key(),
    );

    let mut out = vec![
        // Row 25: not I-JSON.
        bundle(
            "25-duplicate-receipt",
            25,
            "two `receipt` members: a forged one first, the honest one last",
            refused,
            with_duplicate(honest, "", "receipt", forged),
        ),
        bundle(
            "25b-duplicate-inclusion-index",
            25,
            "two `index` members inside `inclusion`: 5 first, the honest 6 last",
            refused,
            with_duplicate(honest, "/inclusion", "index", json!(5)),
        ),
        bundle(
            "25c-duplicate-body",
            25,
            "two `body` members inside `receipt`: a forged body first, the honest one last",
            refused,
            with_duplicate(honest, "/receipt", "body", json!(forged_body)),
        ),
        bundle(
            "25d-duplicate-note",
            25,
            "two `note` members inside `checkpoint`: a log-signed fork first, the honest note last",
            refused,
            with_duplicate(honest, "/checkpoint", "note", json!(fork_note)),
        ),
        bundle(
            "25e-duplicate-in-erasure-entry",
            25,
            "an erased bundle whose erasure entry has two `index` members (3 first, the real one last)",
            refused,
            with_duplicate(
                &material["erased"]["bundle"],
                "/erasure/entry",
                "index",
                json!(3),
            ),
        ),
        bundle(
            "25g-duplicate-answer-content",
            25,
            "a completion response whose message has two `content` members: an edited answer first, the honest one last",
            refused,
            with_duplicate(
                &chat(answer, receipt),
                "/choices/0/message",
                "content",
                json!(EDITED),
            ),
        ),
    ];
    // A lone surrogate: valid UTF-8 bytes, but no Unicode string. A reader that drops or
    // replaces it sees the pinned origin.
    let mut b = honest.clone();
    b["checkpoint"]["origin"] = json!(format!("{ORIGIN}@@"));
    let text = String::from_utf8(pretty(&b)).unwrap();
    let with_surrogate = text.replacen(&format!("{ORIGIN}@@"), &format!("{ORIGIN}\\udc00"), 1);
    assert_ne!(with_surrogate, text);
    out.push(bundle(
        "25f-lone-surrogate",
        25,
        "the checkpoint's origin copy ends in a lone surrogate \\udc00",
        refused,
        with_surrogate.into_bytes(),
    ));

    // Row 29: the shape.
    let mut b = honest.clone();
    b["witness"] = json!({"note": honest["checkpoint"]["note"], "verdict": "ok"});
    out.push(bundle(
        "29-unknown-section",
        29,
        "an unknown top-level section `witness` claiming a verdict",
        refused,
        pretty(&b),
    ));
    out.push(bundle(
        "29b-not-an-object",
        29,
        "the honest bundle wrapped in an array",
        refused,
        pretty(&json!([honest])),
    ));
    let mut big = pretty(honest);
    big.resize(MAX_BUNDLE_BYTES + 1, b' ');
    out.push(bundle(
        "29c-oversize",
        29,
        "the honest bundle padded with whitespace to one byte over the cap",
        refused,
        big,
    ));
    let mut b = honest.clone();
    let inc = honest["inclusion"].clone();
    b["inclusion"] = json!([inc["index"], inc["tree_size"], inc["hashes"]]);
    out.push(bundle(
        "29d-inclusion-as-array",
        29,
        "the inclusion section as an array [index, tree_size, hashes]",
        &["inclusion"],
        pretty(&b),
    ));
    let mut b = honest.clone();
    b["checkpoint"] = honest["checkpoint"]["note"].clone();
    out.push(bundle(
        "29e-checkpoint-as-string",
        29,
        "the checkpoint section as the bare note string",
        &["checkpoint"],
        pretty(&b),
    ));
    let mut b = honest.clone();
    b["receipt"] = json!(receipt.to_string());
    out.push(bundle(
        "29f-receipt-as-string",
        29,
        "the receipt as a JSON string holding the receipt JSON",
        &["signature"],
        pretty(&b),
    ));
    out.push(bundle(
        "29g-sworn-neither",
        29,
        "a completion response whose `sworn` is a string, neither a receipt nor a bundle",
        &["signature", "commitment"],
        pretty(&chat(answer, &json!("verified by sworn"))),
    ));
    let mut two = chat(answer, receipt);
    let mut second = two["choices"][0].clone();
    second["index"] = json!(1);
    second["message"]["content"] = json!(EDITED);
    two["choices"].as_array_mut().unwrap().push(second);
    out.push(bundle(
        "29i-two-choices",
        29,
        "a completion response with two answers under one receipt: the honest one and an edited one",
        refused,
        pretty(&two),
    ));

    // Row 31: completion response files.
    out.push(
        bundle(
            "31-completion-honest",
            31,
            "the honest chat completion response: its answer text opens the commitment",
            &[],
            pretty(&chat(answer, receipt)),
        )
        .expect("signature", "ok")
        .expect("commitment", "ok"),
    );
    out.push(
        bundle(
            "31b-completion-edited-answer",
            31,
            "a chat completion response whose answer was edited under its intact receipt",
            &["commitment"],
            pretty(&chat(EDITED, receipt)),
        )
        .expect("signature", "ok"),
    );
    out.push(
        bundle(
            "31c-text-completion-edited",
            31,
            "a text completion response (`choices[0].text`) whose answer was edited",
            &["commitment"],
            pretty(&text_completion(EDITED, receipt)),
        )
        .expect("signature", "ok"),
    );
    out.push(bundle(
        "31d-completion-answer-extended",
        31,
        "a chat completion response whose answer has a sentence appended",
        &["commitment"],
        pretty(&chat(&format!("{answer} Approved."), receipt)),
    ));
    let other = String::from_utf8(crate::fixture::response(5)).unwrap();
    assert_ne!(other, answer);
    out.push(bundle(
        "31e-completion-other-answer",
        31,
        "a chat completion response carrying another request's genuine answer under this receipt",
        &["commitment"],
        pretty(&chat(&other, receipt)),
    ));
    out.push(
        bundle(
            "31f-completion-full-bundle-edited",
            31,
            "a chat completion response whose `sworn` is the full bundle (proof and checkpoint hold) and whose answer was edited",
            &["commitment"],
            pretty(&chat(EDITED, honest)),
        )
        .expect("inclusion", "ok")
        .expect("checkpoint", "ok"),
    );
    out
}
