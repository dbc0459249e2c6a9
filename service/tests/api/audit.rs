//! The audit routes: key, checkpoint, receipt with inclusion proof, consistency, anchors,
//! export (admin) and erasure (admin), checked with the ledger's verification code.

use serde_json::{Value, json};
use sworn_ledger::checkpoint::SignedCheckpoint;
use sworn_ledger::entry::{Receipt, ReceiptJson};
use sworn_ledger::merkle::{ConsistencyProof, Hash, InclusionProof};
use sworn_verifier::audit::{AuditOptions, audit_export};
use sworn_verifier::commands::{Disclosed, content_of, runtime};
use sworn_verifier::report::Layer;

use crate::answers::toy_server;
use crate::support::{ORIGIN, Options, Raw, TestServer, bearer, raw};

async fn get(server: &TestServer, path: &str, key: &str) -> Raw {
    let auth = bearer(key);
    raw(server.addr, "GET", path, &[("authorization", &auth)], b"").await
}

fn hashes(value: &Value) -> Vec<Hash> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::from_hex(h.as_str().unwrap()).unwrap())
        .collect()
}

async fn ask(server: &TestServer, key: &str, content: &str) -> (String, Value) {
    let body = json!({"model": "toy", "messages": [{"role": "user", "content": content}], "temperature": 0}).to_string();
    let auth = bearer(key);
    let response = raw(
        server.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(response.status, 200);
    (
        response.header("x-request-id").unwrap().to_string(),
        response.json(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_prove_inclusion_in_signed_checkpoints() {
    let server = toy_server(Options::default()).await;
    let user = server.user_key.clone();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(ask(&server, &user, &format!("q{i}")).await.0);
    }
    let key = get(&server, "/v1/audit/key", &user).await.json();
    assert_eq!(key["origin"], ORIGIN);
    let pinned = sworn_ledger::keys::PinnedKey::from_vkey(key["vkey"].as_str().unwrap()).unwrap();
    assert_eq!(
        pinned.public_key_bytes(),
        server.ledger.public_key().public_key_bytes()
    );

    let audit = get(&server, &format!("/v1/audit/receipts/{}", ids[3]), &user).await;
    assert_eq!(audit.status, 200);
    let audit = audit.json();
    let bundle: ReceiptJson = serde_json::from_value(audit["receipt"].clone()).unwrap();
    let receipt = Receipt::verify_bundle(&bundle, &pinned).unwrap();
    assert_eq!(receipt.body.request_id, ids[3]);
    let checkpoint = SignedCheckpoint::verify(
        audit["checkpoint"]["note"].as_str().unwrap(),
        &pinned,
        ORIGIN,
    )
    .unwrap();
    assert!(checkpoint.checkpoint.size > receipt.entry.index);
    let proof = InclusionProof {
        index: audit["inclusion"]["index"].as_u64().unwrap(),
        tree_size: audit["inclusion"]["tree_size"].as_u64().unwrap(),
        path: hashes(&audit["inclusion"]["hashes"]),
    };
    assert_eq!(proof.tree_size, checkpoint.checkpoint.size);
    proof
        .verify(&receipt.leaf_hash, &checkpoint.checkpoint.root)
        .unwrap();

    // Inclusion and consistency by number.
    let inclusion = get(&server, "/v1/audit/proof/inclusion?index=1&size=5", &user)
        .await
        .json();
    let leaf = server.ledger.entry(1).unwrap().unwrap().leaf_hash();
    let root = Hash::from_hex(inclusion["root_hash"].as_str().unwrap()).unwrap();
    InclusionProof {
        index: 1,
        tree_size: 5,
        path: hashes(&inclusion["hashes"]),
    }
    .verify(&leaf, &root)
    .unwrap();
    let consistency = get(&server, "/v1/audit/proof/consistency?old=2&new=5", &user)
        .await
        .json();
    ConsistencyProof {
        old_size: 2,
        new_size: 5,
        path: hashes(&consistency["hashes"]),
    }
    .verify(
        &Hash::from_hex(consistency["old_root_hash"].as_str().unwrap()).unwrap(),
        &Hash::from_hex(consistency["new_root_hash"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let beyond = get(&server, "/v1/audit/proof/inclusion?index=1&size=500", &user).await;
    assert_eq!(beyond.status, 400);
    let latest = get(&server, "/v1/audit/checkpoint", &user).await.json();
    SignedCheckpoint::verify(latest["note"].as_str().unwrap(), &pinned, ORIGIN).unwrap();
    let anchors = get(&server, "/v1/audit/anchors", &user).await.json();
    assert_eq!(anchors["anchoring"], false);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_receipts_and_admins_export_and_erase() {
    let server = toy_server(Options::default()).await;
    let (user, admin) = (server.user_key.clone(), server.admin_key.clone());
    let (mine, answer) = ask(&server, &user, "private").await;
    let (theirs, _) = ask(&server, &admin, "admin's").await;
    assert_eq!(
        get(&server, &format!("/v1/audit/receipts/{theirs}"), &user)
            .await
            .status,
        404
    );
    assert_eq!(
        get(&server, "/v1/audit/receipts/no-such-id", &user)
            .await
            .status,
        404
    );
    assert_eq!(
        get(&server, &format!("/v1/audit/receipts/{mine}"), &admin)
            .await
            .status,
        200
    );

    // Export: NDJSON that the auditor's own tool accepts.
    server.ledger.seal_now().unwrap();
    let export = get(&server, "/v1/audit/export", &admin).await;
    assert_eq!(export.status, 200);
    assert_eq!(export.header("content-type"), Some("application/x-ndjson"));
    let key = sworn_ledger::key_history::KeyHistory::single(server.ledger.public_key());
    let audited =
        audit_export(&key, export.body.as_slice(), None, &AuditOptions::default()).unwrap();
    assert_eq!(audited.report.exit_code(), 0, "{:?}", audited.findings);
    let summary = &audited.summary;
    assert_eq!(
        (summary.entries, summary.receipts, summary.erasures),
        (2, 2, 0)
    );
    assert_eq!(summary.root, server.ledger.root(2).unwrap().to_hex());

    // Erasure: content and salts go, the receipt still verifies and an event is appended.
    let auth = bearer(&admin);
    let erased = raw(
        server.addr,
        "POST",
        &format!("/v1/audit/erase/{mine}"),
        &[("authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(
        erased.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&erased.body)
    );
    assert_eq!(erased.json()["erased_index"], answer["sworn"]["index"]);
    let after = get(&server, &format!("/v1/audit/receipts/{mine}"), &user)
        .await
        .json();
    assert_eq!(after["receipt"]["salts"], Value::Null);
    let bundle: ReceiptJson = serde_json::from_value(after["receipt"].clone()).unwrap();
    Receipt::verify_bundle(&bundle, &server.ledger.public_key()).unwrap();
    // The auditor believes the erasure only from the signed event the bundle now carries
    // (proven to the bundle's checkpoint); the same bundle without it is a failed
    // commitment, since anyone can strip salts.
    assert!(after["erasure"]["entry"]["body"].is_string());
    let vkey = server.ledger.public_key().to_vkey();
    let with_event = serde_json::to_vec(&after).unwrap();
    let mut stripped = after.clone();
    stripped.as_object_mut().unwrap().remove("erasure");
    let stripped = serde_json::to_vec(&stripped).unwrap();
    let verdicts = tokio::task::spawn_blocking(move || {
        let rt = runtime().unwrap();
        [with_event, stripped].map(|b| {
            let disclosed = Disclosed {
                prompt: b"[]",
                response: b"x",
                response_format: None,
                tools: None,
            };
            content_of(&b, disclosed, Some(&vkey), &rt).unwrap()
        })
    })
    .await
    .unwrap();
    let commitment = |i: usize| verdicts[i].outcome(Layer::Commitment).map(|o| o.status());
    assert_eq!(commitment(0), Some("erased"), "{:?}", verdicts[0]);
    assert_eq!(verdicts[0].exit_code(), 0);
    assert_eq!(commitment(1), Some("failed"));
    assert_eq!(server.ledger.size(), 3);
    let again = raw(
        server.addr,
        "POST",
        &format!("/v1/audit/erase/{mine}"),
        &[("authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(again.status, 400);
    server.shutdown().await;
}
