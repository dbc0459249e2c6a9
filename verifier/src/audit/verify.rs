//! The per-entry work of an audit that does not depend on order — canonical parse, index
//! and origin check, strict signature, leaf hash — run on every core over a chunk of
//! entries, so the sequential part (order, tree, checkpoints) only folds the results.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sworn_ledger::entry::{EntryBody, SignedEntry};
use sworn_ledger::keys::{PinnedKey, Signature};
use sworn_ledger::merkle::{Hash, hash_leaf};

/// An entry line as read.
#[derive(Debug)]
pub struct RawEntry {
    /// The index the line claims.
    pub index: u64,
    /// The body text.
    pub body: String,
    /// The base64 signature.
    pub signature: String,
}

/// What verifying one entry established.
#[derive(Debug)]
pub struct CheckedEntry {
    /// `SHA-256(0x00 ‖ body)`, computed here.
    pub leaf: Hash,
    /// The parsed body, or why the entry does not verify.
    pub verdict: Result<EntryBody, String>,
}

/// Verifies one entry under `key` at the index it claims.
pub fn check_entry(key: &PinnedKey, raw: &RawEntry) -> CheckedEntry {
    let leaf = hash_leaf(raw.body.as_bytes());
    let verdict = BASE64
        .decode(&raw.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or_else(|| "signature is not base64 of 64 bytes".to_string())
        .and_then(|sig| {
            let entry = SignedEntry {
                index: raw.index,
                body: raw.body.as_bytes().to_vec(),
                signature: Signature::from_bytes(&sig),
            };
            entry.verify(key).map_err(|e| e.to_string())
        });
    CheckedEntry { leaf, verdict }
}

/// Verifies `entries` on up to `threads` threads, keeping their order.
pub fn check_entries(key: &PinnedKey, entries: &[&RawEntry], threads: usize) -> Vec<CheckedEntry> {
    let threads = threads.clamp(1, entries.len().max(1));
    if threads == 1 {
        return entries.iter().map(|e| check_entry(key, e)).collect();
    }
    let per = entries.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(per)
            .map(|part| {
                scope.spawn(move || part.iter().map(|e| check_entry(key, e)).collect::<Vec<_>>())
            })
            .collect();
        let mut out = Vec::with_capacity(entries.len());
        for (handle, part) in handles.into_iter().zip(entries.chunks(per)) {
            match handle.join() {
                Ok(checked) => out.extend(checked),
                // A panicking worker is a bug; redo its part here rather than lose it.
                Err(_) => out.extend(part.iter().map(|e| check_entry(key, e))),
            }
        }
        out
    })
}
