//! What one append group writes, gathered before it becomes one sled batch: entry rows
//! (into the open pack, see `pack`), content (a row per entry while its pack is open,
//! folded into one value per pack once it is full) and the request-id index records.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::merkle::{Hash, NewNode};

use super::error::StoreError;
use super::pack::{
    PACK_LEVELS, PACK_SLOTS, Pack, completing_pack, decode_open_pack, open_pack_value, pack_of,
    slot_in,
};
use super::schema::{content_key, entry_key, folded_key, open_pack_key, pack_key};
use super::shared::Shared;

/// Largest folded content pack before compression: a pack whose content is larger keeps
/// a row per entry (sled writes values over a quarter of its 512 KiB segments to files of
/// their own).
const MAX_FOLDED_BYTES: usize = 96 * 1024;

/// One group's writes.
#[derive(Default)]
pub(crate) struct GroupWrite {
    pub(crate) batch: sled::Batch,
    /// The subtree hashes the group completes (for the node cache once durable).
    pub(crate) nodes: Vec<NewNode>,
    /// Entry rows by index: in packs or, below `packs_from`, rows of their own.
    pub(crate) rows: Vec<(u64, Vec<u8>)>,
    /// Encoded content of new entries (only where there is any).
    pub(crate) content: Vec<(u64, Vec<u8>)>,
    /// Entries whose content the group erases.
    pub(crate) erased: Vec<u64>,
    /// Index of the group's first new entry (the log's size before it).
    first_new: u64,
    /// Request-id index records of the group's new receipts.
    pub(crate) requests: Vec<([u8; 8], u64)>,
}

impl GroupWrite {
    /// Writes of a group whose first new entry is `first_new`.
    pub(crate) fn new(first_new: u64) -> GroupWrite {
        GroupWrite {
            first_new,
            ..GroupWrite::default()
        }
    }

    /// Moves everything gathered into the batch.
    pub(crate) fn finish(&mut self, shared: &Shared) -> Result<(), StoreError> {
        let filled = self.put_rows(shared)?;
        self.put_content(shared, &filled)
    }

    /// Entry rows: new entries go into the open pack, which moves to its own key when
    /// full; an erasure rewrites its target's pack (open or folded), or its own row below
    /// `packs_from`. Returns the packs this group filled.
    fn put_rows(&mut self, shared: &Shared) -> Result<Vec<u64>, StoreError> {
        let rows: BTreeMap<u64, Vec<u8>> = std::mem::take(&mut self.rows).into_iter().collect();
        let mut open = match shared.log.get(open_pack_key())? {
            Some(value) => {
                Some(decode_open_pack(&value).ok_or_else(|| StoreError::corrupt("open pack"))?)
            }
            None => None,
        };
        let mut open_changed = false;
        let mut rewritten: BTreeMap<u64, Pack> = BTreeMap::new();
        let mut filled = Vec::new();
        for (index, row) in rows {
            if index < shared.packs_from {
                self.batch.insert(&entry_key(index)[..], row);
                continue;
            }
            let (pack_no, slot) = pack_of(index);
            let misplaced =
                || StoreError::corrupt(format!("entry {index} has no place in pack {pack_no}"));
            if index < self.first_new {
                // An erasure's rewrite of a durable entry.
                if let Some((_, pack)) = open.as_mut().filter(|(no, _)| *no == pack_no) {
                    if !pack.set(slot, row) {
                        return Err(misplaced());
                    }
                    open_changed = true;
                    continue;
                }
                if let std::collections::btree_map::Entry::Vacant(e) = rewritten.entry(pack_no) {
                    let value = shared.log.get(pack_key(pack_no))?.ok_or_else(misplaced)?;
                    e.insert(
                        Pack::decode(&value)
                            .ok_or_else(|| StoreError::corrupt(format!("entry pack {pack_no}")))?,
                    );
                }
                let pack = rewritten.get_mut(&pack_no).expect("inserted above");
                if !pack.set(slot, row) {
                    return Err(misplaced());
                }
                continue;
            }
            // A new entry: a pack starts at slot 0, or where packs begin.
            let (no, pack) = open.get_or_insert_with(|| (pack_no, Pack::new()));
            let starts_well = !pack.is_empty() || slot == 0 || index == shared.packs_from;
            if *no != pack_no || !starts_well || !pack.set(slot, row) {
                return Err(misplaced());
            }
            open_changed = true;
            if u64::from(slot) == PACK_SLOTS - 1 {
                let (no, mut pack) = open.take().expect("set above");
                pack.completed = self.completed_by(index);
                self.batch.insert(&pack_key(no)[..], pack.encode());
                filled.push(no);
            }
        }
        for (pack_no, pack) in rewritten {
            self.batch.insert(&pack_key(pack_no)[..], pack.encode());
        }
        if open_changed {
            match open {
                Some((no, pack)) => self
                    .batch
                    .insert(&open_pack_key()[..], open_pack_value(no, &pack)),
                None => self.batch.remove(&open_pack_key()[..]),
            }
        }
        Ok(filled)
    }

