//! Answers the HTTP stack would otherwise send bare, and the socket wrapper that sends ours.
//!
//! hyper parses HTTP/1.1 heads itself and, when it cannot (a bad request line, control bytes
//! in a header, more than [`MAX_HEADERS`] fields, a bad `Content-Length` or
//! `Transfer-Encoding`, a URI over its length limit), writes its own `400`, `431` or `414`
//! with an empty body before closing, without asking the service. [`ConnIo`] sits between
//! hyper and the socket and swaps exactly that canned answer for the OpenAI envelope with an
//! `x-request-id` (and `Connection: close`). It recognises the canned answer strictly: a
//! status line with one of those three codes followed only by `connection: close`,
//! `content-length: 0` and `date`, ending the write; every answer of the routes carries `x-request-id` and a body,
//! and on HTTP/2 connections nothing is rewritten.
//!
//! When hyper is done with the connection, [`ConnIo`] hands the socket back (see [`Slot`])
//! so that the connection task can still answer a header timeout and drain what a client
//! sends after an early answer.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::limits::{ConnShared, MAX_HEADERS, lock};
use crate::api::errors::ApiError;
use crate::api::request_id::RequestId;

/// The HTTP/2 connection preface (clients send it first; hyper answers nothing on it).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest canned answer hyper writes, with room to spare (status line, length, date).
const CANNED_MAX: usize = 256;

/// The socket, and what was left unwritten, once hyper has dropped the connection.
#[derive(Debug)]
pub(crate) struct Returned<T> {
    /// The socket.
    pub(crate) stream: T,
    /// Bytes of our replacement answer hyper closed before they were written.
    pub(crate) unwritten: Vec<u8>,
}

/// Where [`ConnIo`] puts the socket back when hyper drops it.
pub(crate) type Slot<T> = Arc<Mutex<Option<Returned<T>>>>;

/// Takes the socket back from a slot.
pub(crate) fn take<T>(slot: &Slot<T>) -> Option<Returned<T>> {
    lock(slot).take()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Still reading the first bytes: they may be the HTTP/2 preface, of which this many
    /// have matched so far.
    Unknown(usize),
    Http1,
    Http2,
}

/// The socket as hyper sees it: reads and writes pass through, hyper's canned parse-error
/// answers are replaced by the envelope, and the socket returns to its [`Slot`] on drop.
#[derive(Debug)]
pub(crate) struct ConnIo<T> {
    inner: Option<T>,
    slot: Slot<T>,
    shared: Arc<ConnShared>,
    protocol: Protocol,
    replacement: Vec<u8>,
    written: usize,
}

impl<T> ConnIo<T> {
    pub(crate) fn new(stream: T, slot: Slot<T>, shared: Arc<ConnShared>) -> ConnIo<T> {
        ConnIo {
            inner: Some(stream),
            slot,
            shared,
            protocol: Protocol::Unknown(0),
            replacement: Vec::new(),
            written: 0,
        }
    }

    fn learn_protocol(&mut self, read: &[u8]) {
        let Protocol::Unknown(matched) = self.protocol else {
            return;
        };
        let want = &H2_PREFACE[matched..];
        let n = read.len().min(want.len());
        self.protocol = if read[..n] != want[..n] {
            Protocol::Http1
        } else if matched + n == H2_PREFACE.len() {
            Protocol::Http2
        } else {
            Protocol::Unknown(matched + n)
        };
    }
}

