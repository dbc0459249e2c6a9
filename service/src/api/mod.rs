//! The OpenAI-compatible HTTP API (warp). Knows nothing of tensors.
//!
//! * [`filters`] route; [`handlers`] answer; [`models`] are the wire types.
//! * [`validation`] turns bytes into a [`validation::ValidRequest`] (parse, don't validate).
//! * [`errors`] is the one place errors become the OpenAI envelope.
//! * [`auth`] and [`rate_limit`] guard generation and audit routes; [`metrics`] counts.
//! * [`swear`] drives a generation to its durable receipt; [`sse`] streams it.

pub mod auth;
mod body;
pub mod errors;
pub mod filters;
pub mod handlers;
mod messages;
pub mod metrics;
pub mod models;
pub mod rate_limit;
pub mod request_id;
pub mod response_format;
pub mod responses;
pub mod sse;
pub mod state;
pub mod streamed_body;
pub mod tools;
pub mod validation;
