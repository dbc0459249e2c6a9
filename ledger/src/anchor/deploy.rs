//! Deploying SwornAnchor and registering a log from Rust (`sworn chain deploy`), and the
//! `deployment.json` file that `anvil/deploy.sh` writes and the service reads.

use std::path::Path;
use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::Url;
use serde::{Deserialize, Serialize};

use super::chain_key::load_chain_key;
use super::contract::{SwornAnchor, log_id};
use super::error::AnchorError;
use crate::small_file::read_capped;

/// How long a deployment or registration may take end to end (send + receipt).
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(120);

/// Largest deployment file read.
const MAX_DEPLOYMENT_FILE_LEN: u64 = 64 * 1024;

/// Where a SwornAnchor contract lives; the shape of `anvil/deployment.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Chain id.
    pub chain_id: u64,
    /// Contract address.
    pub address: Address,
    /// Block of the deploying transaction.
    pub deploy_block: u64,
    /// The deploying transaction.
    pub deploy_tx: B256,
    /// The RPC endpoint it was deployed through, if recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_url: Option<String>,
    /// The registered log's origin, if one was registered with the deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

impl Deployment {
    /// Reads a deployment file.
    pub fn load(path: &Path) -> Result<Self, AnchorError> {
        let fail = |reason: String| AnchorError::Config {
            reason: format!("deployment file {}: {reason}", path.display()),
        };
        let bytes = read_capped(path, MAX_DEPLOYMENT_FILE_LEN).map_err(|e| fail(e.reason()))?;
        serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))
    }
}

fn parse_url(rpc_url: &str) -> Result<Url, AnchorError> {
    rpc_url.parse().map_err(|e| AnchorError::Config {
        reason: format!("RPC URL {rpc_url:?}: {e}"),
    })
}

async fn within<T>(
    operation: &'static str,
    fut: impl std::future::Future<Output = Result<T, AnchorError>>,
) -> Result<T, AnchorError> {
    tokio::time::timeout(DEPLOY_TIMEOUT, fut)
        .await
        .map_err(|_| AnchorError::rpc(operation, format!("not done within {DEPLOY_TIMEOUT:?}")))?
}

/// Deploys SwornAnchor from the committed artifact's bytecode, sending from the key in
/// `chain_key_file` (which becomes the registry owner), and waits for the receipt.
pub async fn deploy(rpc_url: &str, chain_key_file: &Path) -> Result<Deployment, AnchorError> {
    deploy_with(rpc_url, load_chain_key(chain_key_file)?).await
}

/// [`deploy`] with a signer already loaded.
pub async fn deploy_with(
    rpc_url: &str,
    signer: PrivateKeySigner,
) -> Result<Deployment, AnchorError> {
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(parse_url(rpc_url)?);
    within("deploy", async {
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| AnchorError::rpc("eth_chainId", e))?;
        let pending = SwornAnchor::deploy_builder(&provider)
            .send()
            .await
            .map_err(|e| AnchorError::from_contract("deploy", &e))?;
        let receipt = pending
            .get_receipt()
            .await
            .map_err(|e| AnchorError::rpc("deploy receipt", e))?;
        let (Some(address), Some(deploy_block), true) = (
            receipt.contract_address,
            receipt.block_number,
            receipt.status(),
        ) else {
            return Err(AnchorError::rpc(
                "deploy",
                format!(
                    "transaction {} created no contract",
                    receipt.transaction_hash
                ),
            ));
        };
        Ok(Deployment {
            chain_id,
            address,
            deploy_block,
            deploy_tx: receipt.transaction_hash,
            rpc_url: Some(rpc_url.to_string()),
            origin: None,
        })
    })
    .await
}

/// Registers the log `origin` with its Ed25519 `public_key` and `submitter` on
/// `contract`, sending from the registry owner's key in `chain_key_file`.
pub async fn register_log(
    rpc_url: &str,
    chain_key_file: &Path,
    contract: Address,
    origin: &str,
    public_key: [u8; 32],
    submitter: Address,
) -> Result<B256, AnchorError> {
    register_log_with(
        rpc_url,
        load_chain_key(chain_key_file)?,
        contract,
        origin,
        public_key,
        submitter,
    )
    .await
}

/// [`register_log`] with a signer already loaded. Returns the registering transaction.
pub async fn register_log_with(
    rpc_url: &str,
    signer: PrivateKeySigner,
    contract: Address,
    origin: &str,
    public_key: [u8; 32],
    submitter: Address,
) -> Result<B256, AnchorError> {
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(parse_url(rpc_url)?);
    let instance = SwornAnchor::new(contract, &provider);
    within("registerLog", async {
        let call = instance.registerLog(log_id(origin), B256::from(public_key), submitter);
        // Simulate first, so a rejection comes back as a decoded custom error.
        call.call()
            .await
            .map_err(|e| AnchorError::from_contract("registerLog", &e))?;
        let receipt = call
            .send()
            .await
            .map_err(|e| AnchorError::from_contract("registerLog", &e))?
            .get_receipt()
            .await
            .map_err(|e| AnchorError::rpc("registerLog receipt", e))?;
        if !receipt.status() {
            return Err(AnchorError::rpc(
                "registerLog",
                format!("transaction {} reverted", receipt.transaction_hash),
            ));
        }
        Ok(receipt.transaction_hash)
    })
    .await
}
