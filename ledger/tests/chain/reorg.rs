//! Reorgs: a reorg that drops the anchoring transaction makes the anchorer re-anchor;
//! one that moves it to another block makes it follow the new block. Nothing is reported
//! finalized for a block that is gone.

use alloy::primitives::{B256, Bytes};
use alloy::providers::{Provider, ProviderBuilder};
use sworn_ledger::anchor::AnchorState;

use crate::node::{DEV_KEY_0, deploy_registered, mine, start_anvil};
use crate::{config, grow_and_seal, log_key, open_ledger, records, spawn, wait_for};

fn included(status: &sworn_ledger::anchor::AnchorStatus) -> Option<(u64, B256)> {
    match status.current {
        Some((
            1,
            AnchorState::Included {
                block_number,
                block_hash,
            },
        )) => Some((block_number, block_hash)),
        _ => None,
    }
}

/// Anvil without a block time: a block is mined per transaction and otherwise only when
/// the test says so, so the anchor stays short of finality until the test mines on.
async fn setup() -> (sworn_e2e::Anvil, sworn_ledger::anchor::Deployment) {
    let anvil = start_anvil(&[]);
    let deployment =
        deploy_registered(&anvil.url, crate::ORIGIN, log_key().public_key_bytes()).await;
    (anvil, deployment)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg_that_drops_the_anchor_makes_it_resubmit() {
    let (anvil, deployment) = setup().await;
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path());
    grow_and_seal(&ledger, 25).await;

    let handle = spawn(config(&anvil.url, &deployment), DEV_KEY_0, &ledger);
    let mut rx = handle.subscribe();
    let status = wait_for(&mut rx, "seq 1 included", |s| included(s).is_some()).await;
    let (old_number, old_hash) = included(&status).unwrap();
    assert_eq!(
        status.finalized_seq, 0,
        "not final: no block was mined on top"
    );

    // Replace the anchor's block with an empty one: the transaction is gone.
    let _: serde_json::Value = provider
        .raw_request("anvil_reorg".into(), (1u64, Vec::<(Bytes, u64)>::new()))
        .await
        .unwrap();
    assert_ne!(
        provider
            .get_block_by_number(old_number.into())
            .await
            .unwrap()
            .unwrap()
            .header
            .hash,
        old_hash
    );
    let status = wait_for(&mut rx, "a resubmission", |s| s.resubmissions >= 1).await;
    assert!(status.reorgs_seen >= 1);
    // The resubmitted transaction was mined in a new block; mine on to finality.
    wait_for(&mut rx, "the new inclusion", |s| {
        included(s).is_some_and(|(_, hash)| hash != old_hash)
    })
    .await;
    mine(&provider, 3).await;
    let status = wait_for(&mut rx, "seq 1 finalized", |s| s.finalized_seq == 1).await;
    handle.shutdown().await;
    assert_eq!(status.finalized_tree_size, 25);

    let all = records(&ledger);
    assert_eq!(
        all.len(),
        1,
        "the dropped anchor was re-anchored under the same seq"
    );
    let AnchorState::Finalized {
        block_number,
        block_hash,
    } = all[0].state
    else {
        panic!("{:?}", all[0].state);
    };
    assert_ne!(block_hash, old_hash, "finalized in a block that is gone");
    let canonical = provider
        .get_block_by_number(block_number.into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(canonical.header.hash, block_hash);
    assert_eq!(all[0].resubmissions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg_that_moves_the_anchor_is_followed_to_the_new_block() {
    let (anvil, deployment) = setup().await;
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path());
    grow_and_seal(&ledger, 9).await;
    // An empty block between the registration and the anchor, so the reorg below can
    // re-mine the anchor's block and its parent without touching the registration.
    mine(&provider, 1).await;

    let handle = spawn(config(&anvil.url, &deployment), DEV_KEY_0, &ledger);
    let mut rx = handle.subscribe();
    let status = wait_for(&mut rx, "seq 1 included", |s| included(s).is_some()).await;
    let (_, old_hash) = included(&status).unwrap();
    let tx_hash = records(&ledger)[0].tx_hash;

    // Re-mine the last two blocks with the same signed transaction in the second one.
    let raw: Bytes = provider
        .raw_request("eth_getRawTransactionByHash".into(), (tx_hash,))
        .await
        .unwrap();
    let _: serde_json::Value = provider
        .raw_request("anvil_reorg".into(), (2u64, vec![(raw, 1u64)]))
        .await
        .unwrap();
    let status = wait_for(&mut rx, "the move to be seen", |s| {
        included(s).is_some_and(|(_, hash)| hash != old_hash)
    })
    .await;
    assert!(status.reorgs_seen >= 1);
    assert_eq!(
        status.resubmissions, 0,
        "a moved transaction is followed, not replaced"
    );

    mine(&provider, 3).await;
    wait_for(&mut rx, "seq 1 finalized", |s| s.finalized_seq == 1).await;
    handle.shutdown().await;
    let all = records(&ledger);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].tx_hash, tx_hash);
    let AnchorState::Finalized {
        block_number,
        block_hash,
    } = all[0].state
    else {
        panic!("{:?}", all[0].state);
    };
    assert_ne!(block_hash, old_hash);
    let canonical = provider
        .get_block_by_number(block_number.into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(canonical.header.hash, block_hash);
}
