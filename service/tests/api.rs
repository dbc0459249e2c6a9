//! Integration tests for the HTTP API: a real server over real TCP, the real `async-openai`
//! client, a real sled ledger. One binary (`pub mod` per area).

// Test helpers outside `#[test]` functions panic on failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "api/support.rs"]
pub mod support;
#[path = "api/toy.rs"]
pub mod toy;

#[path = "api/answers.rs"]
pub mod answers;
#[path = "api/audit.rs"]
pub mod audit;
#[path = "api/bad_input.rs"]
pub mod bad_input;
#[path = "api/concurrency.rs"]
pub mod concurrency;
#[path = "api/connections.rs"]
pub mod connections;
#[path = "api/lifecycle.rs"]
pub mod lifecycle;
#[path = "api/model.rs"]
pub mod model;
#[path = "api/tokens.rs"]
pub mod tokens;
