//! One history: the contract refuses a checkpoint that does not extend the last anchored
//! one (a fork under the same origin and key, a split view at the same size), the
//! anchorer never sends one and does not retry it, and after a reorg the resubmission
//! extends whatever the chain holds at the previous seq.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use sworn_ledger::Ledger;
use sworn_ledger::anchor::{
    AnchorChain, AnchorError, AnchorState, AnchorStore, Anchorer, ContractRevert, StepOutcome,
    checkpoint_hash, log_id,
};
use sworn_ledger::checkpoint::SignedCheckpoint;

use crate::node::{DEV_KEY_0, deploy_registered, mine, signer, start_anvil};
use crate::{
    WAIT, config, grow_and_seal, grow_history_and_seal, log_key, open_ledger, records, root_of,
    spawn, wait_for,
};

fn chain(url: &str, contract: Address) -> AnchorChain {
    AnchorChain::new(
        url,
        contract,
        log_id(crate::ORIGIN),
        signer(DEV_KEY_0),
        Duration::from_secs(5),
        0,
    )
    .unwrap()
}

/// The ledger's consistency proof from `old` to `new` entries, as the contract takes it.
fn proof(ledger: &Ledger, old: u64, new: u64) -> Vec<B256> {
    ledger
        .consistency_proof(old, new)
        .unwrap()
        .path
        .iter()
        .map(|h| B256::from(h.0))
        .collect()
}

/// Anchors `checkpoint` under `seq` on top of `previous` (None for seq 1) and waits,
/// bounded, for the transaction to be mined.
async fn anchor(
    chain: &AnchorChain,
    seq: u64,
    checkpoint: &SignedCheckpoint,
    previous: Option<&SignedCheckpoint>,
    consistency: &[B256],
) -> Result<(), AnchorError> {
    let (prev_root, prev_hash) = previous.map_or((B256::ZERO, B256::ZERO), |p| {
        (root_of(p), checkpoint_hash(p))
    });
    let prepared = chain
        .prepare_anchor(
            seq,
            checkpoint.checkpoint.size,
            root_of(checkpoint),
            checkpoint_hash(checkpoint),
            prev_root,
            prev_hash,
            consistency,
        )
        .await?;
    chain.broadcast(&prepared).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(inclusion) = chain.inclusion(prepared.tx_hash).await? {
            assert!(inclusion.success, "anchor of seq {seq} reverted");
            return Ok(());
        }
        assert!(tokio::time::Instant::now() < deadline, "anchor never mined");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn revert_of(result: Result<(), AnchorError>) -> ContractRevert {
    match result {
        Err(AnchorError::Rejected { revert, .. }) => revert,
        other => panic!("expected a decoded rejection, got {other:?}"),
    }
}

/// Steps `anchorer` until `done` says so, mining a block whenever its anchor waits in
/// one (so finality comes) and polling, bounded, while a transaction waits for a block.
async fn drive<S: AnchorStore>(
    anchorer: &mut Anchorer<S>,
    provider: &DynProvider,
    what: &str,
    done: impl Fn(&StepOutcome) -> bool,
) -> StepOutcome {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let outcome = anchorer.step().await.unwrap();
        if done(&outcome) {
            return outcome;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out driving the anchorer to {what}; last step: {outcome:?}"
        );
        match outcome {
            StepOutcome::Waiting {
                state: AnchorState::Included { .. },
                ..
            } => mine(provider, 1).await,
            StepOutcome::Waiting { .. } => tokio::time::sleep(Duration::from_millis(20)).await,
            _ => {}
        }
    }
}

