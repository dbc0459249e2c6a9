//! The log's keys as SwornAnchor records them, and rotating them.
//!
//! The contract keeps a list of `(publicKey, fromSeq)` per log (`keyAt`, `logInfo`'s
//! `keyCount`): the key that signs the checkpoints anchored from `fromSeq` on. A rotation
//! recorded by `sworn log-key rotate` always takes `fromSeq` = the next seq after the old
//! key's last checkpoint, which was anchored (and final) first; so the contract also fixes
//! the rotation's *tree-size* boundary: the size anchored at `fromSeq - 1`, write-once.
//! [`chain_keys`] reads both, [`history_from_chain`] makes a
//! [`KeyHistory`](crate::key_history::KeyHistory) of them for a verifier, and
//! [`compare_with_chain`] holds a store's own history to the chain's before it serves.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256};
use alloy::providers::ProviderBuilder;
use alloy::signers::local::PrivateKeySigner;

use super::contract::{SwornAnchor, log_id};
use super::error::{AnchorError, ContractRevert};
use super::reader::{ChainReader, ReadError};
use crate::key_history::{KeyEpoch, KeyHistory};
use crate::keys::PinnedKey;

/// The most keys read for one log (the history's own cap).
const MAX_CHAIN_KEYS: u32 = crate::key_history::MAX_KEYS as u32;

/// One key entry of a log on the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainKey {
    /// The Ed25519 public key.
    pub public_key: [u8; 32],
    /// The first seq whose checkpoint it signs.
    pub from_seq: u64,
    /// The tree size anchored at `from_seq - 1` (0 for the first key): the first entry
    /// index the key signs. `None` while that seq is not anchored yet.
    pub from_size: Option<u64>,
}

impl ChainReader {
    /// `logInfo`: the number of keys and the newest anchored seq of `log_id`.
    pub async fn key_count_and_latest(&self, log_id: B256) -> Result<(u32, u64), ReadError> {
        let instance = self.instance();
        let out = self
            .call("logInfo", instance.logInfo(log_id).call().into_future())
            .await?;
        Ok((out.keyCount, out.latestSeq))
    }

    /// `keyAt`: key entry `index` of `log_id` (0 = the key given at registration).
    pub async fn key_at(&self, log_id: B256, index: u32) -> Result<(B256, u64), ReadError> {
        let instance = self.instance();
        let out = self
            .call(
                "keyAt",
                instance
                    .keyAt(log_id, alloy::primitives::U256::from(index))
                    .call()
                    .into_future(),
            )
            .await?;
        Ok((out.publicKey, out.fromSeq))
    }

    /// The newest block's number.
    pub async fn latest_block_number(&self) -> Result<u64, ReadError> {
        use alloy::providers::Provider;
        self.within("eth_blockNumber", self.provider().get_block_number())
            .await
    }

    /// `anchorAt(seq).treeSize`: the tree size anchored at `seq` (contract storage).
    pub async fn anchored_size(&self, log_id: B256, seq: u64) -> Result<u64, ReadError> {
        let instance = self.instance();
        let out = self
            .call(
                "anchorAt",
                instance.anchorAt(log_id, seq).call().into_future(),
            )
            .await?;
        Ok(out.treeSize)
    }
}

/// Every key the contract records for `log_id`, oldest first, with the tree size each
/// takes over at; `None` if the log is not registered there.
pub async fn chain_keys(
    reader: &ChainReader,
    log_id: B256,
) -> Result<Option<Vec<ChainKey>>, AnchorError> {
    let (count, latest) = match reader.key_count_and_latest(log_id).await {
        Ok(info) => info,
        Err(e) => {
            let e = AnchorError::from(e);
            if matches!(e.revert(), Some(ContractRevert::UnknownLog { .. })) {
                return Ok(None);
            }
            return Err(e);
        }
    };
    if count > MAX_CHAIN_KEYS {
        return Err(AnchorError::Config {
            reason: format!("the contract records {count} keys, over the cap of {MAX_CHAIN_KEYS}"),
        });
    }
    let mut keys = Vec::with_capacity(count as usize);
    for index in 0..count {
        let (public_key, from_seq) = reader.key_at(log_id, index).await?;
        let from_size = if from_seq <= 1 {
            Some(0)
        } else if from_seq - 1 <= latest {
            Some(reader.anchored_size(log_id, from_seq - 1).await?)
        } else {
            None
        };
        keys.push(ChainKey {
            public_key: public_key.0,
            from_seq,
            from_size,
        });
    }
    Ok(Some(keys))
}

/// The history a verifier trusts from the chain's keys. A rotation whose boundary is not
/// anchored yet (the seq before its `fromSeq`) is left out with every key after it: until
/// that anchor exists the previous key still signs, and nothing of the new key's can be
/// placed.
pub fn history_from_chain(origin: &str, keys: &[ChainKey]) -> Result<KeyHistory, String> {
    let mut epochs = Vec::with_capacity(keys.len());
    for k in keys {
        let Some(from_size) = k.from_size else { break };
        let key = PinnedKey::new(origin, &k.public_key)
            .map_err(|e| format!("the contract's key from seq {}: {e}", k.from_seq))?;
        epochs.push(KeyEpoch {
            key,
            from_size,
            from_seq: k.from_seq,
        });
    }
    KeyHistory::new(epochs).map_err(|e| format!("the contract's keys: {e}"))
}

