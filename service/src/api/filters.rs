//! Routing only: which path and method reach which handler, with what arguments. Filters
//! that could reject (auth, body size, JSON) are deliberately not used here; handlers do that
//! work and answer with the envelope, keeping `x-request-id` on every response.

use std::convert::Infallible;
use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::errors::handle_rejection;
use super::handlers::audit::AuditRoute;
use super::handlers::tokens::TokenRoute;
use super::handlers::{audit, generate, ops, tokens};
use super::request_id::request_id;
use super::state::AppState;
use super::validation::Endpoint;

fn with_state(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// The raw query string, empty when absent.
fn raw_query() -> impl Filter<Extract = (String,), Error = Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

type Route = BoxedFilter<(Response,)>;

/// POST /v1/chat/completions and POST /v1/completions: one handler, told which.
fn generation(state: Arc<AppState>, endpoint: Endpoint) -> Route {
    let path = match endpoint {
        Endpoint::Chat => warp::path!("v1" / "chat" / "completions").boxed(),
        Endpoint::Completion => warp::path!("v1" / "completions").boxed(),
    };
    path.and(warp::post())
        .and(with_state(state))
        .map(move |state| (state, endpoint))
        .untuple_one()
        .and(request_id())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(generate::answer)
        .boxed()
}

/// GET /v1/models and GET /v1/models/{id}
fn models(state: Arc<AppState>) -> Route {
    let list = warp::path!("v1" / "models").map(|| None::<String>);
    let one = warp::path!("v1" / "models" / String).map(Some);
    list.or(one)
        .unify()
        .and(warp::get())
        .and(with_state(state))
        .and(request_id())
        .and(warp::header::headers_cloned())
        .then(|id, state, request_id, headers| ops::models(state, id, request_id, headers))
        .boxed()
}

/// POST /tokenize and POST /detokenize (vLLM's token-counting routes)
fn token_routes(state: Arc<AppState>) -> Route {
    let tokenize = warp::path!("tokenize").map(|| TokenRoute::Tokenize);
    let detokenize = warp::path!("detokenize").map(|| TokenRoute::Detokenize);
    tokenize
        .or(detokenize)
        .unify()
        .and(warp::post())
        .and(with_state(state))
        .map(|route, state| (state, route))
        .untuple_one()
        .and(request_id())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(tokens::tokens)
        .boxed()
}

/// GET /health, GET /ready, GET /metrics (no key)
fn operations(state: Arc<AppState>) -> Route {
    let health = warp::path!("health")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request_id())
        .then(ops::health);
    let ready = warp::path!("ready")
        .and(warp::get())
        .and(with_state(state.clone()))
        .and(request_id())
        .then(ops::ready);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_state(state))
        .and(request_id())
        .then(ops::metrics);
    health.or(ready).unify().or(metrics).unify().boxed()
}

/// GET /v1/audit/{key,checkpoint,anchors,export,proof/inclusion,proof/consistency},
/// GET /v1/audit/receipts/{request_id}, POST /v1/audit/erase/{request_id}
fn audit_routes(state: Arc<AppState>) -> Route {
    let fixed = |route: AuditRoute| warp::any().map(move || route.clone());
    let get = warp::path!("v1" / "audit" / "key")
        .and(fixed(AuditRoute::Key))
        .or(warp::path!("v1" / "audit" / "checkpoint").and(fixed(AuditRoute::Checkpoint)))
        .unify()
        .or(warp::path!("v1" / "audit" / "anchors").and(fixed(AuditRoute::Anchors)))
        .unify()
        .or(warp::path!("v1" / "audit" / "export").and(fixed(AuditRoute::Export)))
        .unify()
        .or(warp::path!("v1" / "audit" / "proof" / "inclusion").and(fixed(AuditRoute::Inclusion)))
        .unify()
        .or(warp::path!("v1" / "audit" / "proof" / "consistency")
            .and(fixed(AuditRoute::Consistency)))
        .unify()
        .or(warp::path!("v1" / "audit" / "receipts" / String).map(AuditRoute::Receipt))
        .unify()
        .and(warp::get());
    let erase = warp::path!("v1" / "audit" / "erase" / String)
        .map(AuditRoute::Erase)
        .and(warp::post());
    get.or(erase)
        .unify()
        .and(with_state(state))
        .and(request_id())
        .and(warp::header::headers_cloned())
        .and(raw_query())
        .then(|route, state, request_id, headers, query| {
            audit::audit(state, route, request_id, headers, query)
        })
        .boxed()
}

/// Every route, with unmatched paths and methods mapped to the envelope.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    generation(state.clone(), Endpoint::Chat)
        .or(generation(state.clone(), Endpoint::Completion))
        .unify()
        .or(models(state.clone()))
        .unify()
        .or(token_routes(state.clone()))
        .unify()
        .or(operations(state.clone()))
        .unify()
        .or(audit_routes(state))
        .unify()
        .recover(|err: Rejection| handle_rejection(err))
        .unify()
}
