//! `/v1/audit/*`: what an auditor needs to check answers against the log (DESIGN §8).
//!
//! Every route needs a key. A user key sees only its own tenant's receipts; export and
//! erasure need an admin key. Proof sizes must be durable; indices and sizes come from the
//! query string and are checked by the ledger before any read.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde_json::{Value, json};
use sworn_ledger::merkle::{Hash, InclusionProof};
use sworn_ledger::store::StoreError;
use warp::Reply;
use warp::http::HeaderMap;
use warp::reply::Response;

use crate::api::auth::{Tenant, require_admin};
use crate::api::errors::ApiError;
use crate::api::request_id::RequestId;
use crate::api::state::AppState;
use crate::api::streamed_body::StreamedBody;
use futures::StreamExt;

/// Longest query string read: the audit routes take two small integers.
const MAX_QUERY_BYTES: usize = 1024;
/// Export bytes buffered between the blocking writer and a slow client.
const EXPORT_CHANNEL_CHUNKS: usize = 16;
/// Size of each export chunk sent to the client.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;

/// Which audit route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditRoute {
    /// `GET /v1/audit/key`.
    Key,
    /// `GET /v1/audit/checkpoint`.
    Checkpoint,
    /// `GET /v1/audit/receipts/{request_id}`.
    Receipt(String),
    /// `GET /v1/audit/proof/inclusion?index=&size=`.
    Inclusion,
    /// `GET /v1/audit/proof/consistency?old=&new=`.
    Consistency,
    /// `GET /v1/audit/anchors`.
    Anchors,
    /// `GET /v1/audit/export` (admin).
    Export,
    /// `POST /v1/audit/erase/{request_id}` (admin).
    Erase(String),
}

/// Answers one audit route.
pub async fn audit(
    state: Arc<AppState>,
    route: AuditRoute,
    request_id: RequestId,
    headers: HeaderMap,
    query: String,
) -> Response {
    let result = async {
        let tenant = super::admit(&state, &headers)?;
        let query = parse_query(&query)?;
        answer(&state, route, &tenant, &query, &request_id).await
    }
    .await;
    super::respond(&state, &request_id, result)
}

fn store_error(err: StoreError, request_id: &RequestId) -> ApiError {
    match err {
        StoreError::InvalidProofRequest { reason } => ApiError::InvalidRequest {
            message: format!("Invalid proof request: {reason}."),
            param: None,
        },
        StoreError::NotFound { what } => ApiError::NotFound {
            message: format!("Not found: {what}."),
        },
        StoreError::AlreadyErased { request_id } => ApiError::InvalidRequest {
            message: format!("The content of request `{request_id}` was already erased."),
            param: Some("request_id".to_string()),
        },
        other => {
            tracing::error!(%request_id, error = %other, "ledger read failed");
            internal(request_id)
        }
    }
}

fn internal(request_id: &RequestId) -> ApiError {
    ApiError::Internal {
        request_id: request_id.to_string(),
    }
}

fn json_response<T: Serialize>(value: &T) -> Response {
    warp::reply::json(value).into_response()
}

