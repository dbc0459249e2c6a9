//! The durable log: sled on disk, group-committed appends, stored subtree hashes.
//!
//! [`Ledger`] is a cheap-to-clone handle. Appends go through a dedicated builder thread,
//! a flusher thread and a recorder thread (see `writer`); reads go straight to sled and
//! only ever see the durable, acknowledged prefix of the log ([`Ledger::size`]). A
//! high-water record outside sled (see `highwater`) holds the store to what it
//! acknowledged and signed whenever it is opened. An optional sealer thread signs a
//! checkpoint every N entries or T milliseconds (see `sealer`).
//!
//! The files, in the order a newcomer reads them:
//!
//! - `config`, `append`: what a caller gives the store ([`LedgerConfig`],
//!   [`AppendRequest`]) and gets back ([`ErasureOutcome`]); `error`: [`StoreError`].
//! - `ledger`: the [`Ledger`] handle; `side`: its checkpoint, anchor and meta queries.
//! - `shared`: the state the handle and the threads share, each field with its owner.
//! - `open`: opening, the checks against the store itself and the high-water record,
//!   recovery; `highwater`: that record's file; `rotation`: the key history and the
//!   two-step record of a key rotation.
//! - `writer` (its three threads) and `group` (one group's sled batch); `sealer`;
//!   `checkpoint_tree` (storing a checkpoint records it); `fault` (the fault latch).
//! - `schema` (keys and rows), `pack` (16 entries to a value), `compact` (the compact body
//!   form), `request_index` (request id → index), `hashes` and `node_cache` (stored
//!   subtree hashes as a Merkle hash source).

mod append;
mod checkpoint_tree;
mod compact;
mod config;
mod error;
mod fault;
mod group;
mod hashes;
mod highwater;
mod ledger;
mod node_cache;
mod open;
mod pack;
mod request_index;
mod rotation;
mod schema;
mod sealer;
mod shared;
mod side;
mod writer;

pub use append::{AppendRequest, ErasureOutcome};
pub use config::{DEFAULT_MAX_CONTENT_BYTES, LedgerConfig};
pub use error::StoreError;
pub use hashes::SledHashes;
pub use ledger::Ledger;
pub use request_index::DEFAULT_REQUEST_MEMTABLE;
pub use schema::StoredContent;
pub use side::{MAX_META_KEY_LEN, MAX_SIDE_VALUE_LEN};
