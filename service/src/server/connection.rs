//! One connection, from the first byte to the close: hyper serves it under the limits, and
//! this task watches it.
//!
//! * The request head: hyper's `header_read_timeout` (with a tokio timer) ends a connection
//!   whose head is not complete in time; a client that had started one gets 408
//!   `request_timeout` in the envelope.
//! * The request body: [`TimedBody`] fails the read once the body is not complete within
//!   `body_read_timeout` of its head; the route's answer becomes 408 `request_timeout`. Only
//!   the read is bounded: an answer streams for as long as it takes.
//! * Idle: a connection with no request in flight for `keep_alive_timeout` is shut down
//!   gracefully; so is every connection when the server stops, and one with nothing in
//!   flight is dropped at once then.
//! * Early answers: an HTTP/1 answer sent before its request body was read carries
//!   `Connection: close`, and the unread rest is drained for a moment before the socket is
//!   closed, so that the client reads the answer instead of a reset.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONNECTION, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep, timeout};

use super::framing::{ConnIo, Slot, render, take};
use super::limits::{ConnShared, ConnectionLimits, MAX_HEADERS, REFUSAL_HOLD};
use super::{BoxError, Handler, ResponseBody, finish_response};
use crate::api::errors::ApiError;
use crate::api::request_id::{REQUEST_ID_HEADER, RequestId};

/// Longest wait for one read (or write) while draining a closing connection.
const LINGER_IDLE: Duration = Duration::from_secs(1);
/// Longest a closing connection is drained in all.
const LINGER_TOTAL: Duration = Duration::from_secs(5);
/// `Retry-After` seconds on the 503 refusing a connection past the limit.
const REFUSAL_RETRY_AFTER_S: u64 = 1;

/// What every connection of one server shares.
#[derive(Debug)]
pub(crate) struct ConnContext {
    pub(crate) routes: Arc<OnceLock<Handler>>,
    pub(crate) loading: Handler,
    pub(crate) limits: ConnectionLimits,
    pub(crate) stop: watch::Receiver<bool>,
}

/// Serves one accepted connection (after its TLS handshake, if any) until it closes.
pub(crate) async fn serve<T>(
    stream: T,
    peer: SocketAddr,
    shared: Arc<ConnShared>,
    ctx: Arc<ConnContext>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot: Slot<T> = Arc::new(Mutex::new(None));
    let io = TokioIo::new(ConnIo::new(stream, slot.clone(), shared.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.limits.header_read_timeout)
        .max_headers(MAX_HEADERS);
    builder.http2().timer(TokioTimer::new());
    let mut connection =
        Box::pin(builder.serve_connection(io, service(ctx.clone(), shared.clone())));
    let keep_alive = ctx.limits.keep_alive_timeout;
    let mut idle = Box::pin(tokio::time::sleep(keep_alive));
    let mut stop = ctx.stop.clone();
    let (mut stopping, mut closing_idle) = (false, false);
    let ended = loop {
        tokio::select! {
            result = connection.as_mut() => break Some(result),
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                if shared.evictable() {
                    break None;
                }
                connection.as_mut().graceful_shutdown();
            }
            () = shared.eviction_requested() => {
                if shared.evictable() {
                    break None;
                }
                shared.eviction_declined();
            }
            () = idle.as_mut(), if !closing_idle => match shared.idle_for() {
                Some(idle_for) if idle_for >= keep_alive => {
                    closing_idle = true;
                    connection.as_mut().graceful_shutdown();
                }
                Some(idle_for) => idle.as_mut().reset(Instant::now() + (keep_alive - idle_for)),
                None => idle.as_mut().reset(Instant::now() + keep_alive),
            },
        }
    };
    // Dropping hyper's side puts the socket back in the slot.
    drop(connection);
    let Some(result) = ended else {
        tracing::debug!(%peer, "connection with nothing in flight closed (room for another, or shutdown)");
        return;
    };
    let Some(returned) = take(&slot) else {
        return;
    };
    let mut stream = returned.stream;
    let mut drain = shared.should_linger();
    if !returned.unwritten.is_empty() {
        let _ = timeout(LINGER_IDLE, stream.write_all(&returned.unwritten)).await;
    }
    if let Err(err) = result {
        let timed_out = err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout);
        if timed_out && shared.mid_head() {
            let request_id = RequestId::generate();
            tracing::debug!(%peer, %request_id, "request head not received in time");
            let late = not_received("head", ctx.limits.header_read_timeout);
            let _ = timeout(LINGER_IDLE, stream.write_all(&render(&late, &request_id))).await;
            drain = true;
        } else {
            tracing::debug!(%peer, error = %err, "connection ended with an error");
        }
    }
    if drain {
        linger(&mut stream, &shared, ctx.stop.clone()).await;
    }
}

