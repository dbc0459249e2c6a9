//! On-disk layout.
//!
//! Everything an append writes lives in one sled tree, `log`, under one-byte key prefixes,
//! so that an append group is a single atomic sled batch: entries, content, subtree
//! hashes and the size either all land or none do. Recovery can then trust `size` without
//! scanning. (The request-id index is derived from the entries and written in batches of
//! its own, see `request_index`.)
//!
//! | key                                  | value                                          |
//! |--------------------------------------|------------------------------------------------|
//! | `e` ‖ index u64 BE (below `packs_from`) | signature (64) ‖ 0x02 ‖ flags ‖ leaf hash (32) ‖ [prompt salt ‖ response salt] ‖ body, compact or JSON (see [`EntryRow`]) |
//! | `c` ‖ index u64 BE                   | prompt salt (32) ‖ response salt (32) ‖ prompt length u32 BE ‖ prompt ‖ response (erasable; absent when both are empty); folded into `f` when its pack is |
//! | `f` ‖ pack u64 BE                    | the content values of a full pack's 16 entries, in pack form (an empty slot: no content); absent when the pack has none, or more than 96 KiB |
//! | `h` ‖ level u8 ‖ index u64 BE        | hash (32) of the complete subtree at (level, index), level ≥ 1, only for subtrees that start below `packs_from` (stores written before packs); the others are in the packs |
//! | `d` ‖ model id (8)                   | a model description that compact bodies refer to |
//! | `a`                                  | the open pack: pack u64 BE ‖ the rows appended so far of entries `16·pack ..` (see `pack`) |
//! | `p` ‖ pack u64 BE                    | entry rows of entries `16·pack .. 16·pack+15`, once all are appended, then the hashes of the subtrees (levels 4, 5, …) its last entry completes (see `pack`) |
//! | `x` ‖ run u64 BE ‖ chunk u32 BE      | request-id index records, sorted: fingerprint (8) ‖ index u64 BE, up to 256 (see `request_index`) |
//! | `y` ‖ run u64 BE                     | a run's manifest: level ‖ first fingerprint of each chunk |
//! | `r` ‖ request id                     | index u64 BE (entries below `packs_from`)      |
//! | `z` ‖ erased index u64 BE            | index u64 BE of the erasure event              |
//! | `m` ‖ `size`                         | number of entries, u64 BE                      |
//! | `m` ‖ `origin`, `m` ‖ `public_key`   | the log's identity (origin and first key), fixed at first open |
//! | `m` ‖ `key_history`, `m` ‖ `key_rotation_pending` | key rotations (see `rotation`)   |
//! | `m` ‖ `packs_from`                   | first index stored in packs, u64 BE (the size when packs were first used) |
//! | `m` ‖ `indexed_to`                   | entries below this are in the request index's runs, u64 BE |
//!
//! Rows written before the compact layout (signature ‖ JSON body, leaf hashes in `h` rows at
//! level 0, salts only in `c`) are still read as they are.
//!
//! Separate trees, written outside append groups and flushed on their own:
//! `checkpoints` (tree size u64 BE → signed note; sizes only grow, so key order is sealing
//! order), `anchors` (seq u64 BE → anchorer-defined record) and `meta` (free-form small
//! values for other components).

use crate::commitment::{SALT_LEN, Salt};
use crate::keys::Signature;
use crate::merkle::Hash;

/// Name of the tree holding entries, content, hashes and the log's own metadata.
pub(crate) const LOG_TREE: &str = "log";
/// Name of the checkpoints tree.
pub(crate) const CHECKPOINTS_TREE: &str = "checkpoints";
/// Name of the anchor records tree.
pub(crate) const ANCHORS_TREE: &str = "anchors";
/// Name of the free-form metadata tree.
pub(crate) const META_TREE: &str = "meta";

const ENTRY: u8 = b'e';
const CONTENT: u8 = b'c';
const HASH: u8 = b'h';
const REQUEST: u8 = b'r';
const ERASED: u8 = b'z';
const META: u8 = b'm';
const MODEL: u8 = b'd';
const PACK: u8 = b'p';
const OPEN_PACK: u8 = b'a';
const RUN_CHUNK: u8 = b'x';
const RUN_MANIFEST: u8 = b'y';
const FOLDED: u8 = b'f';

/// Key of the folded content of entry pack `pack`.
pub(crate) fn folded_key(pack: u64) -> [u8; 9] {
    prefixed(FOLDED, pack)
}

/// Key of entry pack `pack` (entries `16·pack ..`; see `pack`).
pub(crate) fn pack_key(pack: u64) -> [u8; 9] {
    prefixed(PACK, pack)
}

