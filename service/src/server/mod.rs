//! The server: [`routes`] (the warp filter tests mount without a socket) and [`Server`], which
//! serves it over TCP — TLS with rustls when given a certificate, plain HTTP only on loopback
//! unless explicitly allowed — with graceful shutdown.
//!
//! warp 0.4 has no TLS and no public streamed bodies, so connections are served here with
//! hyper-util directly: each accepted socket (after the TLS handshake, if any) runs warp's
//! service in its own task ([`connection`]), under the [`ConnectionLimits`]: a cap on
//! connections ([`limits`]), header, body and idle timeouts, and the OpenAI envelope for what
//! hyper would answer bare ([`framing`]).
//!
//! The listener is bound before the ledger and the model are loaded: until [`Server::ready`]
//! installs the routes, every request (`/health` included) gets 503 `model_loading` with
//! `Retry-After`, so orchestrators and clients can tell "starting" from "down".

mod connection;
mod framing;
mod limits;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower_service::Service;

use crate::api::errors::ApiError;
use crate::api::request_id::RequestId;
use crate::api::state::AppState;
use crate::api::streamed_body::StreamedBody;

pub use crate::api::filters::routes;
pub use limits::{
    ConnectionLimits, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, MAX_HEADERS, fit_to_fd_limit,
};

use connection::{ConnContext, TimedBody};
use limits::{EVICTION_WAIT, REFUSAL_HOLD, REFUSAL_SLOTS, Registry};

/// Longest a TLS handshake may take before the connection is dropped (slowloris bound).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `Retry-After` seconds while the server is still loading.
const LOADING_RETRY_AFTER_S: u64 = 1;
/// Least time between two warnings that connections are being refused.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the address failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Plain HTTP was asked for on a non-loopback address.
    #[error(
        "refusing plain HTTP on non-loopback address {addr}: give --tls-cert and --tls-key, or --allow-plain-http if a TLS proxy sits in front"
    )]
    PlainHttpNotAllowed {
        /// The address.
        addr: SocketAddr,
    },
    /// The certificate or key could not be loaded.
    #[error("TLS configuration from {path}: {reason}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// How to listen.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Address to bind (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Certificate chain and private key (PEM) for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Allow plain HTTP on a non-loopback address.
    pub allow_plain_http: bool,
}

/// Largest certificate-chain or key file read, in bytes (a long chain is a few KiB).
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Loads a rustls server configuration from PEM files (ALPN: h2, http/1.1).
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, ServerError> {
    let tls_err = |path: &Path, reason: String| ServerError::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let read = |path: &Path| {
        sworn_ledger::small_file::read_capped(path, MAX_PEM_BYTES)
            .map_err(|e| tls_err(path, e.reason()))
    };
    let cert_pem = read(cert)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(cert, "no certificate found".to_string()));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| tls_err(key, e.to_string()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| tls_err(key, e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    routes: Arc<OnceLock<Handler>>,
}

type HandlerFuture = Pin<Box<dyn Future<Output = warp::reply::Response> + Send>>;

/// A type-erased warp filter: one request in, one response out.
#[derive(Clone)]
struct Handler(Arc<dyn Fn(hyper::Request<TimedBody>) -> HandlerFuture + Send + Sync>);

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler")
    }
}

impl Handler {
    fn new<F>(filter: F) -> Handler
    where
        F: warp::Filter<Extract = (warp::reply::Response,), Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        F::Future: Send,
    {
        let service = warp::service(filter);
        Handler(Arc::new(move |request| {
            let mut service = service.clone();
            Box::pin(async move {
                service
                    .call(request)
                    .await
                    .unwrap_or_else(|never| match never {})
            })
        }))
    }

