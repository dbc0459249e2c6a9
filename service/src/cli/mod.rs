//! The `generate` and `tokenize` subcommands: thin wrappers over the engine library.

pub(crate) mod generate;
pub(crate) mod tokenize;
