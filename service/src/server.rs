//! The server: [`routes`] (the warp filter tests mount without a socket) and [`Server`], which
//! serves it over TCP — TLS with rustls when given a certificate, plain HTTP only on loopback
//! unless explicitly allowed — with graceful shutdown.
//!
//! warp 0.4 has no TLS and no public streamed bodies, so connections are served here with
//! hyper-util directly: each accepted socket (after the TLS handshake, if any) runs warp's
//! service under a graceful-shutdown watcher.
//!
//! The listener is bound before the ledger and the model are loaded: until [`Server::ready`]
//! installs the routes, every request (`/health` included) gets 503 `model_loading` with
//! `Retry-After`, so orchestrators and clients can tell "starting" from "down".

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
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
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

/// Longest a TLS handshake may take before the connection is dropped (slowloris bound).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `Retry-After` seconds while the server is still loading.
const LOADING_RETRY_AFTER_S: u64 = 1;

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

/// Loads a rustls server configuration from PEM files (ALPN: h2, http/1.1).
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, ServerError> {
    let tls_err = |path: &Path, reason: String| ServerError::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(cert, "no certificate found".to_string()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, e.to_string()))?;
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
struct Handler(Arc<dyn Fn(hyper::Request<hyper::body::Incoming>) -> HandlerFuture + Send + Sync>);

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
                match service.call(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
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

type ResponseBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Converts warp's response, swapping in a [`StreamedBody`] parked by a handler.
fn finish_response(response: warp::reply::Response) -> hyper::Response<ResponseBody> {
    let (mut parts, body) = response.into_parts();
    if let Some(stream) = parts
        .extensions
        .remove::<StreamedBody>()
        .and_then(|s| s.take())
    {
        let frames = stream
            .map_ok(Frame::data)
            .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) });
        return hyper::Response::from_parts(parts, BodyExt::boxed_unsync(StreamBody::new(frames)));
    }
    let body = body.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) });
    hyper::Response::from_parts(parts, BodyExt::boxed_unsync(body))
}

impl Server {
    /// Binds and starts serving `state`'s routes.
    pub async fn start(
        state: Arc<AppState>,
        options: ListenOptions,
    ) -> Result<Server, ServerError> {
        let server = Server::start_loading(options).await?;
        server.ready(state);
        Ok(server)
    }

    /// Installs `state`'s routes: requests from now on are served, not told to wait.
    /// Only the first call has an effect.
    pub fn ready(&self, state: Arc<AppState>) {
        let _ = self.routes.set(Handler::new(routes(state)));
    }

    /// Binds and answers every request with 503 `model_loading` until [`Server::ready`].
    pub async fn start_loading(options: ListenOptions) -> Result<Server, ServerError> {
        let acceptor = match &options.tls {
            Some((cert, key)) => Some(TlsAcceptor::from(load_tls(cert, key)?)),
            None if !options.addr.ip().is_loopback() && !options.allow_plain_http => {
                return Err(ServerError::PlainHttpNotAllowed { addr: options.addr });
            }
            None => None,
        };
        let listener =
            TcpListener::bind(options.addr)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: options.addr,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: options.addr,
            source,
        })?;
        let (stop, stopped) = oneshot::channel();
        let tls = acceptor.is_some();
        let routes = Arc::new(OnceLock::new());
        let task = tokio::spawn(accept_loop(listener, acceptor, routes.clone(), stopped));
        Ok(Server {
            local_addr,
            tls,
            stop: Some(stop),
            task,
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
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    routes: Arc<OnceLock<Handler>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let graceful = GracefulShutdown::new();
    let loading = Handler::loading();
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
        let routes = routes.clone();
        let loading = loading.clone();
        let hyper_service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                // Looked up per request: a connection opened while loading is served
                // properly once the routes are in.
                let handler = routes.get().unwrap_or(&loading).clone();
                async move { Ok::<_, Infallible>(finish_response((handler.0)(request).await)) }
            });
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let result = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => {
                            let connection = builder
                                .serve_connection(TokioIo::new(tls), hyper_service)
                                .into_owned();
                            watcher.watch(connection).await
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), hyper_service)
                        .into_owned();
                    watcher.watch(connection).await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Drains the server and the ledger: stop taking generation requests, let in-flight requests
/// finish (up to `grace`), wait for their receipts, then flush the ledger and seal a last
/// checkpoint.
pub async fn shutdown(server: Server, state: Arc<AppState>, grace: Duration) {
    state.start_draining();
    if tokio::time::timeout(grace, server.stop()).await.is_err() {
        tracing::warn!(
            ?grace,
            "in-flight requests did not finish within the grace period"
        );
    }
    if tokio::time::timeout(grace, state.in_flight.wait_idle())
        .await
        .is_err()
    {
        tracing::warn!("some receipts were still being written at shutdown");
    }
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
