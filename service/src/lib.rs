//! # sworn-service
//!
//! The process that answers OpenAI-compatible requests and swears every answer.
//!
//! * [`device`] decides CPU or CUDA at start-up: the binary links libtorch's CPU
//!   libraries and dlopens the CUDA backend when the machine has one.
//!
//! The engine (`engine/`) knows nothing of HTTP; the API (`api/`) nothing of tensors.

pub mod api;
pub mod config;
pub mod device;
pub mod engine;
pub mod keys;
pub mod scheduler;
pub mod serve;
pub mod server;
pub mod swear;