async fn answer(
    state: &Arc<AppState>,
    route: AuditRoute,
    tenant: &Tenant,
    query: &HashMap<String, u64>,
    request_id: &RequestId,
) -> Result<Response, ApiError> {
    let ledger = &state.ledger;
    let fail = |e| store_error(e, request_id);
    match route {
        AuditRoute::Key => {
            let key = ledger.public_key();
            Ok(json_response(&json!({
                "origin": ledger.origin(),
                "vkey": key.to_vkey(),
                "public_key": hex::encode(key.public_key_bytes()),
                "key_id": hex::encode(key.key_id()),
            })))
        }
        AuditRoute::Checkpoint => {
            let checkpoint = match query.get("size") {
                Some(&size) => ledger.checkpoint_at(size).map_err(fail)?,
                None => ledger.latest_checkpoint().map_err(fail)?,
            };
            let checkpoint = checkpoint.ok_or_else(|| ApiError::NotFound {
                message: "No such checkpoint.".to_string(),
            })?;
            Ok(json_response(&json!({
                "origin": checkpoint.checkpoint.origin,
                "size": checkpoint.checkpoint.size,
                "root_hash": checkpoint.checkpoint.root.to_hex(),
                "note": checkpoint.note,
            })))
        }
        AuditRoute::Receipt(wanted) => receipt(state, tenant, &wanted, request_id).await,
        AuditRoute::Inclusion => {
            let index = required(query, "index")?;
            let size = query.get("size").copied().unwrap_or_else(|| ledger.size());
            let mut proof = inclusion(&ledger.inclusion_proof(index, size).map_err(fail)?);
            proof["root_hash"] = json!(ledger.root(size).map_err(fail)?.to_hex());
            Ok(json_response(&proof))
        }
        AuditRoute::Consistency => {
            let old = required(query, "old")?;
            let new = query.get("new").copied().unwrap_or_else(|| ledger.size());
            let proof = ledger.consistency_proof(old, new).map_err(fail)?;
            Ok(json_response(&json!({
                "old_size": proof.old_size,
                "new_size": proof.new_size,
                "old_root_hash": ledger.root(old).map_err(fail)?.to_hex(),
                "new_root_hash": ledger.root(new).map_err(fail)?.to_hex(),
                "hashes": hex_path(&proof.path),
            })))
        }
        AuditRoute::Anchors => {
            let mut anchors = Vec::new();
            for record in ledger.anchor_records() {
                let (seq, bytes) = record.map_err(fail)?;
                // Records are the anchorer's JSON; anything else is shown as hex.
                let record = serde_json::from_slice::<Value>(&bytes)
                    .unwrap_or_else(|_| json!({ "hex": hex::encode(&bytes) }));
                anchors.push(json!({ "seq": seq, "record": record }));
            }
            Ok(json_response(
                &json!({ "anchoring": state.anchor.is_some(), "anchors": anchors }),
            ))
        }
        AuditRoute::Export => {
            require_admin(tenant)?;
            Ok(export(state.ledger.clone(), request_id.clone()))
        }
        AuditRoute::Erase(wanted) => {
            require_admin(tenant)?;
            if !sworn_ledger::receipt::is_valid_request_id(&wanted) {
                return Err(not_found_receipt());
            }
            let outcome = ledger.erase_async(&wanted).await.map_err(fail)?;
            tracing::info!(%request_id, erased_index = outcome.erased_index, "content erased on request");
            Ok(json_response(&json!({
                "erased_index": outcome.erased_index,
                "event_index": outcome.event.index,
                "event_leaf_hash": outcome.leaf_hash.to_hex(),
            })))
        }
    }
}

fn not_found_receipt() -> ApiError {
    ApiError::NotFound {
        message: "No receipt with this request id.".to_string(),
    }
}

