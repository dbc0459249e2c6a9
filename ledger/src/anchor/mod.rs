//! Anchoring checkpoints to the SwornAnchor contract, with `alloy`.
//!
//! A checkpoint only becomes evidence once it sits where the operator cannot rewrite it.
//! The [`Anchorer`] takes the newest sealed checkpoint, sends
//! `anchor(logId, seq, treeSize, root, checkpointHash, prevRoot, prevCheckpointHash,
//! consistency)` and follows the transaction `submitted → included → finalized`
//! (JSON-RPC block tags), storing chain id, contract, seq, transaction hash, block number
//! and block hash in the ledger ([`AnchorRecord`]).
//!
//! What is anchored, exactly:
//! - `logId` = SHA-256 of the log's origin ([`log_id`]);
//! - `seq` = 1, 2, 3, ... with no gaps (the contract enforces it);
//! - `treeSize` and `root` = the checkpoint's size and RFC 9162 root;
//! - `checkpointHash` = SHA-256 of the complete signed checkpoint note text
//!   ([`checkpoint_hash`]), tying the chain to the note the client holds;
//! - `prevRoot`, `prevCheckpointHash` = what the contract holds at `seq - 1` (zero for
//!   seq 1), and `consistency` = the ledger's RFC 9162 consistency proof from that tree to
//!   this one. The contract verifies it, so every anchor of the log lies on one linear
//!   history; the anchorer verifies it first and never sends a checkpoint that does not
//!   extend the last anchored one ([`AnchorError::NotAnExtension`]).
//!
//! Files: [`contract`] (bindings from the committed artifact), [`state`] (the state
//! machine's record and status), [`store`] (the storage seam), [`reader`] (read-only
//! RPC calls and `Anchored` event decoding, shared with the verifier), [`chain`] (the
//! submitting account's transactions on top), [`anchorer`] (the loop; following a
//! record, submitting, and recovering from reorgs deeper than finality), [`resume`]
//! (before a log serves again: does it extend the chain's newest anchor? A data
//! directory restored from a stale backup does not), [`backoff`], [`chain_key`],
//! [`deploy`](mod@deploy), [`error`], [`keys`] (the log's keys on chain, rotations).
//!
//! Starting it in a server:
//! ```no_run
//! # async fn start(ledger: std::sync::Arc<sworn_ledger::Ledger>) -> Result<(), sworn_ledger::anchor::AnchorError> {
//! use sworn_ledger::anchor::{AnchorConfig, Anchorer, Deployment, load_chain_key};
//! let deployment = Deployment::load("anvil/deployment.json".as_ref())?;
//! let mut config = AnchorConfig::new("http://127.0.0.1:8545", deployment.address, ledger.origin());
//! config.chain_id = Some(deployment.chain_id);
//! config.deploy_block = deployment.deploy_block;
//! let signer = load_chain_key("anvil/state/dev-chain-key".as_ref())?;
//! let handle = Anchorer::new(config, signer, ledger)?.spawn();
//! let status = handle.status(); // finalized seq/size, lag, RPC health, last error
//! # drop(status); handle.shutdown().await; Ok(()) }
//! ```

pub mod anchorer;
pub mod backoff;
pub mod chain;
pub mod chain_key;
pub mod contract;
pub mod deploy;
pub mod error;
pub mod keys;
pub mod reader;
pub mod resume;
pub mod state;
pub mod store;

pub use anchorer::{AnchorConfig, Anchorer, AnchorerHandle, StepOutcome};
pub use backoff::BackoffPolicy;
pub use chain::{AnchorChain, PreviousAnchor};
pub use chain_key::load_chain_key;
pub use contract::{SwornAnchor, checkpoint_hash, log_id};
pub use deploy::{Deployment, deploy, deploy_with, register_log, register_log_with};
pub use error::{AnchorError, ContractRevert};
pub use keys::{
    ChainKey, KeyHistoryMismatch, chain_keys, compare_with_chain, history_from_chain,
    rotate_key_with,
};
pub use reader::{
    AnchoredEvent, ChainReader, Inclusion, MAX_ANCHOR_EVENTS, OnChainLatest, ReadError,
};
pub use resume::{NewestAnchor, ResumeError, Standing, check_extends, newest_anchor};
pub use state::{AnchorRecord, AnchorState, AnchorStatus};
pub use store::{AnchorStore, MemoryAnchorStore};
