//! Subcommands that are thin wrappers over the libraries: `generate` and `tokenize` (engine),
//! `chain` (anchoring contract deployment), `backup` (a checked copy of a stopped server's
//! data directory), `log_key` (rotating the log's signing key).

pub(crate) mod backup;
pub(crate) mod chain;
pub(crate) mod generate;
pub(crate) mod log_key;
pub(crate) mod tokenize;
