//! An HTTP client of a Sworn server's audit API (`--server`): it fetches a receipt bundle by
//! request id, the newest checkpoint, a consistency proof, and the export as a stream.
//!
//! Nothing fetched is trusted: it is verified like a file would be. The API key (an admin
//! key for the export) is sent as a Bearer token and never printed.

use std::io::{BufRead, Read};
use std::time::Duration;

use alloy::transports::http::reqwest::{self, Client, Response};

/// Deadline for small audit answers (receipt, checkpoint, proof).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest small answer read (a bundle is capped at 512 KiB).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed or timed out.
    #[error("{url}: {reason}")]
    Http {
        /// What was fetched.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// What was fetched.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the error body.
        body: String,
    },
}

/// A client of one server's audit API.
#[derive(Debug, Clone)]
pub struct AuditClient {
    base: String,
    api_key: Option<String>,
    client: Client,
}

impl AuditClient {
    /// A client of `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, api_key: Option<String>) -> Result<Self, FetchError> {
        let client = Client::builder().build().map_err(|e| FetchError::Http {
            url: base.to_string(),
            reason: e.to_string(),
        })?;
        Ok(AuditClient {
            base: base.trim_end_matches('/').to_string(),
            api_key,
            client,
        })
    }

    async fn get(&self, path: &str, timeout: Option<Duration>) -> Result<Response, FetchError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.get(&url);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        let response = request.send().await.map_err(|e| FetchError::Http {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(FetchError::Status {
                url,
                status: status.as_u16(),
                body: body.chars().take(300).collect(),
            });
        }
        Ok(response)
    }

    async fn get_small(&self, path: &str) -> Result<Vec<u8>, FetchError> {
        let mut response = self.get(path, Some(REQUEST_TIMEOUT)).await?;
        let mut out = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Http {
            url: path.to_string(),
            reason: e.to_string(),
        })? {
            if out.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(FetchError::Http {
                    url: path.to_string(),
                    reason: format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// The receipt bundle of `request_id` (inclusion proof to the newest checkpoint).
    pub async fn receipt(&self, request_id: &str) -> Result<Vec<u8>, FetchError> {
        if !sworn_ledger::receipt::is_valid_request_id(request_id) {
            return Err(FetchError::Http {
                url: self.base.clone(),
                reason: format!("{request_id:?} is not a valid request id"),
            });
        }
        self.get_small(&format!("/v1/audit/receipts/{request_id}"))
            .await
    }

    /// The newest checkpoint (`/v1/audit/checkpoint` JSON).
    pub async fn checkpoint(&self) -> Result<Vec<u8>, FetchError> {
        self.get_small("/v1/audit/checkpoint").await
    }

    /// A consistency proof between two sizes.
    pub async fn consistency(&self, old: u64, new: u64) -> Result<Vec<u8>, FetchError> {
        self.get_small(&format!("/v1/audit/proof/consistency?old={old}&new={new}"))
            .await
    }

    /// The export, as a response to read in chunks.
    pub async fn export(&self) -> Result<Response, FetchError> {
        self.get("/v1/audit/export", None).await
    }
}

/// A blocking reader over a streamed response body, driven by `runtime`.
#[derive(Debug)]
pub struct StreamReader<'r> {
    runtime: &'r tokio::runtime::Runtime,
    response: Response,
    buffer: Vec<u8>,
    position: usize,
    done: bool,
}

impl<'r> StreamReader<'r> {
    /// Reads `response` through `runtime` (which must not be running this thread).
    pub fn new(runtime: &'r tokio::runtime::Runtime, response: Response) -> Self {
        StreamReader {
            runtime,
            response,
            buffer: Vec::new(),
            position: 0,
            done: false,
        }
    }
}

impl Read for StreamReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for StreamReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.position == self.buffer.len() && !self.done {
            let next: Result<Option<_>, reqwest::Error> =
                self.runtime.block_on(self.response.chunk());
            match next.map_err(std::io::Error::other)? {
                Some(chunk) => {
                    self.buffer.clear();
                    self.buffer.extend_from_slice(&chunk);
                    self.position = 0;
                }
                None => self.done = true,
            }
        }
        Ok(&self.buffer[self.position..])
    }

    fn consume(&mut self, amount: usize) {
        self.position = (self.position + amount).min(self.buffer.len());
    }
}