/// The receipt for a request id, with an inclusion proof to the newest checkpoint (sealing
/// one first if none covers it yet).
async fn receipt(
    state: &Arc<AppState>,
    tenant: &Tenant,
    wanted: &str,
    request_id: &RequestId,
) -> Result<Response, ApiError> {
    let ledger = &state.ledger;
    let fail = |e| store_error(e, request_id);
    if !sworn_ledger::receipt::is_valid_request_id(wanted) {
        return Err(not_found_receipt());
    }
    let receipt = ledger
        .receipt_by_request_id(wanted)
        .map_err(fail)?
        .ok_or_else(not_found_receipt)?;
    // Tenants see only their own receipts (the salts open their commitments).
    if tenant.role != crate::api_keys::Role::Admin && receipt.body.tenant != tenant.id {
        return Err(not_found_receipt());
    }
    let index = receipt.entry.index;
    // An erased receipt comes with the log's signed erasure event: without it, missing
    // salts would prove nothing (anyone can strip them). Both are proven to one checkpoint.
    let erasure = match receipt.salts {
        Some(_) => None,
        None => {
            let event = ledger.erasure_of(index).map_err(fail)?;
            let entry = event.map(|at| ledger.entry(at)).transpose().map_err(fail)?;
            Some(entry.flatten().ok_or_else(|| internal(request_id))?)
        }
    };
    let needed = erasure.as_ref().map_or(index, |e| e.index.max(index));
    let mut checkpoint = ledger.latest_checkpoint().map_err(fail)?;
    if checkpoint
        .as_ref()
        .is_none_or(|c| c.checkpoint.size <= needed)
    {
        let sealer = ledger.clone();
        let sealed = tokio::task::spawn_blocking(move || sealer.seal_now())
            .await
            .map_err(|_| internal(request_id))?
            .map_err(fail)?;
        checkpoint = sealed.or(ledger.latest_checkpoint().map_err(fail)?);
    }
    let checkpoint = checkpoint.ok_or_else(|| internal(request_id))?;
    let size = checkpoint.checkpoint.size;
    let mut bundle = json!({
        "receipt": receipt.to_json(),
        "inclusion": inclusion(&ledger.inclusion_proof(index, size).map_err(fail)?),
        "checkpoint": {
            "size": size,
            "root_hash": checkpoint.checkpoint.root.to_hex(),
            "note": checkpoint.note,
        },
    });
    if let Some(entry) = erasure {
        bundle["erasure"] = json!({
            "entry": {
                "index": entry.index,
                "leaf_hash": entry.leaf_hash().to_hex(),
                "body": String::from_utf8_lossy(&entry.body),
                "signature": BASE64.encode(entry.signature.to_bytes()),
            },
            "inclusion": inclusion(&ledger.inclusion_proof(entry.index, size).map_err(fail)?),
        });
    }
    Ok(json_response(&bundle))
}

/// Streams the NDJSON export: the ledger's blocking writer runs on a blocking task and hands
/// chunks to the response through a small bounded channel, so memory stays flat.
fn export(ledger: sworn_ledger::store::Ledger, request_id: RequestId) -> Response {
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(EXPORT_CHANNEL_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let writer =
            std::io::BufWriter::with_capacity(EXPORT_CHUNK_BYTES, ChannelWriter { tx: tx.clone() });
        if let Err(err) = sworn_ledger::export::write_export(&ledger, writer) {
            tracing::warn!(%request_id, error = %err, "export stopped");
            let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
        }
    });
    let body =
        tokio_stream::wrappers::ReceiverStream::new(rx).map(|chunk| chunk.map(bytes::Bytes::from));
    let mut response = Response::default();
    response.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/x-ndjson"),
    );
    response
        .extensions_mut()
        .insert(StreamedBody::new(body.boxed()));
    response
}

/// `Write` into a channel: each flush of the `BufWriter` becomes one response chunk.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hex_path(path: &[Hash]) -> Vec<String> {
    path.iter().map(Hash::to_hex).collect()
}

/// An inclusion proof as the audit routes show it.
fn inclusion(proof: &InclusionProof) -> Value {
    json!({ "index": proof.index, "tree_size": proof.tree_size, "hashes": hex_path(&proof.path) })
}

fn required(query: &HashMap<String, u64>, name: &str) -> Result<u64, ApiError> {
    query
        .get(name)
        .copied()
        .ok_or_else(|| ApiError::InvalidRequest {
            message: format!("Query parameter `{name}` is required."),
            param: Some(name.to_string()),
        })
}

/// `a=1&b=2` with non-negative integer values only (all the audit routes take).
fn parse_query(query: &str) -> Result<HashMap<String, u64>, ApiError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::InvalidRequest {
            message: format!("The query string is longer than {MAX_QUERY_BYTES} bytes."),
            param: None,
        });
    }
    let mut out = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = value.parse::<u64>().map_err(|_| ApiError::InvalidRequest {
            message: format!("Query parameter `{name}` must be a non-negative integer."),
            param: Some(name.chars().take(64).collect()),
        })?;
        out.insert(name.to_string(), number);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_take_integers_only() {
        let q = parse_query("index=3&size=10").unwrap();
        assert_eq!((q["index"], q["size"]), (3, 10));
        assert!(parse_query("").unwrap().is_empty());
        assert!(parse_query("index=-1").is_err());
        assert!(parse_query("index=%31").is_err());
        assert!(parse_query(&"a=1&".repeat(400)).is_err());
    }
}