/// Why a store's key history is not the chain's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the log's key history disagrees with the chain's: {detail}")]
pub struct KeyHistoryMismatch {
    /// What differs.
    pub detail: String,
}

fn describe(public_key: &[u8; 32], from_seq: u64, from_size: Option<u64>) -> String {
    format!(
        "key {} from seq {from_seq} (tree size {})",
        hex::encode(public_key),
        from_size.map_or("not anchored yet".to_string(), |s| s.to_string())
    )
}

/// Holds a store's key history to the chain's: the same keys, in the same order, from the
/// same seqs and tree sizes.
pub fn compare_with_chain(
    local: &KeyHistory,
    chain: &[ChainKey],
) -> Result<(), KeyHistoryMismatch> {
    let mismatch = |detail: String| Err(KeyHistoryMismatch { detail });
    for (i, (l, c)) in local.epochs().iter().zip(chain).enumerate() {
        let lk = l.key.public_key_bytes();
        if lk != c.public_key || l.from_seq != c.from_seq || Some(l.from_size) != c.from_size {
            return mismatch(format!(
                "key {i}: the store has {}, the contract {}",
                describe(&lk, l.from_seq, Some(l.from_size)),
                describe(&c.public_key, c.from_seq, c.from_size)
            ));
        }
    }
    if let Some(extra) = local.epochs().get(chain.len()) {
        return mismatch(format!(
            "the store records a rotation to {} that the contract does not hold",
            describe(
                &extra.key.public_key_bytes(),
                extra.from_seq,
                Some(extra.from_size)
            )
        ));
    }
    if let Some(extra) = chain.get(local.epochs().len()) {
        return mismatch(format!(
            "the contract records a rotation to {} that this store does not (a data \
             directory from before the rotation, or a rotation sent outside `sworn log-key \
             rotate`)",
            describe(&extra.public_key, extra.from_seq, extra.from_size)
        ));
    }
    Ok(())
}

/// Sends `rotateKey(logId(origin), public_key, from_seq)` from the log admin's `signer`
/// (simulated first, so a refusal comes back decoded) and waits for its receipt. Returns
/// the transaction hash and its block number.
pub async fn rotate_key_with(
    rpc_url: &str,
    signer: PrivateKeySigner,
    contract: Address,
    origin: &str,
    public_key: [u8; 32],
    from_seq: u64,
) -> Result<(B256, u64), AnchorError> {
    let url = rpc_url.parse().map_err(|e| AnchorError::Config {
        reason: format!("RPC URL {rpc_url:?}: {e}"),
    })?;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url);
    let instance = SwornAnchor::new(contract, &provider);
    let call = instance.rotateKey(log_id(origin), B256::from(public_key), from_seq);
    let send = async {
        call.call()
            .await
            .map_err(|e| AnchorError::from_contract("rotateKey", &e))?;
        let receipt = call
            .send()
            .await
            .map_err(|e| AnchorError::from_contract("rotateKey", &e))?
            .get_receipt()
            .await
            .map_err(|e| AnchorError::rpc("rotateKey receipt", e))?;
        if !receipt.status() {
            return Err(AnchorError::rpc(
                "rotateKey",
                format!("transaction {} reverted", receipt.transaction_hash),
            ));
        }
        let block = receipt.block_number.unwrap_or_default();
        Ok((receipt.transaction_hash, block))
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), send)
        .await
        .map_err(|_| AnchorError::rpc("rotateKey", "not done within 120 s"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::LogKey;

    const ORIGIN: &str = "sworn.example/chain-keys";

    fn chain(sizes: &[Option<u64>]) -> Vec<ChainKey> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, s)| ChainKey {
                public_key: LogKey::from_seed([i as u8 + 1; 32]).public_key_bytes(),
                from_seq: 1 + 3 * i as u64,
                from_size: *s,
            })
            .collect()
    }

    #[test]
    fn equal_histories_pass_and_every_difference_is_named() {
        let c = chain(&[Some(0), Some(12)]);
        let local = history_from_chain(ORIGIN, &c).unwrap();
        assert!(compare_with_chain(&local, &c).is_ok());
        // The chain holds a rotation the store does not (a pre-rotation backup).
        let single = history_from_chain(ORIGIN, &c[..1]).unwrap();
        let e = compare_with_chain(&single, &c).unwrap_err();
        assert!(e.detail.contains("this store does not"), "{e}");
        // The store holds a rotation the chain does not.
        let e = compare_with_chain(&local, &c[..1]).unwrap_err();
        assert!(e.detail.contains("does not hold"), "{e}");
        // Another boundary.
        let mut moved = c;
        moved[1].from_size = Some(13);
        assert!(compare_with_chain(&local, &moved).is_err());
        // A rotation whose boundary is not anchored yet is left out of a verifier's history.
        let pending = chain(&[Some(0), Some(12), None]);
        assert_eq!(history_from_chain(ORIGIN, &pending).unwrap(), local);
    }
}
