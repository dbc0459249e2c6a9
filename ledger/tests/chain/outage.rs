//! Outage: the RPC is unreachable while checkpoints accumulate; when it returns, one
//! anchor of the newest checkpoint covers the backlog, with no seq gap.

use sworn_ledger::anchor::{AnchorChain, log_id};

use crate::node::{DEV_KEY_0, deploy_registered, signer, start_anvil};
use crate::proxy::Relay;
use crate::{config, grow_and_seal, log_key, open_ledger, records, spawn, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_after_an_outage_drains_in_one_anchor() {
    let anvil = start_anvil(&["--block-time", "1"]);
    let deployment =
        deploy_registered(&anvil.url, crate::ORIGIN, log_key().public_key_bytes()).await;
    let relay = Relay::start(anvil.port()).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = open_ledger(dir.path());

    grow_and_seal(&ledger, 40).await;
    let handle = spawn(config(&relay.url, &deployment), DEV_KEY_0, &ledger);
    let mut rx = handle.subscribe();
    wait_for(&mut rx, "seq 1 finalized", |s| s.finalized_seq == 1).await;

    relay.set_up(false);
    let down = wait_for(&mut rx, "the anchorer to notice the outage", |s| {
        !s.rpc_healthy && s.consecutive_failures >= 3
    })
    .await;
    assert!(
        down.last_error.as_deref().unwrap_or("").contains("RPC"),
        "{down:?}"
    );
    // The ledger keeps serving: receipts and checkpoints accumulate meanwhile.
    for size in [60, 80, 100, 130] {
        grow_and_seal(&ledger, size).await;
    }
    let backlog = wait_for(&mut rx, "the backlog to show as lag", |s| {
        s.newest_checkpoint_size == 130 && s.consecutive_failures >= 5
    })
    .await;
    assert_eq!(backlog.lag_entries, 90);
    assert_eq!(backlog.finalized_seq, 1);

    relay.set_up(true);
    let status = wait_for(&mut rx, "the backlog to be finalized", |s| {
        s.finalized_tree_size == 130
    })
    .await;
    handle.shutdown().await;
    assert!(status.rpc_healthy);
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(
        status.finalized_seq, 2,
        "one anchor covers the whole backlog"
    );

    let all = records(&ledger);
    assert_eq!(
        all.iter().map(|r| (r.seq, r.tree_size)).collect::<Vec<_>>(),
        [(1, 40), (2, 130)]
    );
    let chain = AnchorChain::new(
        &anvil.url,
        deployment.address,
        log_id(crate::ORIGIN),
        signer(DEV_KEY_0),
        std::time::Duration::from_secs(5),
        0,
    )
    .unwrap();
    let latest = chain.latest().await.unwrap();
    assert_eq!((latest.seq, latest.tree_size), (2, 130));
    for r in &all {
        assert!(
            chain
                .is_anchored(r.seq, r.tree_size, r.root, r.checkpoint_hash)
                .await
                .unwrap()
        );
    }
}
