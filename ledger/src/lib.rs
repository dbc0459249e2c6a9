//! # sworn-ledger
//!
//! The log behind every Sworn answer. Each answer the service gives becomes a **receipt**:
//! a canonical JSON body committing to the prompt and response, signed with the log's
//! Ed25519 key and appended as a leaf of an append-only RFC 9162 Merkle log. The log is
//! kept durable in sled, sealed at intervals into signed C2SP **checkpoints**, and each
//! checkpoint is **anchored** on a chain contract that accepts only extensions of what it
//! already holds. A client holding a receipt, or an auditor holding an export, checks it
//! with the log's pinned public key and nothing the operator could rewrite.
//!
//! No libtorch and no HTTP server here: `sworn-verify` links this crate for every check it
//! makes, and the service links it for its store.
//!
//! ## Layers
//!
//! Read them in this order; the module listing at the end of this file groups them the
//! same way.
//!
//! 1. **Formats**: the bytes that are signed, hashed or published, each with a strict
//!    parser. [`jcs`] (RFC 8785 canonical JSON) and [`ijson`] (JSON input without
//!    duplicate members), [`commitment`] (salted commitments to content), [`receipt`] (the
//!    v1 receipt body), [`entry`] (signed entries, receipts and erasure events, and the
//!    bundle a client gets), [`keys`] (the log key file, pinned public keys), [`note`] and
//!    [`checkpoint`] (C2SP signed notes and tlog checkpoints).
//! 2. **Merkle**: [`merkle`], RFC 9162 hashing, roots from stored subtree hashes,
//!    inclusion and consistency proofs and their verification. It knows hashes, not
//!    entries or storage: nodes come from a [`merkle::HashSource`].
//! 3. **Store**: [`store`], the [`Ledger`] handle over one sled database. It appends in
//!    groups, serves reads and proofs of the durable prefix, seals checkpoints, and keeps
//!    the high-water record that holds the store to what it acknowledged. [`export`]
//!    writes the whole log as NDJSON for auditors and reads it back line by line.
//! 4. **Anchor**: [`anchor`], the task that puts each new checkpoint on the SwornAnchor
//!    contract with a consistency proof from the previous anchor, follows it to
//!    finality, and records it in the store; plus the read-only chain calls the verifier
//!    shares.
//!
//! Dependencies point one way. `merkle` uses no other module here; the formats use only
//! `merkle::hash` (the hash type and the leaf hash); `store` uses both; `export` and `anchor` reach the store through
//! [`Ledger`]. No module depends on one that depends on it. [`small_file`], beside the
//! layers, is how the workspace's loaders read key, configuration and state files:
//! opened, checked on the open handle, and read up to a cap.
//!
//! ## An append
//!
//! 1. [`Ledger::append`] (or `append_async`) checks the request and commits to the prompt
//!    and response with fresh salts, on the caller's thread.
//! 2. The writer's **builder** thread takes every queued request (up to `max_batch`),
//!    assigns indices, builds and signs each body, extends the tree's right edge, and
//!    applies the group as **one atomic sled batch**: entries, content, subtree hashes and
//!    the new size.
//! 3. The **flusher** thread `flush`es sled once for every group applied so far.
//! 4. The **recorder** thread writes the high-water record, outside sled, once for every
//!    group flushed so far (`fdatasync`). Only then does it publish the new durable size
//!    and answer the callers with their receipts.
//! 5. The **sealer** thread signs a checkpoint of the durable size every N entries or T
//!    milliseconds; the anchorer, where one runs, anchors the newest checkpoint.
//!
//! Erasing a receipt's content is a job on the same pipeline: it deletes the content and
//! salts and appends a signed erasure event in the same sled batch.
//!
//! ## What is durable when
//!
//! - A receipt is acknowledged, readable and provable only once it is flushed in sled and
//!   the high-water record names a size that covers it. After a crash, sled keeps a prefix
//!   of whole groups, never less than the record names; groups that were flushed but
//!   never acknowledged are kept, and the record catches up to them on the next open.
//! - A checkpoint is returned to anyone only once it is stored, sled flushed, and its size,
//!   root and note hash are in the high-water record.
//! - Anchor records and metadata are flushed before their writes return.
//! - Opening checks the store against the record, and refuses to start if entries were
//!   lost or another history is in their place (`ledger/README.md`, "Integrity at open").
//! - After the first storage fault, the ledger writes nothing more. Reads go on, and the
//!   process must reopen the store, which then proves itself against the record.
//!
//! ## Where to read next
//!
//! - `ledger/README.md`: the formats byte by byte, the store's layout, the high-water
//!   record, and why sled 0.34 stays for now. `docs/FORMATS.md` is the normative spec
//!   an independent verifier is built from.
//! - [`store`]: its module documentation lists its files in reading order. The pipeline is
//!   in `store/writer.rs`, opening and recovery in `store/open.rs` and
//!   `store/highwater.rs`.
//! - [`anchor`]: what exactly is anchored, and how to start the anchorer.
#![deny(missing_docs)]

// Formats.
pub mod checkpoint;
pub mod commitment;
mod ed25519;
pub mod entry;
pub mod ijson;
pub mod jcs;
pub mod key_history;
pub mod keys;
pub mod note;
pub mod receipt;

// Merkle.
pub mod merkle;

// Store.
pub mod export;
pub mod store;

// Anchor.
pub mod anchor;

// Beside the layers.
pub mod small_file;

pub use store::{AppendRequest, ErasureOutcome, Ledger, LedgerConfig, StoreError, StoredContent};
