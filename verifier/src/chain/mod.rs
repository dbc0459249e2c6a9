//! The chain side of verification: a read-only SwornAnchor client and the anchor and
//! finality layers built on it.

pub mod anchor;
pub mod reader;

pub use anchor::{ChainPins, check_anchor, finality_of};
pub use reader::{AnchoredEvent, ChainError, ChainReader};
