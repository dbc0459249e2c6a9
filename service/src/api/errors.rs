//! The one place where every failure becomes an HTTP answer.
//!
//! Every error a client can see is an [`ApiError`]; [`ApiError::into_response`] turns it into
//! the OpenAI envelope `{"error":{"message","type","param","code"}}` with `code` a string or
//! `null`, the status of the table in `shared/reference/serving.md` §4c (400 — never 422 — for
//! bad input), `Retry-After` on 429/503, and `x-request-id` always. Warp's own rejections
//! (unknown path, wrong method) reach [`handle_rejection`], which maps them the same way; the
//! server's connection layer (`crate::server`) answers broken HTTP framing, slow requests and
//! a full connection table with the same envelope.

use std::convert::Infallible;
use std::fmt;

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Rejection, Reply};

use super::request_id::RequestId;

/// Which per-key limit a 429 is about (OpenAI puts it in the `type` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedResource {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

impl LimitedResource {
    /// The `type` string OpenAI uses for this limit.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitedResource::Requests => "requests",
            LimitedResource::Tokens => "tokens",
        }
    }
}

/// Every error a client of the API can receive.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, not UTF-8, or a field has the wrong type or is missing.
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong, naming the field where known.
        message: String,
        /// The offending field, when known.
        param: Option<String>,
    },
    /// A parameter is outside its allowed range.
    #[error("{message}")]
    InvalidValue {
        /// What is wrong: the field, the limit and the value received.
        message: String,
        /// The offending field.
        param: String,
    },
    /// A parameter this server does not implement (`n` > 1, tools, images, …).
    #[error("{message}")]
    UnsupportedParameter {
        /// What is not supported.
        message: String,
        /// The offending field.
        param: String,
    },
    /// Prompt tokens plus the completion budget exceed the model's context.
    #[error(
        "This model's maximum context length is {context_length} tokens. However, you requested {total} tokens ({prompt_tokens} in the {param}, {max_tokens} for the completion). Please reduce the length of the {param} or the completion."
    )]
    ContextLengthExceeded {
        /// `messages` or `prompt`.
        param: &'static str,
        /// The model's context length.
        context_length: usize,
        /// Prompt length in tokens.
        prompt_tokens: usize,
        /// Completion budget asked for (or defaulted).
        max_tokens: usize,
        /// Their sum.
        total: usize,
    },
    /// The body is larger than the configured cap.
    #[error("Request body is larger than the limit of {limit} bytes.")]
    BodyTooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// No `Authorization: Bearer` header.
    #[error(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    )]
    MissingApiKey,
    /// The bearer token matches no configured key.
    #[error("Incorrect API key provided: {redacted}.")]
    InvalidApiKey {
        /// The first characters of the key followed by `***` (never the whole key).
        redacted: String,
    },
    /// The key is valid but its role may not use this route.
    #[error("The API key `{key_id}` does not have the `{required}` role required by this route.")]
    PermissionDenied {
        /// The key's id (the tenant), never the key.
        key_id: String,
        /// The role the route needs.
        required: &'static str,
    },
    /// The requested model is not served here.
    #[error("The model `{model}` does not exist or you do not have access to it.")]
    ModelNotFound {
        /// The model id asked for.
        model: String,
    },
    /// Something asked for by id does not exist (receipt, route).
    #[error("{message}")]
    NotFound {
        /// What was not found.
        message: String,
    },
    /// The route exists but not for this method.
    #[error("Method not allowed for this route.")]
    MethodNotAllowed,
    /// The request is not valid HTTP/1.1: the HTTP parser refused its request line, a header
    /// field, or its framing (`Content-Length`, `Transfer-Encoding`).
    #[error(
        "The request is not valid HTTP/1.1: its request line, a header field or its framing (Content-Length, Transfer-Encoding) could not be parsed."
    )]
    MalformedRequest,
    /// More header fields than the server reads, or a head larger than its read buffer.
    #[error(
        "The request headers are too large: at most {max_headers} header fields, in a head of at most about 400 KiB, are accepted."
    )]
    HeadersTooLarge {
        /// The most header fields read.
        max_headers: usize,
    },
    /// The request target is longer than the HTTP parser accepts.
    #[error("The request URI is too long.")]
    UriTooLong,
    /// The request head or body did not arrive within the server's bound.
    #[error("{message}")]
    RequestTimeout {
        /// What was late, and the bound.
        message: String,
    },
    /// A per-key rate limit is exhausted.
    #[error(
        "Rate limit reached for key `{key_id}` on {resource} per min: limit {limit}, requested {requested}. Please try again in {retry_after_s}s.",
        resource = resource.as_str()
    )]
    RateLimited {
        /// The key id.
        key_id: String,
        /// Which limit.
        resource: LimitedResource,
        /// The per-minute limit.
        limit: u64,
        /// How much this request needed.
        requested: u64,
        /// Seconds until enough budget has refilled.
        retry_after_s: u64,
    },
    /// The global queue is full.
    #[error(
        "The server is overloaded: {queued} requests are already waiting. Please retry after {retry_after_s}s."
    )]
    Overloaded {
        /// Requests waiting when this one was refused.
        queued: usize,
        /// Suggested wait.
        retry_after_s: u64,
    },
    /// The model is not loaded yet, the server is shutting down, or it holds as many
    /// connections as it may.
    #[error("{message}")]
    Unavailable {
        /// Why.
        message: String,
        /// Stable code: `model_loading`, `shutting_down` or `too_many_connections`.
        code: &'static str,
        /// Suggested wait.
        retry_after_s: u64,
    },
    /// A failure inside the server (engine or ledger). The details go to the log only.
    #[error("The server had an error while processing your request (request id {request_id}).")]
    Internal {
        /// The request id, so an operator can find the logged cause.
        request_id: String,
    },
}

