//! Route handlers: async functions taking plain arguments and returning a finished response.
//! They never reject: once a route has matched, every outcome is a response (errors through
//! [`crate::api::errors::ApiError`]), so warp never backtracks into another route.

pub mod audit;
pub mod generate;
pub mod ops;
pub mod tokens;

use warp::http::HeaderMap;
use warp::http::header::AUTHORIZATION;
use warp::reply::Response;

use super::auth::Tenant;
use super::errors::ApiError;
use super::request_id::RequestId;
use super::state::AppState;

/// The caller's key, checked, and one request taken from its per-minute budget.
fn admit(state: &AppState, headers: &HeaderMap) -> Result<Tenant, ApiError> {
    let authorization = headers.get(AUTHORIZATION).map(|v| v.as_bytes());
    let tenant = state.auth().authenticate(authorization)?;
    state.rate_limiter.admit_request(&tenant)?;
    Ok(tenant)
}

/// A handler's outcome as the response: stamped with the request id, or the error's
/// envelope, counted in the failure metrics.
fn respond(
    state: &AppState,
    request_id: &RequestId,
    result: Result<Response, ApiError>,
) -> Response {
    let mut response = result.unwrap_or_else(|err| {
        state.metrics.record_failure(err.metric_label());
        err.into_response(request_id)
    });
    request_id.stamp(&mut response);
    response
}
