//! The per-entry work of an audit that does not depend on order — canonical parse, index
//! and origin check, strict signature, leaf hash — run on every core over a chunk of
//! entries, so the sequential part (order, tree, checkpoints) only folds the results.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sworn_ledger::entry::{EntryBody, SignedEntry};
use sworn_ledger::key_history::KeyHistory;
use sworn_ledger::keys::Signature;
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

/// Entries whose signatures share one final point encoding (one field inversion).
const BULK: usize = 64;

/// Verifies `entries` under the keys of `keys`, each at the index it claims and under the
/// key that signs that index, in order; the signatures are checked in bulk
/// ([`SignedEntry::verify_each`]), each still on its own.
pub fn check_bulk(keys: &KeyHistory, entries: &[&RawEntry]) -> Vec<CheckedEntry> {
    let mut out = Vec::with_capacity(entries.len());
    let same_key = |a: &&RawEntry, b: &&RawEntry| {
        std::ptr::eq(keys.key_for_entry(a.index), keys.key_for_entry(b.index))
    };
    for part in entries.chunks(BULK).flat_map(|c| c.chunk_by(same_key)) {
        let key = match part.first() {
            Some(first) => keys.key_for_entry(first.index),
            None => continue,
        };
        let mut signed = Vec::with_capacity(part.len());
        let decoded: Vec<Result<(), String>> = part
            .iter()
            .map(|raw| {
                let sig = BASE64
                    .decode(&raw.signature)
                    .ok()
                    .and_then(|b| <[u8; 64]>::try_from(b).ok())
                    .ok_or_else(|| "signature is not base64 of 64 bytes".to_string())?;
                signed.push(SignedEntry {
                    index: raw.index,
                    body: raw.body.as_bytes().to_vec(),
                    signature: Signature::from_bytes(&sig),
                });
                Ok(())
            })
            .collect();
        let mut verdicts = SignedEntry::verify_each(&signed, key).into_iter();
        for (raw, decoded) in part.iter().zip(decoded) {
            let verdict = decoded.and_then(|()| match verdicts.next() {
                Some(verdict) => verdict.map_err(|e| e.to_string()),
                None => Err("internal: an entry without a verdict".to_string()),
            });
            out.push(CheckedEntry {
                leaf: hash_leaf(raw.body.as_bytes()),
                verdict,
            });
        }
    }
    out
}

/// One chunk's verification, shared out in batches of `BULK` to whichever thread is free:
/// the auditing thread joins in once its sequential work is done, so no core idles while
/// another still has a long share.
#[derive(Debug)]
pub struct SharedCheck<'a> {
    key: &'a KeyHistory,
    entries: Vec<&'a RawEntry>,
    next: AtomicUsize,
    batches: Vec<OnceLock<Vec<CheckedEntry>>>,
}

impl<'a> SharedCheck<'a> {
    /// `entries` to verify under `key`.
    pub fn new(key: &'a KeyHistory, entries: Vec<&'a RawEntry>) -> SharedCheck<'a> {
        let batches = (0..entries.len().div_ceil(BULK))
            .map(|_| OnceLock::new())
            .collect();
        SharedCheck {
            key,
            entries,
            next: AtomicUsize::new(0),
            batches,
        }
    }

    /// Verifies batches until none is left to take.
    pub fn help(&self) {
        loop {
            let batch = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = self.batches.get(batch) else {
                return;
            };
            let part = &self.entries[batch * BULK..((batch + 1) * BULK).min(self.entries.len())];
            let _ = slot.set(check_bulk(self.key, part));
        }
    }

    /// Every entry's result, in order. A batch left unfinished by a helper that panicked (a
    /// bug) is verified here rather than lost.
    pub fn into_results(self) -> Vec<CheckedEntry> {
        let mut out = Vec::with_capacity(self.entries.len());
        for (batch, slot) in self.batches.into_iter().enumerate() {
            match slot.into_inner() {
                Some(checked) => out.extend(checked),
                None => {
                    let end = ((batch + 1) * BULK).min(self.entries.len());
                    out.extend(check_bulk(self.key, &self.entries[batch * BULK..end]));
                }
            }
        }
        out
    }
}
