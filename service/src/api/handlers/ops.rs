//! `/health`, `/ready`, `/metrics`, `/v1/models`: no generation, no ledger writes.

use std::sync::Arc;

use warp::Reply;
use warp::http::StatusCode;
use warp::http::header::AUTHORIZATION;
use warp::reply::Response;

use crate::api::errors::ApiError;
use crate::api::models::{HealthStatus, ModelCard, ModelList};
use crate::api::request_id::RequestId;
use crate::api::state::{AppState, Lifecycle};

fn status_reply(state: &AppState, request_id: &RequestId) -> Response {
    let (status, code) = match state.lifecycle() {
        Lifecycle::Ready => ("ok", StatusCode::OK),
        Lifecycle::Draining => ("shutting_down", StatusCode::SERVICE_UNAVAILABLE),
        Lifecycle::LedgerFailed => ("ledger_failed", StatusCode::SERVICE_UNAVAILABLE),
    };
    let mut response = warp::reply::with_status(
        warp::reply::json(&HealthStatus {
            status: status.to_string(),
        }),
        code,
    )
    .into_response();
    request_id.stamp(&mut response);
    response
}

/// `GET /health`: 200 while serving, 503 while draining or after a ledger fault (the
/// process then exits for a restart). No key needed.
pub async fn health(state: Arc<AppState>, request_id: RequestId) -> Response {
    status_reply(&state, &request_id)
}

/// `GET /ready`: as `/health`, and 503 while the queue is full (so a load balancer sends
/// new work elsewhere).
pub async fn ready(state: Arc<AppState>, request_id: RequestId) -> Response {
    let waiting = state
        .scheduler
        .stats()
        .waiting
        .load(std::sync::atomic::Ordering::Relaxed);
    if waiting >= state.scheduler.capacity() {
        return ApiError::Overloaded {
            queued: waiting,
            retry_after_s: state.overload_retry_after_s,
        }
        .into_response(&request_id);
    }
    status_reply(&state, &request_id)
}

/// `GET /metrics`: Prometheus text. No key needed.
pub async fn metrics(state: Arc<AppState>, request_id: RequestId) -> Response {
    let text = state
        .metrics
        .render(state.scheduler.stats(), &state.ledger_figures());
    let mut response =
        warp::reply::with_header(text, "content-type", "text/plain; version=0.0.4").into_response();
    request_id.stamp(&mut response);
    response
}

fn card(state: &AppState) -> ModelCard {
    ModelCard {
        id: state.model.id.clone(),
        object: "model".to_string(),
        created: state.model.created,
        owned_by: "sworn".to_string(),
        max_model_len: state.model.context_length,
        sha256: state.model.info.sha256.clone(),
    }
}

/// `GET /v1/models` and `GET /v1/models/{id}`.
pub async fn models(
    state: Arc<AppState>,
    id: Option<String>,
    request_id: RequestId,
    headers: warp::http::HeaderMap,
) -> Response {
    let result = (|| {
        state
            .auth()
            .authenticate(headers.get(AUTHORIZATION).map(|v| v.as_bytes()))?;
        match id {
            None => Ok(warp::reply::json(&ModelList {
                object: "list".to_string(),
                data: vec![card(&state)],
            })
            .into_response()),
            Some(id) if id == state.model.id => {
                Ok(warp::reply::json(&card(&state)).into_response())
            }
            Some(id) => Err(ApiError::ModelNotFound {
                model: id.chars().take(256).collect(),
            }),
        }
    })();
    let mut response = result.unwrap_or_else(|e: ApiError| e.into_response(&request_id));
    request_id.stamp(&mut response);
    response
}