    /// The hashes of the subtrees at levels 4, 5, … that entry `last` completes, from the
    /// nodes the group produced.
    fn completed_by(&self, last: u64) -> Vec<Hash> {
        let mut completed: Vec<&NewNode> = self
            .nodes
            .iter()
            .filter(|n| n.level >= PACK_LEVELS)
            .filter(|n| completing_pack(n.level, n.index) == Some(pack_of(last).0))
            .collect();
        completed.sort_by_key(|n| n.level);
        completed.iter().map(|n| n.hash).collect()
    }

    /// Content: a row per entry while its pack is open; once the pack is full, all of its
    /// content in one folded value (when it fits), so keys do not grow with the log.
    /// Erasure clears a slot of a folded value or removes a row.
    fn put_content(&mut self, shared: &Shared, filled: &[u64]) -> Result<(), StoreError> {
        let erased: HashSet<u64> = self.erased.iter().copied().collect();
        let mut folded: BTreeMap<u64, Pack> = BTreeMap::new();
        for &target in &self.erased {
            let (pack_no, slot) = pack_of(target);
            if target >= shared.packs_from && !folded.contains_key(&pack_no) {
                if let Some(value) = shared.log.get(folded_key(pack_no))? {
                    let pack = decode_folded(&value)
                        .and_then(|plain| Pack::decode(&plain))
                        .ok_or_else(|| StoreError::corrupt(format!("content pack {pack_no}")))?;
                    folded.insert(pack_no, pack);
                }
            }
            match folded.get_mut(&pack_no) {
                Some(pack) => {
                    pack.set(slot, Vec::new());
                }
                None => self.batch.remove(&content_key(target)[..]),
            }
        }
        let mut new: HashMap<u64, Vec<u8>> =
            std::mem::take(&mut self.content).into_iter().collect();
        for &pack_no in filled {
            let first = pack_no * PACK_SLOTS;
            if first < shared.packs_from {
                continue;
            }
            let mut pack = Pack::new();
            let mut from_rows = Vec::new();
            let mut any_content = false;
            for index in first..first + PACK_SLOTS {
                let value = match new.get(&index) {
                    Some(v) => v.clone(),
                    None if erased.contains(&index) => Vec::new(),
                    None => match shared.log.get(content_key(index))? {
                        Some(v) => {
                            from_rows.push(index);
                            v.to_vec()
                        }
                        None => Vec::new(),
                    },
                };
                any_content |= !value.is_empty();
                pack.set(pack_of(index).1, value);
            }
            if !any_content || pack.encode().len() > MAX_FOLDED_BYTES {
                // Nothing to fold (no content at all), or too much for one value.
                continue;
            }
            for index in first..first + PACK_SLOTS {
                new.remove(&index);
            }
            for index in from_rows {
                self.batch.remove(&content_key(index)[..]);
            }
            folded.insert(pack_no, pack);
        }
        for (pack_no, pack) in folded {
            self.batch
                .insert(&folded_key(pack_no)[..], encode_folded(&pack));
        }
        for (index, value) in new {
            self.batch.insert(&content_key(index)[..], value);
        }
        Ok(())
    }
}

/// Tag of a folded content value compressed with zstd (a plain one starts with the pack
/// version, 1).
const COMPRESSED: u8 = b'Z';
/// zstd level for folded content: prompts and answers are text, ~3× smaller at level 3.
const ZSTD_LEVEL: i32 = 3;

/// A folded content pack as stored: compressed, or plain should compression fail.
fn encode_folded(pack: &Pack) -> Vec<u8> {
    let plain = pack.encode();
    match zstd::bulk::compress(&plain, ZSTD_LEVEL) {
        Ok(compressed) if compressed.len() < plain.len() => {
            let mut value = Vec::with_capacity(1 + compressed.len());
            value.push(COMPRESSED);
            value.extend_from_slice(&compressed);
            value
        }
        _ => plain,
    }
}

/// The pack form of a stored folded content value; `None` if damaged. Decompression is
/// capped at the largest pack that is ever folded.
fn decode_folded(value: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    match value.first()? {
        &COMPRESSED => zstd::bulk::decompress(&value[1..], MAX_FOLDED_BYTES)
            .ok()
            .map(std::borrow::Cow::Owned),
        _ => Some(std::borrow::Cow::Borrowed(value)),
    }
}

/// The stored content value of entry `index`, folded or in a row of its own (`None` if
/// there is none: erased, or empty content). Folding only ever moves a row into a folded
/// value, so reading the folded value, then the row, then the folded value again finds
/// content that a concurrent fold moves.
pub(crate) fn content_value(shared: &Shared, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
    let (pack_no, slot) = pack_of(index);
    let folded = |shared: &Shared| -> Result<Option<Option<Vec<u8>>>, StoreError> {
        if index < shared.packs_from {
            return Ok(None);
        }
        let Some(value) = shared.log.get(folded_key(pack_no))? else {
            return Ok(None);
        };
        let damaged = || StoreError::corrupt(format!("content pack {pack_no}"));
        let plain = decode_folded(&value).ok_or_else(damaged)?;
        let row = slot_in(&plain, slot).ok_or_else(damaged)?;
        Ok(Some(row.filter(|r| !r.is_empty()).map(<[u8]>::to_vec)))
    };
    if let Some(found) = folded(shared)? {
        return Ok(found);
    }
    if let Some(row) = shared.log.get(content_key(index))? {
        return Ok(Some(row.to_vec()));
    }
    Ok(folded(shared)?.flatten())
}
