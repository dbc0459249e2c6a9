//! # sworn-service
//!
//! The process that answers OpenAI-compatible requests and swears every answer. A request
//! walks forward through the layers below and never back:
//!
//! * [`lifecycle`] wires the configured parts together for `sworn serve` and runs their
//!   start-up and shutdown, in order; [`config`] resolves flags, environment and file.
//! * [`server`] owns the connections: TLS, timeouts, the connection limit, framing errors.
//! * [`api`] is the HTTP surface: authentication, limits, validation, the OpenAI shapes,
//!   the audit routes and `/metrics`. It hands a valid request to the scheduler and its
//!   engine events to the swearing step.
//! * [`swear`] turns a generation's events into a durable receipt in the ledger
//!   (`sworn-ledger`), recording exactly what the client was sent.
//! * [`scheduler`] queues requests for the engine thread and batches them continuously;
//!   stop strings and `max_tokens` end sequences there.
//! * [`engine`] is the model on libtorch: GGUF, tokenizer, chat template, the forward
//!   pass and sampling. It knows nothing of HTTP, and the API nothing of tensors.
//! * [`device`] decides CPU or CUDA at start-up: the binary links libtorch's CPU
//!   libraries and dlopens the CUDA backend when the machine has one. [`api_keys`] manages
//!   the API-keys file.

#![deny(missing_docs)]

pub mod api;
pub mod api_keys;
pub mod config;
pub mod device;
pub mod engine;
pub mod histogram;
pub mod lifecycle;
pub mod scheduler;
pub mod server;
pub mod swear;
