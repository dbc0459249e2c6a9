//! Subcommands that are thin wrappers over the libraries: `generate` and `tokenize` (engine),
//! `chain` (anchoring contract deployment).

pub(crate) mod chain;
pub(crate) mod generate;
pub(crate) mod tokenize;
