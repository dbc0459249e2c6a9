//! Reorgs deeper than finality: the chain is rewound (`evm_revert`) below anchors the
//! anchorer had recorded as finalized. It must notice, stop calling them finalized (so
//! the status and `/metrics` show the lag again), re-anchor the lost seqs exactly as
//! they were recorded, and go on anchoring the newest checkpoint.

use std::time::Duration;

use alloy::primitives::B256;
use alloy::providers::{DynProvider, Provider};
use sworn_ledger::anchor::{AnchorState, AnchorStatus, ChainReader, checkpoint_hash, log_id};
use tokio::sync::watch;

use crate::node::{DEV_KEY_0, deploy_registered, mine, start_anvil};
use crate::{config, grow_and_seal, log_key, open_ledger, records, root_of, spawn, wait_for};

/// Waits for `seq` (the newest record) to be included, then mines on to its finality.
async fn finalize_newest(rx: &mut watch::Receiver<AnchorStatus>, provider: &DynProvider, seq: u64) {
    wait_for(
        rx,
        &format!("seq {seq} included"),
        |s| matches!(s.current, Some((n, AnchorState::Included { .. })) if n == seq),
    )
    .await;
    mine(provider, 3).await;
    wait_for(rx, &format!("seq {seq} finalized"), |s| {
        s.finalized_seq == seq
    })
    .await;
}