fn finalized(seq: u64) -> impl Fn(&StepOutcome) -> bool {
    move |o| matches!(o, StepOutcome::Finalized { seq: s, .. } if *s == seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_refuses_a_fork_and_a_split_view() {
    let anvil = start_anvil(&[]);
    let deployment =
        deploy_registered(&anvil.url, crate::ORIGIN, log_key().public_key_bytes()).await;
    let chain = chain(&anvil.url, deployment.address);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Two ledgers under the same origin and key, with different entries: two histories
    // the operator could both sign checkpoints for.
    let a = open_ledger(dir_a.path());
    let b = open_ledger(dir_b.path());
    let a50 = grow_and_seal(&a, 50).await;
    let b50 = grow_history_and_seal(&b, "fork ", 50).await;
    let b80 = grow_history_and_seal(&b, "fork ", 80).await;
    assert_eq!(a50.checkpoint.size, b50.checkpoint.size);
    assert_ne!(root_of(&a50), root_of(&b50));

    anchor(&chain, 1, &a50, None, &[]).await.unwrap();

    // B's tree of 80 with B's own (valid) proof from B's tree of 50, on top of A's 50.
    let b_proof = proof(&b, 50, 80);
    let revert = revert_of(anchor(&chain, 2, &b80, Some(&a50), &b_proof).await);
    assert_eq!(
        revert,
        ContractRevert::InconsistentHistory {
            previous_seq: 1,
            previous_size: 50,
            tree_size: 80
        }
    );
    // Naming B's own checkpoint of 50 as the previous anchor: not what seq 1 holds.
    let revert = revert_of(anchor(&chain, 2, &b80, Some(&b50), &b_proof).await);
    assert_eq!(
        revert,
        ContractRevert::PreviousAnchorMismatch { previous_seq: 1 }
    );
    // The same size with another root: a split view, refused.
    let revert = revert_of(anchor(&chain, 2, &b50, Some(&a50), &[]).await);
    assert_eq!(
        revert,
        ContractRevert::InconsistentHistory {
            previous_seq: 1,
            previous_size: 50,
            tree_size: 50
        }
    );
    // A's valid proof from 50 to 80 carries A's root of 80 and no other.
    let a80 = grow_and_seal(&a, 80).await;
    let a_proof = proof(&a, 50, 80);
    let mut other_root = root_of(&a80);
    other_root.0[31] ^= 1;
    let revert = revert_of(
        chain
            .prepare_anchor(
                2,
                80,
                other_root,
                checkpoint_hash(&b80),
                root_of(&a50),
                checkpoint_hash(&a50),
                &a_proof,
            )
            .await
            .map(drop),
    );
    assert_eq!(
        revert,
        ContractRevert::InconsistentHistory {
            previous_seq: 1,
            previous_size: 50,
            tree_size: 80
        }
    );
    let text = AnchorError::Rejected {
        operation: "anchor",
        revert,
    }
    .to_string();
    assert!(
        text.contains("does not extend the one anchored at seq 1"),
        "{text}"
    );

    // A's honest extension is accepted, and the chain holds A's history only.
    anchor(&chain, 2, &a80, Some(&a50), &a_proof).await.unwrap();
    let latest = chain.latest().await.unwrap();
    assert_eq!((latest.seq, latest.tree_size), (2, 80));
    assert!(
        chain
            .is_anchored(2, 80, root_of(&a80), checkpoint_hash(&a80))
            .await
            .unwrap()
    );
    assert!(
        !chain
            .is_anchored(2, 80, root_of(&b80), checkpoint_hash(&b80))
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchorer_never_sends_a_checkpoint_off_the_anchored_history() {
    let anvil = start_anvil(&[]);
    let deployment =
        deploy_registered(&anvil.url, crate::ORIGIN, log_key().public_key_bytes()).await;
    let provider = ProviderBuilder::new()
        .connect_http(anvil.url.parse().unwrap())
        .erased();
    let sender = signer(DEV_KEY_0).address();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open_ledger(dir_a.path());
    let b = open_ledger(dir_b.path());

    // Ledger A's checkpoint of 50 is anchored and final.
    let a50 = grow_and_seal(&a, 50).await;
    let mut anchorer_a = Anchorer::new(
        config(&anvil.url, &deployment),
        signer(DEV_KEY_0),
        Arc::clone(&a),
    )
    .unwrap();
    drive(&mut anchorer_a, &provider, "seq 1 finalized", finalized(1)).await;

    // An anchorer over ledger B (same origin, key and chain account, other entries)
    // adopts seq 1 from the chain, then must not anchor B's checkpoint of 80 on top.
    grow_history_and_seal(&b, "fork ", 80).await;
    let mut anchorer_b = Anchorer::new(
        config(&anvil.url, &deployment),
        signer(DEV_KEY_0),
        Arc::clone(&b),
    )
    .unwrap();
    drive(
        &mut anchorer_b,
        &provider,
        "seq 1 adopted and final",
        finalized(1),
    )
    .await;
    let nonce = provider.get_transaction_count(sender).await.unwrap();

    let err = anchorer_b.step().await.unwrap_err();
    let AnchorError::NotAnExtension {
        seq,
        tree_size,
        previous_seq,
        previous_size,
        previous_root,
        ..
    } = &err
    else {
        panic!("expected NotAnExtension, got {err:?}");
    };
    assert_eq!(
        (*seq, *tree_size, *previous_seq, *previous_size),
        (2, 80, 1, 50)
    );
    assert_eq!(*previous_root, root_of(&a50));
    assert!(!err.is_transient() && err.is_history_refusal());
    assert!(err.to_string().contains("will not be anchored"), "{err}");

    // Terminal for that checkpoint: the next pass sends nothing and says so.
    assert_eq!(
        anchorer_b.step().await.unwrap(),
        StepOutcome::Refused {
            seq: 2,
            tree_size: 80
        }
    );
    // A newer checkpoint is considered afresh, and refused for the same reason.
    grow_history_and_seal(&b, "fork ", 90).await;
    let err = anchorer_b.step().await.unwrap_err();
    assert!(
        matches!(err, AnchorError::NotAnExtension { tree_size: 90, .. }),
        "{err:?}"
    );
    assert_eq!(
        provider.get_transaction_count(sender).await.unwrap(),
        nonce,
        "no transaction was sent for a checkpoint off the history"
    );
    assert_eq!(
        records(&b).len(),
        1,
        "nothing recorded beyond the adopted seq"
    );

    // Running, the refusal is what the status shows, and the chain is not blamed.
    let handle = anchorer_b.spawn();
    let mut rx = handle.subscribe();
    let status = wait_for(&mut rx, "the refusal in the status", |s| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("does not extend"))
    })
    .await;
    handle.shutdown().await;
    assert!(status.rpc_healthy);
    assert_eq!(status.finalized_seq, 1);
    assert_eq!(provider.get_transaction_count(sender).await.unwrap(), nonce);

    // Ledger A's own extension still anchors.
    let a80 = grow_and_seal(&a, 80).await;
    drive(&mut anchorer_a, &provider, "seq 2 finalized", finalized(2)).await;
    assert!(
        chain(&anvil.url, deployment.address)
            .is_anchored(2, 80, root_of(&a80), checkpoint_hash(&a80))
            .await
            .unwrap()
    );
}

/// A reorg drops seq 2; the resubmission carries the newest checkpoint with a proof from
/// the anchor the chain holds at seq 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmission_after_a_reorg_extends_the_anchor_on_chain() {
    let anvil = start_anvil(&[]);
    let deployment =
        deploy_registered(&anvil.url, crate::ORIGIN, log_key().public_key_bytes()).await;
    let provider = ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path());
    grow_and_seal(&ledger, 20).await;

    let handle = spawn(config(&anvil.url, &deployment), DEV_KEY_0, &ledger);
    let mut rx = handle.subscribe();
    wait_for(&mut rx, "seq 1 included", |s| {
        matches!(s.current, Some((1, AnchorState::Included { .. })))
    })
    .await;
    mine(&provider, 3).await;
    wait_for(&mut rx, "seq 1 finalized", |s| s.finalized_seq == 1).await;

    grow_and_seal(&ledger, 40).await;
    let status = wait_for(&mut rx, "seq 2 included", |s| {
        matches!(s.current, Some((2, AnchorState::Included { .. })))
    })
    .await;
    let Some((_, AnchorState::Included { block_hash, .. })) = status.current else {
        unreachable!("matched above")
    };
    // A bigger checkpoint waits while seq 2 is not final; then a reorg drops seq 2.
    let newest = grow_and_seal(&ledger, 60).await;
    let _: serde_json::Value = provider
        .raw_request("anvil_reorg".into(), (1u64, Vec::<(Bytes, u64)>::new()))
        .await
        .unwrap();
    wait_for(&mut rx, "seq 2 resubmitted and included again", |s| {
        s.resubmissions >= 1
            && matches!(s.current, Some((2, AnchorState::Included { block_hash: h, .. })) if h != block_hash)
    })
    .await;
    mine(&provider, 3).await;
    let status = wait_for(&mut rx, "seq 2 finalized", |s| s.finalized_seq == 2).await;
    handle.shutdown().await;
    assert_eq!(status.finalized_tree_size, 60);

    let all = records(&ledger);
    assert_eq!(
        all.iter()
            .map(|r| (r.seq, r.tree_size, r.resubmissions))
            .collect::<Vec<_>>(),
        [(1, 20, 0), (2, 60, 1)]
    );
    let chain = chain(&anvil.url, deployment.address);
    assert!(
        chain
            .is_anchored(2, 60, root_of(&newest), checkpoint_hash(&newest))
            .await
            .unwrap()
    );
}

