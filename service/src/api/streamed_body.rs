//! Streamed response bodies that warp 0.4 cannot express (its only public streaming body is
//! SSE). A handler parks the stream in the response's extensions; the connection layer in
//! [`crate::server`] swaps it in as the body. Used by the NDJSON log export, whose size grows
//! with the log and must never be buffered whole.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;

/// A stream of body chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// A body stream waiting in a response's extensions.
#[derive(Clone)]
pub struct StreamedBody(Arc<Mutex<Option<ByteStream>>>);

impl std::fmt::Debug for StreamedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamedBody")
    }
}

impl StreamedBody {
    /// Wraps a stream.
    pub fn new(stream: ByteStream) -> Self {
        StreamedBody(Arc::new(Mutex::new(Some(stream))))
    }

    /// Takes the stream out (once).
    pub fn take(&self) -> Option<ByteStream> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}