/// Every pack key from `pack` on.
pub(crate) fn pack_range(from: u64) -> std::ops::Range<[u8; 9]> {
    pack_key(from)..prefixed(PACK + 1, 0)
}

/// Key of the open pack (see `pack`). `a` sorts before every other key, next to the small
/// content rows of the open pack: its leaf page stays small however often it is rewritten.
pub(crate) fn open_pack_key() -> [u8; 1] {
    [OPEN_PACK]
}

/// Key of chunk `chunk` of request-index run `run`.
pub(crate) fn chunk_key(run: u64, chunk: u32) -> [u8; 13] {
    let mut key = [0u8; 13];
    key[0] = RUN_CHUNK;
    key[1..9].copy_from_slice(&run.to_be_bytes());
    key[9..].copy_from_slice(&chunk.to_be_bytes());
    key
}

/// First key after every run chunk key.
pub(crate) fn chunk_range_end() -> [u8; 1] {
    [RUN_CHUNK + 1]
}

/// Key of the manifest of request-index run `run`.
pub(crate) fn manifest_key(run: u64) -> [u8; 9] {
    prefixed(RUN_MANIFEST, run)
}

/// Every run manifest key.
pub(crate) fn manifest_range() -> std::ops::Range<[u8; 9]> {
    manifest_key(0)..prefixed(RUN_MANIFEST + 1, 0)
}

pub(crate) fn entry_key(index: u64) -> [u8; 9] {
    prefixed(ENTRY, index)
}

pub(crate) fn content_key(index: u64) -> [u8; 9] {
    prefixed(CONTENT, index)
}

pub(crate) fn erased_key(index: u64) -> [u8; 9] {
    prefixed(ERASED, index)
}

pub(crate) fn hash_key(level: u8, index: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[0] = HASH;
    key[1] = level;
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

pub(crate) fn request_key(request_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + request_id.len());
    key.push(REQUEST);
    key.extend_from_slice(request_id.as_bytes());
    key
}

pub(crate) fn model_key(id: &[u8; 8]) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = MODEL;
    key[1..].copy_from_slice(id);
    key
}

/// Every model dictionary key.
pub(crate) fn model_range() -> std::ops::Range<[u8; 9]> {
    model_key(&[0; 8])..prefixed(MODEL + 1, 0)
}

pub(crate) fn meta_key(name: &str) -> Vec<u8> {
    let mut key = vec![META];
    key.extend_from_slice(name.as_bytes());
    key
}

/// First key after every entry key (for range scans of entries).
pub(crate) fn entry_range(from: u64) -> std::ops::Range<[u8; 9]> {
    entry_key(from)..prefixed(ENTRY + 1, 0)
}

fn prefixed(prefix: u8, index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = prefix;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Tag after the signature in an entry row written by this version. Rows of earlier
/// versions have the body's JSON there, which starts with `{`.
const ROW_CURRENT: u8 = 0x02;
/// Flag: the row holds the two commitment salts (cleared by erasure).
const FLAG_SALTS: u8 = 1;
/// Flag: the body is in its compact form (see `compact`), not JSON.
const FLAG_COMPACT: u8 = 2;

/// A body as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredBody {
    /// The canonical JSON itself.
    Json(Vec<u8>),
    /// The compact form, rebuilt into the canonical JSON on reading.
    Compact(Vec<u8>),
}

/// An entry row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryRow {
    /// Written by an earlier version: signature and JSON body; salts in the content row,
    /// leaf hash in a hash row.
    Earlier { signature: Signature, body: Vec<u8> },
    /// Written by this version: the leaf hash and, until erased, the salts live here, so
    /// an entry with no content is one row.
    Current {
        signature: Signature,
        leaf: Hash,
        salts: Option<(Salt, Salt)>,
        body: StoredBody,
    },
}

impl EntryRow {
    /// The row's bytes (always the current layout).
    pub(crate) fn encode(
        signature: &Signature,
        leaf: &Hash,
        salts: Option<(Salt, Salt)>,
        body: &StoredBody,
    ) -> Vec<u8> {
        let (flag, bytes) = match body {
            StoredBody::Json(b) => (0, b),
            StoredBody::Compact(b) => (FLAG_COMPACT, b),
        };
        let mut value = Vec::with_capacity(64 + 2 + 32 + 2 * SALT_LEN + bytes.len());
        value.extend_from_slice(&signature.to_bytes());
        value.push(ROW_CURRENT);
        value.push(flag | if salts.is_some() { FLAG_SALTS } else { 0 });
        value.extend_from_slice(&leaf.0);
        if let Some((prompt, response)) = salts {
            value.extend_from_slice(&prompt.0);
            value.extend_from_slice(&response.0);
        }
        value.extend_from_slice(bytes);
        value
    }