/// The per-request service: the routes (or the loading answer) behind a timed body, with the
/// connection's bookkeeping around them.
fn service(
    ctx: Arc<ConnContext>,
    shared: Arc<ConnShared>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<ConnBody>,
    Error = Infallible,
    Future: Send + 'static,
> + Send
+ 'static {
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        shared.request_started();
        let in_flight = InFlight(shared.clone());
        // Looked up per request: a connection opened while loading is served properly once
        // the routes are in.
        let handler = ctx.routes.get().unwrap_or(&ctx.loading).clone();
        let http1 = request.version() < hyper::Version::HTTP_2;
        let (parts, inner) = request.into_parts();
        let progress = Arc::new(BodyProgress::new(inner.is_end_stream()));
        let limit = ctx.limits.body_read_timeout;
        let body = TimedBody {
            inner,
            deadline: Instant::now() + limit,
            limit,
            sleep: None,
            progress: progress.clone(),
        };
        async move {
            let mut response = (handler.0)(hyper::Request::from_parts(parts, body)).await;
            if progress.is(TIMED_OUT) && response.status().is_client_error() {
                // 408 in place of the route's answer to a body that never completed, keeping
                // the route's request id.
                let id = response.headers().get(REQUEST_ID_HEADER).cloned();
                response = not_received("body", limit).into_response(&RequestId::generate());
                if let Some(id) = id {
                    response.headers_mut().insert(REQUEST_ID_HEADER, id);
                }
            }
            if http1 && !progress.is(FINISHED) {
                // The rest of the body may still be on its way: the connection cannot carry
                // another request, and the client must not try.
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                in_flight.0.set_linger();
            }
            Ok::<_, Infallible>(finish_response(response).map(|inner| ConnBody {
                inner,
                _in_flight: in_flight,
            }))
        }
    })
}

/// 408 `request_timeout`: the request's `part` (head or body) did not arrive within `limit`.
fn not_received(part: &str, limit: Duration) -> ApiError {
    let message = format!(
        "The request {part} was not received within {}.",
        describe(limit)
    );
    ApiError::RequestTimeout { message }
}

/// `10s`, or `250ms` below a whole second.
fn describe(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// Counts a request in flight on its connection until its answer is sent or dropped.
#[derive(Debug)]
struct InFlight(Arc<ConnShared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// An answer's body, holding its request's place in flight.
#[derive(Debug)]
pub(crate) struct ConnBody {
    inner: ResponseBody,
    _in_flight: InFlight,
}

impl Body for ConnBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

const READING: u8 = 0;
const FINISHED: u8 = 1;
const TIMED_OUT: u8 = 2;

/// How far a request body got.
#[derive(Debug)]
struct BodyProgress(AtomicU8);

impl BodyProgress {
    fn new(finished: bool) -> BodyProgress {
        BodyProgress(AtomicU8::new(if finished { FINISHED } else { READING }))
    }

    fn is(&self, state: u8) -> bool {
        self.0.load(Ordering::Relaxed) == state
    }

    fn set(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {0}")]
struct BodyTimeout(String);

/// A request body that fails once it is not complete within its bound.
#[derive(Debug)]
pub(crate) struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    progress: Arc<BodyProgress>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.progress.is(TIMED_OUT) {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            // The end of the body, or its last frame (an error finishes nothing).
            if frame
                .as_ref()
                .is_none_or(|frame| frame.is_ok() && this.inner.is_end_stream())
            {
                this.progress.set(FINISHED);
            }
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if this.progress.is(FINISHED) {
            return Poll::Pending;
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        this.progress.set(TIMED_OUT);
        Poll::Ready(Some(Err(Box::new(BodyTimeout(describe(this.limit))))))
    }

    fn is_end_stream(&self) -> bool {
        self.progress.is(TIMED_OUT) || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// After an early answer: half-closes, then reads and discards what the client still sends,
/// until it closes, goes quiet, or the drain has lasted long enough (or the server stops, or
/// the room is needed).
async fn linger<T>(stream: &mut T, shared: &ConnShared, mut stop: watch::Receiver<bool>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let drain = async {
        let _ = timeout(LINGER_IDLE, stream.shutdown()).await;
        let deadline = Instant::now() + LINGER_TOTAL;
        let mut buf = vec![0; 16 * 1024];
        loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(LINGER_IDLE);
            if wait.is_zero() {
                break;
            }
            match timeout(wait, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            }
        }
    };
    tokio::select! {
        () = drain => {}
        () = shared.eviction_requested() => {}
        _ = stop.wait_for(|stop| *stop) => {}
    }
}

/// Answers a connection past the limit with 503 `too_many_connections` and closes it,
/// holding it at most [`REFUSAL_HOLD`].
pub(crate) async fn refuse<T>(mut stream: T, max_connections: usize)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let request_id = RequestId::generate();
    let full = ApiError::Unavailable {
        message: format!(
            "The server is serving its maximum of {max_connections} connections. Please retry after {REFUSAL_RETRY_AFTER_S}s."
        ),
        code: "too_many_connections",
        retry_after_s: REFUSAL_RETRY_AFTER_S,
    };
    let answer = render(&full, &request_id);
    let _ = timeout(REFUSAL_HOLD, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        // Drain what the client sent, so that closing does not reset the answer away.
        let mut buf = [0u8; 4096];
        while stream.read(&mut buf).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(describe(Duration::from_secs(10)), "10s");
        assert_eq!(describe(Duration::from_millis(250)), "250ms");
        assert_eq!(describe(Duration::from_millis(1500)), "1500ms");
    }
}