/// The OpenAI error object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ErrorObject {
    /// Human-readable message.
    pub message: String,
    /// Error class (`invalid_request_error`, `server_error`, `requests`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending parameter, or `null`.
    pub param: Option<String>,
    /// A stable machine code, or `null`; always a string when present.
    pub code: Option<String>,
}

/// The OpenAI error envelope `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorObject,
}

impl ApiError {
    /// What a client is told when its answer could not be sworn: a 500 naming only the
    /// request id (the cause is in the operator's log).
    pub fn from_swear(_error: &crate::swear::SwearError, request_id: &str) -> Self {
        ApiError::Internal {
            request_id: request_id.to_string(),
        }
    }

    /// Shorthand for a 400 on a named field.
    pub fn invalid_value(param: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidValue {
            message: message.into(),
            param: param.to_string(),
        }
    }

    /// Shorthand for a 400 naming a parameter this server does not implement.
    pub fn unsupported(param: &str, message: impl Into<String>) -> Self {
        ApiError::UnsupportedParameter {
            message: message.into(),
            param: param.to_string(),
        }
    }

    /// The HTTP status of serving.md §4c.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    /// The envelope's `code` (a string or `null`, never a number).
    pub fn code(&self) -> Option<&'static str> {
        self.status_and_code().1
    }

    fn status_and_code(&self) -> (StatusCode, Option<&'static str>) {
        use StatusCode as S;
        let (status, code) = match self {
            ApiError::InvalidRequest { .. } => (S::BAD_REQUEST, ""),
            ApiError::InvalidValue { .. } => (S::BAD_REQUEST, "invalid_value"),
            ApiError::UnsupportedParameter { .. } => (S::BAD_REQUEST, "unsupported_parameter"),
            ApiError::ContextLengthExceeded { .. } => (S::BAD_REQUEST, "context_length_exceeded"),
            ApiError::BodyTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "request_too_large"),
            ApiError::MissingApiKey | ApiError::InvalidApiKey { .. } => {
                (S::UNAUTHORIZED, "invalid_api_key")
            }
            ApiError::PermissionDenied { .. } => (S::FORBIDDEN, "insufficient_permissions"),
            ApiError::ModelNotFound { .. } => (S::NOT_FOUND, "model_not_found"),
            ApiError::NotFound { .. } => (S::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::MalformedRequest => (S::BAD_REQUEST, "malformed_request"),
            ApiError::HeadersTooLarge { .. } => (
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request_header_fields_too_large",
            ),
            ApiError::UriTooLong => (S::URI_TOO_LONG, "uri_too_long"),
            ApiError::RequestTimeout { .. } => (S::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate_limit_exceeded"),
            ApiError::Overloaded { .. } => (S::SERVICE_UNAVAILABLE, "server_is_overloaded"),
            ApiError::Unavailable { code, .. } => (S::SERVICE_UNAVAILABLE, *code),
            ApiError::Internal { .. } => (S::INTERNAL_SERVER_ERROR, ""),
        };
        (status, (!code.is_empty()).then_some(code))
    }

    /// The envelope's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::RateLimited { resource, .. } => resource.as_str(),
            ApiError::PermissionDenied { .. } => "permission_error",
            ApiError::NotFound { .. } => "not_found_error",
            ApiError::Overloaded { .. } | ApiError::Unavailable { .. } => {
                "service_unavailable_error"
            }
            ApiError::Internal { .. } => "server_error",
            // OpenAI reports bad keys and unknown models as invalid requests too.
            _ => "invalid_request_error",
        }
    }

    /// The envelope's `param`.
    pub fn param(&self) -> Option<String> {
        match self {
            ApiError::InvalidRequest { param, .. } => param.clone(),
            ApiError::InvalidValue { param, .. } | ApiError::UnsupportedParameter { param, .. } => {
                Some(param.clone())
            }
            ApiError::ContextLengthExceeded { param, .. } => Some((*param).to_string()),
            ApiError::ModelNotFound { .. } => Some("model".to_string()),
            _ => None,
        }
    }

    /// Seconds for the `Retry-After` header, on 429 and 503.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_s, .. }
            | ApiError::Overloaded { retry_after_s, .. }
            | ApiError::Unavailable { retry_after_s, .. } => Some((*retry_after_s).max(1)),
            _ => None,
        }
    }

    /// The stable label used in metrics (`error_type` of the request counter).
    pub fn metric_label(&self) -> &'static str {
        match self {
            ApiError::Internal { .. } => "internal",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::MissingApiKey
            | ApiError::InvalidApiKey { .. }
            | ApiError::PermissionDenied { .. } => "auth",
            _ => "invalid_request",
        }
    }

    /// The envelope.
    pub fn envelope(&self) -> ErrorEnvelope {
        ErrorEnvelope {
            error: ErrorObject {
                message: self.to_string(),
                kind: self.kind().to_string(),
                param: self.param(),
                code: self.code().map(str::to_string),
            },
        }
    }

    /// The full HTTP response: status, envelope, `Retry-After`, `x-request-id`.
    pub fn into_response(self, request_id: &RequestId) -> Response {
        let mut response =
            warp::reply::with_status(warp::reply::json(&self.envelope()), self.status())
                .into_response();
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        request_id.stamp(&mut response);
        response
    }
}

