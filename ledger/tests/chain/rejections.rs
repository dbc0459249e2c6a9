//! Wrong submitter, seq gap, a first anchor naming a previous one, shrinking tree, double
//! anchor: each rejected by the contract with its custom error, decoded in Rust, and
//! surfaced by a running anchorer. (Forks and split views: `history.rs`.)

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::B256;
use sworn_ledger::anchor::{
    AnchorChain, AnchorError, AnchorStore, Anchorer, ContractRevert, MemoryAnchorStore, log_id,
};
use sworn_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use sworn_ledger::merkle::Hash;

use crate::node::{DEV_KEY_0, DEV_KEY_1, deploy_registered, signer, start_anvil};
use crate::{config, log_key};

fn chain(url: &str, contract: alloy::primitives::Address, key: &str) -> AnchorChain {
    AnchorChain::new(
        url,
        contract,
        log_id(crate::ORIGIN),
        signer(key),
        Duration::from_secs(5),
        0,
    )
    .unwrap()
}

fn revert_of(result: Result<impl std::fmt::Debug, AnchorError>) -> (ContractRevert, String) {
    let err = result.expect_err("the contract should have rejected this");
    let text = err.to_string();
    match err {
        AnchorError::Rejected { revert, .. } => (revert, text),
        other => panic!("expected a decoded rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_rejections_are_decoded_into_named_errors() {
    let anvil = start_anvil(&[]);
    let deployment =
        deploy_registered(&anvil.url, crate::ORIGIN, log_key().public_key_bytes()).await;
    let submitter = chain(&anvil.url, deployment.address, DEV_KEY_0);
    let stranger = chain(&anvil.url, deployment.address, DEV_KEY_1);
    let (root, hash) = (B256::repeat_byte(0xA1), B256::repeat_byte(0xB2));
    let none = B256::ZERO;

    let (revert, text) = revert_of(
        stranger
            .prepare_anchor(1, 10, root, hash, none, none, &[])
            .await,
    );
    assert_eq!(
        revert,
        ContractRevert::NotSubmitter {
            caller: stranger.submitter()
        }
    );
    assert!(
        text.contains("is not the log's registered submitter"),
        "{text}"
    );

    let (revert, text) = revert_of(
        submitter
            .prepare_anchor(2, 10, root, hash, none, none, &[])
            .await,
    );
    assert_eq!(
        revert,
        ContractRevert::SeqNotContiguous {
            expected: 1,
            got: 2
        }
    );
    assert!(text.contains("the next seq is 1, not 2"), "{text}");

    // Anchor seq 1 for real. Automine mines it, but anvil may answer the broadcast before
    // the block exists: wait (bounded) for the receipt rather than assume it is there.
    // Seq 1 names no previous anchor.
    let (revert, text) = revert_of(
        submitter
            .prepare_anchor(1, 10, root, hash, root, hash, &[])
            .await,
    );
    assert_eq!(revert, ContractRevert::FirstAnchorHasPrevious);
    assert!(text.contains("seq 1 takes no previous"), "{text}");

    let prepared = submitter
        .prepare_anchor(1, 10, root, hash, none, none, &[])
        .await
        .unwrap();
    submitter.broadcast(&prepared).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let inclusion = loop {
        if let Some(inclusion) = submitter.inclusion(prepared.tx_hash).await.unwrap() {
            break inclusion;
        }
        assert!(tokio::time::Instant::now() < deadline, "anchor never mined");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(inclusion.success);
    assert!(submitter.is_anchored(1, 10, root, hash).await.unwrap());

    let (revert, text) = revert_of(
        submitter
            .prepare_anchor(1, 11, root, hash, none, none, &[])
            .await,
    );
    assert_eq!(revert, ContractRevert::AlreadyAnchored { seq: 1 });
    assert!(text.contains("write-once"), "{text}");

    let (revert, text) = revert_of(
        submitter
            .prepare_anchor(2, 9, root, hash, root, hash, &[])
            .await,
    );
    assert_eq!(
        revert,
        ContractRevert::TreeSizeDecreased {
            previous: 10,
            got: 9
        }
    );
    assert!(text.contains("below the previous anchor's 10"), "{text}");

    // Nothing was written by the rejected attempts.
    let latest = submitter.latest().await.unwrap();
    assert_eq!((latest.seq, latest.tree_size), (1, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchorer_with_the_wrong_key_reports_not_submitter() {
    let anvil = start_anvil(&[]);
    let deployment =
        deploy_registered(&anvil.url, crate::ORIGIN, log_key().public_key_bytes()).await;
    let store = Arc::new(MemoryAnchorStore::new());
    let checkpoint = Checkpoint::new(crate::ORIGIN, 5, Hash([3; 32]));
    store.push_checkpoint(SignedCheckpoint::sign(checkpoint, &log_key()).unwrap());

    let mut anchorer = Anchorer::new(
        config(&anvil.url, &deployment),
        signer(DEV_KEY_1),
        Arc::clone(&store),
    )
    .unwrap();
    let err = anchorer.step().await.unwrap_err();
    assert!(!err.is_transient());
    assert!(
        matches!(err.revert(), Some(ContractRevert::NotSubmitter { .. })),
        "{err:?}"
    );
    assert!(
        store.last_record().unwrap().is_none(),
        "nothing recorded for a rejected anchor"
    );

    // Through the running task, the same error lands in the published status.
    let handle = anchorer.spawn();
    let mut rx = handle.subscribe();
    let status = crate::wait_for(&mut rx, "the error in the status", |s| {
        s.last_error.is_some()
    })
    .await;
    handle.shutdown().await;
    assert!(status.last_error.unwrap().contains("NotSubmitter"));
    assert!(status.rpc_healthy, "a rejection is not an RPC outage");
}