    /// What every route answers before [`Server::ready`]: 503 `model_loading`.
    fn loading() -> Handler {
        use warp::Filter;
        Handler::new(
            warp::any()
                .and(crate::api::request_id::request_id())
                .map(|request_id: RequestId| {
                    ApiError::Unavailable {
                        message: format!(
                            "The server is starting: the ledger and the model are still loading. Please retry after {LOADING_RETRY_AFTER_S}s."
                        ),
                        code: "model_loading",
                        retry_after_s: LOADING_RETRY_AFTER_S,
                    }
                    .into_response(&request_id)
                }),
        )
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// Converts warp's response, swapping in a [`StreamedBody`] parked by a handler.
fn finish_response(response: warp::reply::Response) -> hyper::Response<ResponseBody> {
    let (mut parts, body) = response.into_parts();
    let body = match parts
        .extensions
        .remove::<StreamedBody>()
        .and_then(|s| s.take())
    {
        Some(stream) => {
            StreamBody::new(stream.map_ok(Frame::data).map_err(BoxError::from)).boxed_unsync()
        }
        None => body.map_err(BoxError::from).boxed_unsync(),
    };
    hyper::Response::from_parts(parts, body)
}

impl Server {
    /// Binds and starts serving `state`'s routes under the default [`ConnectionLimits`].
    pub async fn start(
        state: Arc<AppState>,
        options: ListenOptions,
    ) -> Result<Server, ServerError> {
        Server::start_with(state, options, ConnectionLimits::default()).await
    }

    /// Binds and starts serving `state`'s routes under `limits`.
    pub async fn start_with(
        state: Arc<AppState>,
        options: ListenOptions,
        limits: ConnectionLimits,
    ) -> Result<Server, ServerError> {
        let server = Server::start_loading_with(options, limits).await?;
        server.ready(state);
        Ok(server)
    }

    /// Installs `state`'s routes: requests from now on are served, not told to wait.
    /// Only the first call has an effect.
    pub fn ready(&self, state: Arc<AppState>) {
        let _ = self.routes.set(Handler::new(routes(state)));
    }

    /// Binds and answers every request with 503 `model_loading` until [`Server::ready`],
    /// under the default [`ConnectionLimits`].
    pub async fn start_loading(options: ListenOptions) -> Result<Server, ServerError> {
        Server::start_loading_with(options, ConnectionLimits::default()).await
    }

    /// Binds and answers every request with 503 `model_loading` until [`Server::ready`],
    /// under `limits`.
    pub async fn start_loading_with(
        options: ListenOptions,
        mut limits: ConnectionLimits,
    ) -> Result<Server, ServerError> {
        let addr = options.addr;
        let acceptor = match &options.tls {
            Some((cert, key)) => Some(TlsAcceptor::from(load_tls(cert, key)?)),
            None if !addr.ip().is_loopback() && !options.allow_plain_http => {
                return Err(ServerError::PlainHttpNotAllowed { addr });
            }
            None => None,
        };
        let bind_error = |source| ServerError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let (stop, stopped) = oneshot::channel();
        let tls = acceptor.is_some();
        let routes = Arc::new(OnceLock::new());
        let (stop_connections, stop_rx) = watch::channel(false);
        limits.max_connections = limits.max_connections.clamp(1, MAX_CONNECTIONS_CAP);
        let ctx = Arc::new(ConnContext {
            routes: routes.clone(),
            loading: Handler::loading(),
            limits,
            stop: stop_rx,
        });
        let accepting = accept_loop(listener, acceptor, ctx, stop_connections, stopped);
        Ok(Server {
            local_addr,
            tls,
            stop: Some(stop),
            task: tokio::spawn(accepting),
            routes,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL (`http://…` or `https://…`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Stops accepting, then waits for in-flight connections to finish their requests.
    /// Connections with nothing in flight close at once; a stalled one lasts at most until
    /// its header or body timeout.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Most connections one server may be configured for (a semaphore's permits fit in `u32`).
const MAX_CONNECTIONS_CAP: usize = 1 << 20;

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    ctx: Arc<ConnContext>,
    stop_connections: watch::Sender<bool>,
    mut stopped: oneshot::Receiver<()>,
) {
    let max_connections = ctx.limits.max_connections;
    let permits = Arc::new(Semaphore::new(max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSAL_SLOTS));
    let registry = Arc::new(Registry::default());
    let mut last_warning: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => make_room(&registry, &permits).await,
        };
        let Some(permit) = permit else {
            if last_warning.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY) {
                last_warning = Some(Instant::now());
                tracing::warn!(
                    max_connections,
                    "every connection is busy with a request: refusing new connections with 503"
                );
            }
            // Past the refusal slots too, the connection is dropped without an answer.
            if let Ok(slot) = refusals.clone().try_acquire_owned() {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    refuse(stream, acceptor, max_connections).await;
                });
            }
            continue;
        };
        let place = registry.admit(permit);
        let ctx = ctx.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let shared = place.shared().clone();
            match acceptor {
                Some(acceptor) => {
                    let mut stop = ctx.stop.clone();
                    let handshake = tokio::select! {
                        handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => handshake,
                        () = shared.eviction_requested() => return,
                        _ = stop.wait_for(|stop| *stop) => return,
                    };
                    match handshake {
                        Ok(Ok(tls)) => connection::serve(tls, peer, shared, ctx).await,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => connection::serve(stream, peer, shared, ctx).await,
            }
            drop(place);
        });
    }
    drop(listener);
    let _ = stop_connections.send(true);
    // Every connection holds a permit until its task ends: having them all back means every
    // connection is closed.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    let _ = refusals.acquire_many(REFUSAL_SLOTS as u32).await;
}

/// At the limit: asks the connection idle longest (with nothing in flight) to close, and
/// waits briefly for its place. `None` when every connection is busy with a request.
async fn make_room(registry: &Registry, permits: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    if !registry.evict_one() {
        return None;
    }
    tokio::time::timeout(EVICTION_WAIT, permits.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// Refuses a connection past the limit: 503 `too_many_connections` (after the handshake on
/// TLS; an HTTP/2 client over TLS is closed without an answer).
async fn refuse(stream: TcpStream, acceptor: Option<TlsAcceptor>, max_connections: usize) {
    match acceptor {
        None => connection::refuse(stream, max_connections).await,
        Some(acceptor) => {
            let Ok(Ok(tls)) = tokio::time::timeout(REFUSAL_HOLD, acceptor.accept(stream)).await
            else {
                return;
            };
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                connection::refuse(tls, max_connections).await;
            }
        }
    }
}

/// Once the grace period is over: how long the cancelled generations may take to write
/// their receipts, and then how long their clients get to take the last event.
const RECEIPT_DEADLINE: Duration = Duration::from_secs(10);
const FAREWELL_DEADLINE: Duration = Duration::from_secs(5);

/// Drains the server and the ledger: stop taking generation requests and let in-flight
/// ones finish, for up to `grace`. Then whatever still generates is cut: each answer is
/// sworn `cancelled` with exactly what its client was sent, and the client gets that
/// receipt and `[DONE]`. The engine thread is told to stop (the caller joins it), and
/// the ledger flushes and seals a last checkpoint.
pub async fn shutdown(server: Server, state: Arc<AppState>, grace: Duration) {
    state.start_draining();
    let stopping = server.stop();
    let mut stopping = std::pin::pin!(stopping);
    let drained = tokio::time::timeout(grace, async {
        (&mut stopping).await;
        state.swear.in_flight.wait_idle().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            ?grace,
            "grace period over: cancelling in-flight generations (each is sworn `cancelled` and its client gets the receipt)"
        );
        state.scheduler.stop();
        state.swear.in_flight.abort_all();
        if tokio::time::timeout(RECEIPT_DEADLINE, state.swear.in_flight.wait_idle())
            .await
            .is_err()
        {
            tracing::error!("some receipts were still being written at shutdown");
        }
        if tokio::time::timeout(FAREWELL_DEADLINE, &mut stopping)
            .await
            .is_err()
        {
            tracing::warn!("closing connections whose clients are not reading");
        }
    }
    state.scheduler.stop();
    let ledger = state.ledger.clone();
    match tokio::task::spawn_blocking(move || ledger.shutdown()).await {
        Ok(Ok(Some(checkpoint))) => {
            tracing::info!(size = checkpoint.checkpoint.size, "sealed final checkpoint")
        }
        Ok(Ok(None)) => tracing::info!("ledger closed; latest checkpoint already covers the log"),
        Ok(Err(err)) => tracing::error!(error = %err, "ledger shutdown failed"),
        Err(err) => tracing::error!(error = %err, "ledger shutdown task failed"),
    }
}