/// The anchor the contract holds at `seq`, as (size, root, checkpoint hash), if any.
async fn on_chain(reader: &ChainReader, seq: u64) -> Option<(u64, B256, B256)> {
    reader
        .anchored_events(log_id(crate::ORIGIN), Some(seq), 0)
        .await
        .unwrap()
        .pop()
        .map(|e| (e.tree_size, e.root, e.checkpoint_hash))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg_below_finalized_anchors_re_anchors_them() {
    // No block time: blocks come with each transaction and when the test mines, so each
    // step below happens when the test says so.
    let anvil = start_anvil(&[]);
    let deployment =
        deploy_registered(&anvil.url, crate::ORIGIN, log_key().public_key_bytes()).await;
    let reader = ChainReader::new(&anvil.url, deployment.address, Duration::from_secs(5)).unwrap();
    let provider = reader.provider().clone();
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path());

    grow_and_seal(&ledger, 10).await;
    let handle = spawn(config(&anvil.url, &deployment), DEV_KEY_0, &ledger);
    let mut rx = handle.subscribe();
    finalize_newest(&mut rx, &provider, 1).await;
    // The chain as it is with only seq 1 anchored: the rewind below returns to it.
    let snapshot: serde_json::Value = provider
        .raw_request("evm_snapshot".into(), ())
        .await
        .unwrap();
    let second = grow_and_seal(&ledger, 20).await;
    finalize_newest(&mut rx, &provider, 2).await;
    let third = grow_and_seal(&ledger, 30).await;
    let status = {
        finalize_newest(&mut rx, &provider, 3).await;
        rx.borrow().clone()
    };
    assert_eq!((status.finalized_tree_size, status.lag_entries), (30, 0));
    let before = records(&ledger);

    // Rewind the chain below seqs 2 and 3, both final.
    let reverted: bool = provider
        .raw_request("evm_revert".into(), (snapshot,))
        .await
        .unwrap();
    assert!(reverted);
    assert_eq!(on_chain(&reader, 2).await, None);

    // The anchorer notices: seq 1 is the newest anchor that stands, and the lag is back.
    let status = wait_for(&mut rx, "the lost anchors to be noticed", |s| {
        s.finalized_seq == 1
    })
    .await;
    assert_eq!(status.finalized_tree_size, 10);
    assert_eq!(status.lag_entries, 20);
    assert_eq!(status.deep_reorgs, 1);
    assert!(
        status.consecutive_failures == 0 && status.last_error.is_none(),
        "{status:?}"
    );

    // A newer checkpoint while the lost seqs are redone.
    let newest = grow_and_seal(&ledger, 40).await;

    // Seq 2 and seq 3 are re-anchored one at a time, each with its own checkpoint (each
    // resubmission is mined as it is sent; mining on makes it final).
    wait_for(&mut rx, "seq 2 re-sent", |s| s.resubmissions >= 1).await;
    mine(&provider, 3).await;
    wait_for(&mut rx, "seq 2 final again", |s| s.finalized_seq == 2).await;
    wait_for(&mut rx, "seq 3 re-sent", |s| s.resubmissions >= 2).await;
    mine(&provider, 3).await;
    wait_for(&mut rx, "seq 3 final again", |s| s.finalized_seq == 3).await;
    // Then the newest checkpoint, under the next seq.
    finalize_newest(&mut rx, &provider, 4).await;
    let status = rx.borrow().clone();
    handle.shutdown().await;

    assert_eq!((status.finalized_tree_size, status.lag_entries), (40, 0));
    assert_eq!(status.resubmissions, 2);
    assert_eq!(status.deep_reorgs, 1, "one reorg, counted once");
    for (seq, checkpoint) in [(2, &second), (3, &third), (4, &newest)] {
        assert_eq!(
            on_chain(&reader, seq).await,
            Some((
                checkpoint.checkpoint.size,
                root_of(checkpoint),
                checkpoint_hash(checkpoint)
            )),
            "seq {seq} on chain"
        );
    }
    let after = records(&ledger);
    assert_eq!(
        after
            .iter()
            .map(|r| (r.seq, r.tree_size))
            .collect::<Vec<_>>(),
        [(1, 10), (2, 20), (3, 30), (4, 40)]
    );
    assert!(after.iter().all(|r| r.state.is_finalized()));
    assert_eq!(after[0], before[0], "seq 1 was never lost");
    assert_eq!(after[3].deep_reorgs, 0);
    for seq in [1, 2] {
        let (old, new) = (&before[seq], &after[seq]);
        // Same seq, checkpoint, nonce and fees: the re-signed transaction may well be
        // the very same one, so it is told apart by its block.
        assert_ne!(
            old.state.block(),
            new.state.block(),
            "seq {} re-sent",
            seq + 1
        );
        assert_eq!(new.resubmissions, old.resubmissions + 1);
        assert_eq!((old.deep_reorgs, new.deep_reorgs), (0, 1));
        let (number, hash) = new.state.block().unwrap();
        let canonical = provider
            .get_block_by_number(number.into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            canonical.header.hash,
            hash,
            "seq {} final in a live block",
            seq + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg_that_moves_a_finalized_anchor_is_followed_to_its_new_block() {
    let anvil = start_anvil(&[]);
    let deployment =
        deploy_registered(&anvil.url, crate::ORIGIN, log_key().public_key_bytes()).await;
    let reader = ChainReader::new(&anvil.url, deployment.address, Duration::from_secs(5)).unwrap();
    let provider = reader.provider().clone();
    // An empty block between the registration and the anchor, so the reorg below
    // re-mines from the anchor's block on without touching the registration.
    mine(&provider, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path());
    let checkpoint = grow_and_seal(&ledger, 9).await;
    let handle = spawn(config(&anvil.url, &deployment), DEV_KEY_0, &ledger);
    let mut rx = handle.subscribe();
    finalize_newest(&mut rx, &provider, 1).await;
    let before = records(&ledger).remove(0);
    let (old_number, old_hash) = before.state.block().unwrap();

    // Re-mine the anchor's block and the three above it (the head is old_number + 3),
    // with the same signed transaction one block later: the anchor stands, the contract's
    // latest seq is unchanged, but the block the record calls final is gone.
    let raw: alloy::primitives::Bytes = provider
        .raw_request("eth_getRawTransactionByHash".into(), (before.tx_hash,))
        .await
        .unwrap();
    let _: serde_json::Value = provider
        .raw_request("anvil_reorg".into(), (4u64, vec![(raw, 1u64)]))
        .await
        .unwrap();
    assert_eq!(
        on_chain(&reader, 1).await,
        Some((9, root_of(&checkpoint), checkpoint_hash(&checkpoint)))
    );

    let status = wait_for(&mut rx, "seq 1 final in its new block", |s| {
        matches!(s.current, Some((1, AnchorState::Finalized { block_number, .. }))
            if block_number != old_number)
    })
    .await;
    handle.shutdown().await;
    assert_eq!(status.deep_reorgs, 1);
    assert_eq!(
        status.resubmissions, 0,
        "a re-mined anchor is followed, not re-sent"
    );
    let after = records(&ledger);
    assert_eq!(after.len(), 1);
    let (number, hash) = after[0].state.block().unwrap();
    assert_eq!(number, old_number + 1);
    assert_ne!(hash, old_hash);
    let canonical = provider
        .get_block_by_number(number.into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(canonical.header.hash, hash);
    assert_eq!(after[0].tx_hash, before.tx_hash);
    assert_eq!((after[0].resubmissions, after[0].deep_reorgs), (0, 1));
}