impl warp::reject::Reject for ApiError {}

/// Redacts a presented key for an error message: a short prefix, then `***`.
pub fn redact_key(key: &str) -> String {
    /// Characters of a wrong key echoed back (as OpenAI does), enough to tell keys apart.
    const SHOWN_PREFIX: usize = 6;
    let prefix: String = key.chars().take(SHOWN_PREFIX).collect();
    format!("{prefix}***")
}

/// Maps a rejection that escaped every route to the envelope. Routes convert their own
/// errors into responses as soon as they have matched (lighthouse's `convert_rejection`
/// lesson), so only path and method mismatches arrive here.
pub async fn handle_rejection(err: Rejection) -> Result<Response, Infallible> {
    let request_id = RequestId::generate();
    let error = if let Some(api) = err.find::<ApiError>() {
        api.clone()
    } else if err.is_not_found() {
        ApiError::NotFound {
            message: "No such route.".to_string(),
        }
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::BodyTooLarge { limit: 0 }
    } else {
        tracing::warn!(rejection = ?err, %request_id, "unhandled rejection");
        ApiError::Internal {
            request_id: request_id.to_string(),
        }
    };
    Ok(error.into_response(&request_id))
}

/// Helper so handlers can write `result.map_or_else(respond_error(&id), ...)`.
pub fn error_response(request_id: &RequestId) -> impl Fn(ApiError) -> Response + '_ {
    move |e| e.into_response(request_id)
}