    /// Parses a row of either layout.
    pub(crate) fn decode(value: &[u8]) -> Option<EntryRow> {
        let sig: [u8; 64] = value.get(..64)?.try_into().ok()?;
        let signature = Signature::from_bytes(&sig);
        let rest = &value[64..];
        if rest.first() != Some(&ROW_CURRENT) {
            return Some(EntryRow::Earlier {
                signature,
                body: rest.to_vec(),
            });
        }
        let flags = *rest.get(1)?;
        if flags & !(FLAG_SALTS | FLAG_COMPACT) != 0 {
            return None;
        }
        let leaf = Hash::from_slice(rest.get(2..34)?).ok()?;
        let mut at = 34;
        let salts = if flags & FLAG_SALTS != 0 {
            let prompt: [u8; SALT_LEN] = rest.get(at..at + SALT_LEN)?.try_into().ok()?;
            let response: [u8; SALT_LEN] = rest
                .get(at + SALT_LEN..at + 2 * SALT_LEN)?
                .try_into()
                .ok()?;
            at += 2 * SALT_LEN;
            Some((Salt(prompt), Salt(response)))
        } else {
            None
        };
        let bytes = rest.get(at..)?.to_vec();
        let body = if flags & FLAG_COMPACT != 0 {
            StoredBody::Compact(bytes)
        } else {
            StoredBody::Json(bytes)
        };
        Some(EntryRow::Current {
            signature,
            leaf,
            salts,
            body,
        })
    }
}

/// The leaf hash in an entry row's bytes, without copying the body; `None` for a row of an
/// earlier layout (whose leaf is in a hash row) or a malformed one.
pub(crate) fn leaf_of_row(value: &[u8]) -> Option<Hash> {
    if value.get(64) != Some(&ROW_CURRENT) {
        return None;
    }
    Hash::from_slice(value.get(66..98)?).ok()
}

pub(crate) fn decode_hash(value: &[u8]) -> Option<Hash> {
    Hash::from_slice(value).ok()
}

/// Stored content of one receipt: the two salts and the committed bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredContent {
    /// Salt of the prompt commitment.
    pub prompt_salt: Salt,
    /// Salt of the response commitment.
    pub response_salt: Salt,
    /// Canonical prompt content as committed.
    pub prompt: Vec<u8>,
    /// Response content as committed.
    pub response: Vec<u8>,
}

impl std::fmt::Debug for StoredContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Content is user data: never in logs.
        write!(
            f,
            "StoredContent {{ prompt: {} bytes, response: {} bytes }}",
            self.prompt.len(),
            self.response.len()
        )
    }
}

pub(crate) fn encode_content(content: &StoredContent) -> Option<Vec<u8>> {
    let prompt_len = u32::try_from(content.prompt.len()).ok()?;
    let mut value =
        Vec::with_capacity(2 * SALT_LEN + 4 + content.prompt.len() + content.response.len());
    value.extend_from_slice(&content.prompt_salt.0);
    value.extend_from_slice(&content.response_salt.0);
    value.extend_from_slice(&prompt_len.to_be_bytes());
    value.extend_from_slice(&content.prompt);
    value.extend_from_slice(&content.response);
    Some(value)
}

pub(crate) fn decode_content(value: &[u8]) -> Option<StoredContent> {
    let prompt_salt: [u8; SALT_LEN] = value.get(..SALT_LEN)?.try_into().ok()?;
    let response_salt: [u8; SALT_LEN] = value.get(SALT_LEN..2 * SALT_LEN)?.try_into().ok()?;
    let len_bytes: [u8; 4] = value.get(2 * SALT_LEN..2 * SALT_LEN + 4)?.try_into().ok()?;
    let prompt_len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
    let rest = value.get(2 * SALT_LEN + 4..)?;
    if rest.len() < prompt_len {
        return None;
    }
    let (prompt, response) = rest.split_at(prompt_len);
    Some(StoredContent {
        prompt_salt: Salt(prompt_salt),
        response_salt: Salt(response_salt),
        prompt: prompt.to_vec(),
        response: response.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips_and_truncation_is_refused() {
        let content = StoredContent {
            prompt_salt: Salt([1; 32]),
            response_salt: Salt([2; 32]),
            prompt: b"prompt".to_vec(),
            response: b"response".to_vec(),
        };
        let bytes = encode_content(&content).unwrap();
        assert_eq!(decode_content(&bytes), Some(content));
        assert_eq!(decode_content(&bytes[..70]), None);
        assert_eq!(decode_content(&bytes[..10]), None);
    }

    #[test]
    fn entry_keys_sort_by_index() {
        assert!(entry_key(1) < entry_key(256));
        assert!(entry_range(0).contains(&entry_key(u64::MAX)));
        assert!(!entry_range(0).contains(&content_key(0)));
    }
}