/// The previous anchor comes from the chain, not from trust in the local record: with
/// record 1 damaged, seq 2 still extends what the contract holds at seq 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_anchor_is_what_the_contract_holds() {
    let anvil = start_anvil(&[]);
    let deployment =
        deploy_registered(&anvil.url, crate::ORIGIN, log_key().public_key_bytes()).await;
    let provider = ProviderBuilder::new()
        .connect_http(anvil.url.parse().unwrap())
        .erased();
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path());
    grow_and_seal(&ledger, 30).await;
    let mut anchorer = Anchorer::new(
        config(&anvil.url, &deployment),
        signer(DEV_KEY_0),
        Arc::clone(&ledger),
    )
    .unwrap();
    drive(&mut anchorer, &provider, "seq 1 finalized", finalized(1)).await;

    let mut damaged = AnchorStore::record(ledger.as_ref(), 1).unwrap().unwrap();
    let honest = damaged.clone();
    damaged.root = B256::repeat_byte(0xEE);
    AnchorStore::save_record(ledger.as_ref(), &damaged).unwrap();

    let newest = grow_and_seal(&ledger, 45).await;
    drive(&mut anchorer, &provider, "seq 2 finalized", finalized(2)).await;
    let chain = chain(&anvil.url, deployment.address);
    // Seq 2 went through, so it named seq 1's real root (the contract checks it).
    assert!(
        chain
            .is_anchored(2, 45, root_of(&newest), checkpoint_hash(&newest))
            .await
            .unwrap()
    );
    assert!(
        chain
            .is_anchored(1, 30, honest.root, honest.checkpoint_hash)
            .await
            .unwrap()
    );
    assert!(
        !chain
            .is_anchored(1, 30, damaged.root, damaged.checkpoint_hash)
            .await
            .unwrap()
    );
}
