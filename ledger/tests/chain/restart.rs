//! Restarts: the anchorer resumes from its records without anchoring a seq twice or
//! skipping one, and its nonces stay right.

use alloy::primitives::B256;
use alloy::providers::{Provider, ProviderBuilder};
use sworn_ledger::anchor::{AnchorRecord, AnchorState, AnchorStore, log_id};

use crate::node::{DEV_KEY_0, deploy_registered, mine, signer, start_anvil};
use crate::{config, grow_and_seal, log_key, open_ledger, records, spawn, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_while_submitted_follows_the_same_transaction() {
    let anvil = start_anvil(&[]);
    let deployment =
        deploy_registered(&anvil.url, crate::ORIGIN, log_key().public_key_bytes()).await;
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    let sender = signer(DEV_KEY_0).address();
    let nonce_before = provider.get_transaction_count(sender).await.unwrap();
    // Hold transactions in the pool, so the anchor is submitted but not included.
    let _: serde_json::Value = provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path());
    grow_and_seal(&ledger, 30).await;
    let handle = spawn(config(&anvil.url, &deployment), DEV_KEY_0, &ledger);
    let mut rx = handle.subscribe();
    wait_for(&mut rx, "seq 1 submitted", |s| {
        s.current == Some((1, AnchorState::Submitted))
    })
    .await;
    handle.shutdown().await;
    let pending_tx = records(&ledger)[0].tx_hash;

    // Restart on the reopened store, with a bigger checkpoint waiting.
    drop(ledger);
    let ledger = open_ledger(dir.path());
    grow_and_seal(&ledger, 45).await;
    let handle = spawn(config(&anvil.url, &deployment), DEV_KEY_0, &ledger);
    let mut rx = handle.subscribe();
    mine(&provider, 1).await;
    wait_for(&mut rx, "seq 1 included", |s| {
        matches!(s.current, Some((1, AnchorState::Included { .. })))
    })
    .await;
    mine(&provider, 3).await;
    wait_for(&mut rx, "seq 1 finalized", |s| s.finalized_seq == 1).await;
    let after_first = records(&ledger);
    assert_eq!(
        after_first[0].tx_hash, pending_tx,
        "the pending transaction was followed"
    );
    assert_eq!(after_first[0].tree_size, 30);
    assert_eq!(after_first[0].resubmissions, 0);

    // Then the waiting checkpoint goes out as seq 2, with the next nonce.
    wait_for(&mut rx, "seq 2 submitted", |s| {
        matches!(s.current, Some((2, _)))
    })
    .await;
    mine(&provider, 1).await;
    wait_for(&mut rx, "seq 2 included", |s| {
        matches!(s.current, Some((2, AnchorState::Included { .. })))
    })
    .await;
    mine(&provider, 3).await;
    let status = wait_for(&mut rx, "seq 2 finalized", |s| s.finalized_seq == 2).await;
    handle.shutdown().await;
    assert_eq!(status.finalized_tree_size, 45);
    let all = records(&ledger);
    assert_eq!(
        all.iter().map(|r| (r.seq, r.tree_size)).collect::<Vec<_>>(),
        [(1, 30), (2, 45)]
    );
    assert_eq!(all[1].nonce, all[0].nonce + 1);
    // Exactly two transactions left the account: nothing was sent twice.
    assert_eq!(
        provider.get_transaction_count(sender).await.unwrap(),
        nonce_before + 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_record_and_broadcast_resubmits_the_same_seq() {
    let anvil = start_anvil(&["--block-time", "1"]);
    let deployment =
        deploy_registered(&anvil.url, crate::ORIGIN, log_key().public_key_bytes()).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path());
    let checkpoint = grow_and_seal(&ledger, 12).await;

    // What a crash right after the write-ahead record leaves: a Submitted record whose
    // transaction no node has ever seen.
    let lost = AnchorRecord {
        seq: 1,
        chain_id: deployment.chain_id,
        contract: deployment.address,
        log_id: log_id(crate::ORIGIN),
        tree_size: 12,
        root: crate::root_of(&checkpoint),
        checkpoint_hash: sworn_ledger::anchor::checkpoint_hash(&checkpoint),
        tx_hash: B256::repeat_byte(0xEE),
        nonce: 0,
        state: AnchorState::Submitted,
        resubmissions: 0,
        deep_reorgs: 0,
    };
    AnchorStore::save_record(ledger.as_ref(), &lost).unwrap();

    let handle = spawn(config(&anvil.url, &deployment), DEV_KEY_0, &ledger);
    let mut rx = handle.subscribe();
    let status = wait_for(&mut rx, "seq 1 finalized", |s| s.finalized_seq == 1).await;
    handle.shutdown().await;
    assert_eq!(status.resubmissions, 1);
    let all = records(&ledger);
    assert_eq!(all.len(), 1, "the lost seq was reused, not skipped");
    assert_ne!(all[0].tx_hash, lost.tx_hash);
    assert_eq!(all[0].resubmissions, 1);
}