impl fmt::Display for LimitedResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::request_id::REQUEST_ID_HEADER;

    #[test]
    fn every_variant_maps_to_an_envelope_with_string_or_null_code() {
        let id = RequestId::generate();
        let cases = vec![
            (
                ApiError::invalid_value("temperature", "bad"),
                400,
                Some("invalid_value"),
            ),
            (
                ApiError::unsupported("n", "no"),
                400,
                Some("unsupported_parameter"),
            ),
            (
                ApiError::InvalidRequest {
                    message: "x".into(),
                    param: None,
                },
                400,
                None,
            ),
            (ApiError::MissingApiKey, 401, Some("invalid_api_key")),
            (
                ApiError::ModelNotFound { model: "m".into() },
                404,
                Some("model_not_found"),
            ),
            (
                ApiError::Overloaded {
                    queued: 3,
                    retry_after_s: 2,
                },
                503,
                Some("server_is_overloaded"),
            ),
            (
                ApiError::Internal {
                    request_id: "r".into(),
                },
                500,
                None,
            ),
            (ApiError::MalformedRequest, 400, Some("malformed_request")),
            (
                ApiError::RequestTimeout {
                    message: "late".into(),
                },
                408,
                Some("request_timeout"),
            ),
            (ApiError::UriTooLong, 414, Some("uri_too_long")),
            (
                ApiError::HeadersTooLarge { max_headers: 100 },
                431,
                Some("request_header_fields_too_large"),
            ),
        ];
        for (err, status, code) in cases {
            let resp = err.clone().into_response(&id);
            assert_eq!(resp.status().as_u16(), status, "{err:?}");
            assert_eq!(
                resp.headers()
                    .get(REQUEST_ID_HEADER)
                    .unwrap()
                    .to_str()
                    .unwrap(),
                id.as_str()
            );
            let json = serde_json::to_value(err.envelope()).unwrap();
            let error = &json["error"];
            assert_eq!(error["code"].as_str(), code, "{err:?}");
            assert!(error["code"].is_null() || error["code"].is_string());
            assert!(error["message"].is_string());
            assert!(error["type"].is_string());
            assert!(error.as_object().unwrap().contains_key("param"));
        }
    }

    #[test]
    fn rate_limit_and_overload_carry_retry_after() {
        let id = RequestId::generate();
        let err = ApiError::RateLimited {
            key_id: "team".into(),
            resource: LimitedResource::Tokens,
            limit: 100,
            requested: 120,
            retry_after_s: 7,
        };
        assert_eq!(err.kind(), "tokens");
        let resp = err.into_response(&id);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers().get("retry-after").unwrap(), "7");
        // A zero wait still tells clients to back off for at least one second.
        let resp = ApiError::Overloaded {
            queued: 1,
            retry_after_s: 0,
        }
        .into_response(&id);
        assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    }

    #[test]
    fn redacted_key_never_shows_the_whole_key() {
        let key = "sk-sworn-abcdefghijklmnop";
        let shown = redact_key(key);
        assert_eq!(shown, "sk-swo***");
        assert!(
            !ApiError::InvalidApiKey { redacted: shown }
                .to_string()
                .contains(key)
        );
    }
}
