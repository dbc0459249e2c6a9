//! Subcommands that are thin wrappers over the libraries: `generate` and `tokenize` (engine),
//! `chain` (anchoring contract deployment), `backup` (a checked copy of a stopped server's
//! data directory).

pub(crate) mod backup;
pub(crate) mod chain;
pub(crate) mod generate;
pub(crate) mod tokenize;
