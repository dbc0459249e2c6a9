//! The chain side of verification: the anchor and finality layers, built on the ledger's
//! read-only SwornAnchor client (the same reads and event decoding the anchorer uses).

pub mod anchor;

pub use anchor::{ChainPins, check_anchor, finality_of};
pub use sworn_ledger::anchor::{AnchoredEvent, ChainReader, ReadError};
