//! Gas per anchor transaction at 2^10, 2^20 and 2^30 entries, as Anvil charges it
//! (`receipt.gasUsed`): 1,000 new entries on top of an anchored tree, with the Rust
//! ledger's consistency proofs from the `gas` cases of the contract's vectors
//! (`contracts/test/data/consistency.json`, see `tests/consistency_vectors.rs`; no tree
//! that large fits in a test, the vectors hold proofs and roots that are consistent).
//! The design target is at most 120,000 gas per anchor at 2^20 entries. Run with
//! `--nocapture` to see the figures BENCHMARKS.md reports.

use std::time::Duration;

use alloy::primitives::B256;
use alloy::providers::Provider;
use serde_json::Value;
use sworn_ledger::anchor::{AnchorChain, deploy_with, log_id, register_log_with};

use crate::node::{DEV_KEY_0, signer, start_anvil};
use crate::{WAIT, log_key};

fn b256(v: &Value) -> B256 {
    v.as_str().unwrap().parse().unwrap()
}

/// Sends `anchor` and returns the mined receipt's gas.
async fn anchor_gas(
    chain: &AnchorChain,
    seq: u64,
    size: u64,
    root: B256,
    checkpoint_hash: B256,
    prev_root: B256,
    prev_hash: B256,
    proof: &[B256],
) -> u64 {
    let prepared = chain
        .prepare_anchor(
            seq,
            size,
            root,
            checkpoint_hash,
            prev_root,
            prev_hash,
            proof,
        )
        .await
        .unwrap();
    chain.broadcast(&prepared).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(receipt) = chain
            .provider()
            .get_transaction_receipt(prepared.tx_hash)
            .await
            .unwrap()
        {
            assert!(receipt.status(), "anchor of seq {seq} reverted");
            return receipt.gas_used;
        }
        assert!(tokio::time::Instant::now() < deadline, "anchor never mined");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gas_per_anchor_at_two_to_the_ten_twenty_and_thirty() {
    let anvil = start_anvil(&[]);
    let owner = signer(DEV_KEY_0);
    let deployment = deploy_with(&anvil.url, owner.clone()).await.unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contracts/test/data/consistency.json"
    );
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let gas_cases = vectors["gas"].as_array().unwrap();
    assert_eq!(gas_cases.len(), 6);
    let mut at_2e20 = Vec::new();
    for (i, g) in gas_cases.iter().enumerate() {
        let label = g["label"].as_str().unwrap();
        let case = &vectors["cases"][g["case"].as_u64().unwrap() as usize];
        // One log per case, so each anchor is a steady-state seq 2 on top of seq 1.
        let origin = format!("sworn.test/gas/{i}");
        register_log_with(
            &anvil.url,
            owner.clone(),
            deployment.address,
            &origin,
            log_key().public_key_bytes(),
            owner.address(),
        )
        .await
        .unwrap();
        let chain = AnchorChain::new(
            &anvil.url,
            deployment.address,
            log_id(&origin),
            owner.clone(),
            Duration::from_secs(5),
            0,
        )
        .unwrap();
        let (old_hash, new_hash) = (B256::repeat_byte(0x01), B256::repeat_byte(0x02));
        let old_root = b256(&case["oldRoot"]);
        let proof: Vec<B256> = case["proof"].as_array().unwrap().iter().map(b256).collect();
        anchor_gas(
            &chain,
            1,
            case["oldSize"].as_u64().unwrap(),
            old_root,
            old_hash,
            B256::ZERO,
            B256::ZERO,
            &[],
        )
        .await;
        let gas = anchor_gas(
            &chain,
            2,
            case["newSize"].as_u64().unwrap(),
            b256(&case["newRoot"]),
            new_hash,
            old_root,
            old_hash,
            &proof,
        )
        .await;
        eprintln!(
            "gas per anchor transaction, {label}: {gas} ({} proof elements)",
            proof.len()
        );
        assert!(
            gas <= 130_000,
            "{label}: {gas} gas, over the regression budget"
        );
        if label.starts_with("2^20") {
            at_2e20.push(gas);
        }
    }
    assert_eq!(at_2e20.len(), 2);
    assert!(
        at_2e20.iter().all(|g| *g <= 120_000),
        "the 2^20 target: {at_2e20:?}"
    );
}
