//! Route handlers: async functions taking plain arguments and returning a finished response.
//! They never reject: once a route has matched, every outcome is a response (errors through
//! [`crate::api::errors::ApiError`]), so warp never backtracks into another route.

pub mod audit;
pub mod generate;
pub mod ops;
pub mod tokens;
