//! The log export: a streaming NDJSON file an auditor can verify with nothing but the
//! log's pinned public key. Format `sworn-log-export`, version 1 (documented in
//! `ledger/README.md`):
//!
//! ```text
//! {"format":"sworn-log-export","origin":"…","public_key":"…","size":N,"type":"header","version":1}
//! {"body":"<canonical body>","index":0,"signature":"<base64>","type":"entry"}
//! …
//! {"note":"<signed checkpoint note>","size":K,"type":"checkpoint"}   ← right after entry K−1
//! …
//! {"checkpoints":C,"size":N,"type":"end"}
//! ```
//!
//! Entries come in index order, each checkpoint right after the entry that completes it,
//! and the `end` line makes truncation detectable. Content and salts are never exported.
//! The header's `public_key` is informative only: auditors pin their own.

//!
//! `line` is the format (line types, caps, errors); `writer` produces it from a
//! [`Ledger`](crate::Ledger), `reader` streams it back with bounded lines.

mod line;
mod reader;
mod writer;

pub use line::{EXPORT_FORMAT, EXPORT_VERSION, ExportError, ExportLine, MAX_EXPORT_LINE_BYTES};
pub use reader::ExportReader;
pub use writer::write_export;