impl<T: AsyncWrite + Unpin> ConnIo<T> {
    /// Writes what is left of our replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.replacement.len() {
            let rest = &self.replacement[self.written..];
            let n = ready!(Pin::new(connected(&mut self.inner)?).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// The socket, until [`ConnIo`] is dropped (which alone takes it).
fn connected<T>(inner: &mut Option<T>) -> io::Result<&mut T> {
    inner
        .as_mut()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection closed"))
}

impl<T> Drop for ConnIo<T> {
    fn drop(&mut self) {
        if let Some(stream) = self.inner.take() {
            let unwritten = self
                .replacement
                .split_off(self.written.min(self.replacement.len()));
            *lock(&self.slot) = Some(Returned { stream, unwritten });
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(connected(&mut this.inner)?).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            this.shared.saw_request_bytes();
            this.learn_protocol(read);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ConnIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        let canned = match this.protocol {
            Protocol::Http2 => None,
            _ => canned_answer(buf),
        };
        if let Some((at, error)) = canned {
            if at == 0 {
                let request_id = RequestId::generate();
                tracing::debug!(%request_id, status = %error.status(), "malformed request answered with the envelope");
                this.replacement = render(&error, &request_id);
                this.written = 0;
                this.shared.set_linger();
                // Reported as written; the envelope goes out in its place.
                return match this.poll_replacement(cx) {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    _ => Poll::Ready(Ok(buf.len())),
                };
            }
            // The end of an earlier answer comes first; the canned one on the next call.
            buf = &buf[..at];
        }
        let written = Pin::new(connected(&mut this.inner)?).poll_write(cx, buf);
        if written.is_pending() {
            this.shared.set_write_blocked(true);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        let flushed = Pin::new(connected(&mut this.inner)?).poll_flush(cx);
        // Blocked while pending, unblocked once flushed; a failed flush changes nothing.
        if !matches!(flushed, Poll::Ready(Err(_))) {
            this.shared.set_write_blocked(flushed.is_pending());
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(connected(&mut this.inner)?).poll_shutdown(cx)
    }

    // Not vectored: hyper then hands over each answer head as one contiguous buffer, which is
    // what lets a canned answer be recognised whole.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// Finds hyper's canned parse-error answer at the end of `buf`: where it starts, and the
/// error to answer instead.
fn canned_answer(buf: &[u8]) -> Option<(usize, ApiError)> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let window = buf.len().saturating_sub(CANNED_MAX);
    let tail = &buf[window..];
    let start = (0..tail.len())
        .rev()
        .find(|&i| tail[i..].starts_with(b"HTTP/1."))?;
    let error = parse_canned(&tail[start..])?;
    Some((window + start, error))
}

fn parse_canned(answer: &[u8]) -> Option<ApiError> {
    let text = std::str::from_utf8(answer).ok()?;
    let head = text.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let rest = ["HTTP/1.1 ", "HTTP/1.0 "]
        .iter()
        .find_map(|version| status_line.strip_prefix(version))?;
    let error = match rest.get(..4)? {
        "400 " => ApiError::MalformedRequest,
        "431 " => ApiError::HeadersTooLarge {
            max_headers: MAX_HEADERS,
        },
        "414 " => ApiError::UriTooLong,
        _ => return None,
    };
    // Only these lines, `content-length: 0` among them.
    let length = lines.try_fold(false, |length, line| match line {
        "content-length: 0" => Some(true),
        "connection: close" => Some(length),
        _ => line.starts_with("date: ").then_some(length),
    })?;
    length.then_some(error)
}

/// A whole HTTP/1.1 answer carrying `error`'s envelope, ending the connection.
pub(crate) fn render(error: &ApiError, request_id: &RequestId) -> Vec<u8> {
    let status = error.status();
    let body = serde_json::to_vec(&error.envelope()).unwrap_or_default();
    let retry_after = error.retry_after().map_or(String::new(), |seconds| {
        format!("retry-after: {seconds}\r\n")
    });
    let date = http_date().map_or(String::new(), |date| format!("date: {date}\r\n"));
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {request_id}\r\n{retry_after}connection: close\r\n{date}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    );
    [head.into_bytes(), body].concat()
}

/// The current time as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date() -> Option<String> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::now_utc().format(&format).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

    #[test]
    fn recognises_only_hypers_canned_answers() {
        let large = ApiError::HeadersTooLarge {
            max_headers: MAX_HEADERS,
        };
        #[rustfmt::skip]
        let cases = [
            ("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n", Some((0, ApiError::MalformedRequest))),
            ("HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n", Some((0, large))),
            // After the end of an earlier answer.
            ("0\r\n\r\nHTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n", Some((5, ApiError::UriTooLong))),
            // Answers of the routes are left alone: a body, or an id, or another status.
            ("HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n", None),
            ("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: req-1\r\n", None),
            ("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n", None),
            ("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n", None),
        ];
        for (answer, expected) in cases {
            let answer = format!("{answer}{DATE}\r\n");
            assert_eq!(canned_answer(answer.as_bytes()), expected, "{answer}");
        }
    }

    #[test]
    fn rendered_answers_carry_the_envelope_the_id_and_close() {
        let id = RequestId::generate();
        let answer = render(
            &ApiError::Unavailable {
                message: "full".into(),
                code: "too_many_connections",
                retry_after_s: 1,
            },
            &id,
        );
        let text = String::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains(&format!("x-request-id: {id}\r\n")));
        assert!(head.contains("retry-after: 1\r\n"));
        assert!(head.contains("connection: close\r\n"));
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections");
    }

    #[test]
    fn the_http2_preface_is_told_from_http1() {
        let shared = Arc::new(ConnShared::new(0));
        let mut io = ConnIo::new((), Arc::new(Mutex::new(None)), shared.clone());
        io.learn_protocol(b"PRI * HTTP");
        assert_eq!(io.protocol, Protocol::Unknown(10));
        io.learn_protocol(b"/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(io.protocol, Protocol::Http2);
        let mut io = ConnIo::new((), Arc::new(Mutex::new(None)), shared);
        io.learn_protocol(b"POST / HTTP/1.1\r\n");
        assert_eq!(io.protocol, Protocol::Http1);
    }
}
