//! Request ids: minted by the server for every request, returned in `x-request-id`, and
//! recorded in the receipt, so an answer, its log entry and the operator's logs share one id.
//!
//! Ids are never taken from the client: a client could otherwise collide with another
//! tenant's id in `/v1/audit/receipts/{request_id}`.

use std::fmt;

use rand_core::{OsRng, RngCore};
use warp::http::HeaderValue;
use warp::reply::Response;

/// Header carrying the request id on every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Random bytes in an id: 128 bits, so ids never collide in practice.
const ID_RANDOM_BYTES: usize = 16;

/// A server-minted request id, `req-` followed by 32 lowercase hex digits. Always a valid
/// ledger request id (`[A-Za-z0-9._:-]`, ≤ 128 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_RANDOM_BYTES];
        OsRng.fill_bytes(&mut bytes);
        RequestId(format!("req-{}", hex::encode(bytes)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Sets `x-request-id` on a response.
    pub fn stamp(&self, response: &mut Response) {
        // The id is ASCII hex by construction, so this conversion cannot fail; stay total anyway.
        if let Ok(value) = HeaderValue::from_str(&self.0) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Extracts a fresh [`RequestId`] for each request.
pub fn request_id()
-> impl warp::Filter<Extract = (RequestId,), Error = std::convert::Infallible> + Clone {
    use warp::Filter;
    warp::any().map(RequestId::generate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_ledger_ids_and_distinct() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        assert!(sworn_ledger::receipt::is_valid_request_id(a.as_str()));
        assert_eq!(a.as_str().len(), 4 + 2 * ID_RANDOM_BYTES);
    }
}
