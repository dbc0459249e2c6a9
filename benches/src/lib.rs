//! Shared helpers for Sworn benchmarks.
