//! Happy path: receipts → checkpoints → anchored → finalized, and the chain holds exactly
//! what the ledger sealed.

use alloy::eips::BlockNumberOrTag;
use alloy::providers::Provider;
use alloy::sol_types::SolEvent;
use sworn_ledger::anchor::{AnchorState, SwornAnchor, checkpoint_hash, log_id};

use crate::node::{DEV_KEY_0, deploy_registered, start_anvil};
use crate::{config, grow_and_seal, log_key, open_ledger, records, root_of, spawn, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_anchored_and_finalized_and_match_the_chain() {
    // One block a second, as `anvil/start.sh` runs it: finality comes by itself.
    let anvil = start_anvil(&["--block-time", "1"]);
    let deployment =
        deploy_registered(&anvil.url, crate::ORIGIN, log_key().public_key_bytes()).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path());

    grow_and_seal(&ledger, 120).await;
    let handle = spawn(config(&anvil.url, &deployment), DEV_KEY_0, &ledger);
    let mut rx = handle.subscribe();
    let status = wait_for(&mut rx, "seq 1 finalized", |s| s.finalized_seq == 1).await;
    assert_eq!(status.finalized_tree_size, 120);

    // Two more checkpoints while the anchorer is stopped: once restarted, its next
    // anchor takes the newest only.
    handle.shutdown().await;
    grow_and_seal(&ledger, 250).await;
    let newest = grow_and_seal(&ledger, 300).await;
    let handle = spawn(config(&anvil.url, &deployment), DEV_KEY_0, &ledger);
    let mut rx = handle.subscribe();
    let status = wait_for(&mut rx, "size 300 finalized", |s| {
        s.finalized_tree_size == 300
    })
    .await;
    assert_eq!(
        status.finalized_seq, 2,
        "one anchor covers both new checkpoints"
    );
    assert_eq!(status.lag_entries, 0);
    assert!(status.rpc_healthy);
    handle.shutdown().await;

    let provider =
        alloy::providers::ProviderBuilder::new().connect_http(anvil.url.parse().unwrap());
    let contract = SwornAnchor::new(deployment.address, &provider);
    let finalized = provider
        .get_block_by_number(BlockNumberOrTag::Finalized)
        .await
        .unwrap()
        .unwrap()
        .header
        .number;
    let id = log_id(crate::ORIGIN);
    let all = records(&ledger);
    assert_eq!(
        all.iter().map(|r| r.tree_size).collect::<Vec<_>>(),
        [120, 300]
    );
    for record in &all {
        let checkpoint = ledger.checkpoint_at(record.tree_size).unwrap().unwrap();
        assert_eq!(record.root, root_of(&checkpoint));
        assert_eq!(record.checkpoint_hash, checkpoint_hash(&checkpoint));
        assert_eq!(record.chain_id, deployment.chain_id);
        assert_eq!(record.contract, deployment.address);
        assert_eq!(record.log_id, id);
        let AnchorState::Finalized {
            block_number,
            block_hash,
        } = record.state
        else {
            panic!("seq {} not finalized: {:?}", record.seq, record.state);
        };
        assert!(block_number <= finalized);

        // The contract's storage agrees, and the ledger's root for that size is the root.
        assert!(
            contract
                .isAnchored(
                    id,
                    record.seq,
                    record.tree_size,
                    record.root,
                    record.checkpoint_hash
                )
                .call()
                .await
                .unwrap()
        );
        assert_eq!(record.root.0, ledger.root(record.tree_size).unwrap().0);
        let stored = contract.anchorAt(id, record.seq).call().await.unwrap();
        assert_eq!(stored.treeSize, record.tree_size);
        assert_eq!(stored.blockNumber, block_number);

        // The transaction's receipt sits in that block and its event decodes to the record.
        let receipt = provider
            .get_transaction_receipt(record.tx_hash)
            .await
            .unwrap()
            .unwrap();
        assert!(receipt.status());
        assert_eq!(receipt.block_hash, Some(block_hash));
        let canonical = provider
            .get_block_by_number(block_number.into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(canonical.header.hash, block_hash);
        let events: Vec<_> = receipt
            .inner
            .logs()
            .iter()
            .filter(|l| l.topics().first() == Some(&SwornAnchor::Anchored::SIGNATURE_HASH))
            .map(|l| l.log_decode::<SwornAnchor::Anchored>().unwrap().inner.data)
            .collect();
        assert_eq!(
            events,
            [SwornAnchor::Anchored {
                logId: id,
                seq: record.seq,
                treeSize: record.tree_size,
                root: record.root,
                checkpointHash: record.checkpoint_hash,
            }]
        );
        eprintln!(
            "gas per anchor transaction (seq {}): {}",
            record.seq, receipt.gas_used
        );
        // The design target is 120,000 per anchor at 2^20 entries; these logs are tiny
        // (seq 2 carries a 7-element consistency proof from 120 to 300 entries).
        assert!(
            receipt.gas_used <= 120_000,
            "anchor used {} gas",
            receipt.gas_used
        );
    }
    assert_eq!(ledger.consistency_proof(120, 300).unwrap().path.len(), 7);
    let latest = contract.latest(id).call().await.unwrap();
    assert_eq!(latest.seq, 2);
    assert_eq!(root_of(&newest), all[1].root);
}
