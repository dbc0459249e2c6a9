//! Entry packs: fewer sled keys, so memory does not grow with the log.
//!
//! sled keeps metadata in memory for every page of every tree, and a leaf page holds at
//! most 16 keys; a key per entry (or several) therefore costs resident memory for as
//! long as the log grows, whatever the cache setting. So the store keeps
//! - **entry packs**: the rows of the 16 entries `16g .. 16g+15` in one value. The pack
//!   being filled is the *open pack*, one key (`a`) that each append group rewrites; its
//!   leaf page holds only small keys, so a rewrite costs sled little. Once full, the pack
//!   moves to `p ‖ g` in the same batch and is written again only by an erasure. The
//!   subtree hashes at levels 1–3 inside a pack are not stored: they are rebuilt from the
//!   pack's leaf hashes (at most 7 hashes); the hash of each larger subtree is stored
//!   after the rows of the full pack whose last entry completes it, so no subtree hash
//!   needs a row of its own.
//!
//! Stores written before packs keep their per-entry rows below `packs_from` (the size at
//! which this layout was first used) and are read as they are.

use crate::merkle::{Hash, hash_node};

use super::error::StoreError;
use super::schema::{decode_u64, leaf_of_row, open_pack_key, pack_key};

/// Entries per pack.
pub(crate) const PACK_SLOTS: u64 = 16;
/// Subtree levels that fit inside one pack (`2^PACK_LEVELS == PACK_SLOTS`).
pub(crate) const PACK_LEVELS: u8 = 4;

const PACK_VERSION: u8 = 1;
/// Version byte, first slot, slot count.
const PACK_HEADER: usize = 3;

/// The pack holding entry `index`, and its slot there.
pub(crate) fn pack_of(index: u64) -> (u64, u8) {
    (index / PACK_SLOTS, (index % PACK_SLOTS) as u8)
}

/// Whether the subtree hash at `(level, index)` has a row of its own: only when it starts
/// below `packs_from`. Otherwise levels 1–3 are rebuilt from their pack, and levels ≥ 4
/// are stored in the pack that completes them (see [`completing_pack`]).
pub(crate) fn node_is_stored(level: u8, index: u64, packs_from: u64) -> bool {
    index
        .checked_mul(1 << level)
        .is_none_or(|first| first < packs_from)
}

/// The pack whose last entry completes the subtree at `(level, index)`, level ≥ 4.
pub(crate) fn completing_pack(level: u8, index: u64) -> Option<u64> {
    let packs_per_node = 1u64.checked_shl(u32::from(level.checked_sub(PACK_LEVELS)?))?;
    index
        .checked_add(1)?
        .checked_mul(packs_per_node)?
        .checked_sub(1)
}

/// One pack, decoded: rows for the contiguous slots `first ..`, and the hashes of the
/// subtrees at levels 4, 5, … that its last entry completes (a full entry pack only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pack {
    first: u8,
    rows: Vec<Vec<u8>>,
    pub(crate) completed: Vec<Hash>,
}

impl Pack {
    /// An empty pack.
    pub(crate) fn new() -> Pack {
        Pack {
            first: 0,
            rows: Vec::new(),
            completed: Vec::new(),
        }
    }

    /// Parses a stored pack; `None` if malformed.
    pub(crate) fn decode(value: &[u8]) -> Option<Pack> {
        let (first, count, hashes_at) = header(value)?;
        let rows = (first..first + count)
            .map(|slot| slot_in(value, slot).flatten().map(<[u8]>::to_vec))
            .collect::<Option<Vec<_>>>()?;
        let completed = value[hashes_at..]
            .chunks_exact(32)
            .map(|h| Hash::from_slice(h).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Pack {
            first,
            rows,
            completed,
        })
    }

    /// The stored bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let data: usize = self.rows.iter().map(Vec::len).sum();
        let mut value = Vec::with_capacity(PACK_HEADER + 4 * self.rows.len() + data);
        value.push(PACK_VERSION);
        value.push(self.first);
        value.push(self.rows.len() as u8);
        let mut end = 0u32;
        for row in &self.rows {
            end += row.len() as u32;
            value.extend_from_slice(&end.to_be_bytes());
        }
        for row in &self.rows {
            value.extend_from_slice(row);
        }
        for hash in &self.completed {
            value.extend_from_slice(&hash.0);
        }
        value
    }

    /// Whether no slot is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Sets the row of `slot`: replaces a present slot, or adds the one right after the
    /// last (the first row of an empty pack may be at any slot). `false` for a gap.
    pub(crate) fn set(&mut self, slot: u8, row: Vec<u8>) -> bool {
        if u64::from(slot) >= PACK_SLOTS {
            return false;
        }
        if self.rows.is_empty() {
            self.first = slot;
        }
        let Some(at) = slot.checked_sub(self.first).map(usize::from) else {
            return false;
        };
        match at.cmp(&self.rows.len()) {
            std::cmp::Ordering::Less => self.rows[at] = row,
            std::cmp::Ordering::Equal => self.rows.push(row),
            std::cmp::Ordering::Greater => return false,
        }
        true
    }

    /// The last slot present.
    pub(crate) fn last_slot(&self) -> Option<u8> {
        (self.first + self.rows.len() as u8)
            .checked_sub(1)
            .filter(|_| !self.rows.is_empty())
    }

    /// Slots present: `first .. first + count`.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> std::ops::Range<u8> {
        self.first..self.first + self.rows.len() as u8
    }
}

/// First slot, slot count and where the completed-subtree hashes start, checked against
/// the stored length.
fn header(value: &[u8]) -> Option<(u8, u8, usize)> {
    let [version, first, count] = *value.get(..PACK_HEADER)? else {
        return None;
    };
    if version != PACK_VERSION || count == 0 || u64::from(first) + u64::from(count) > PACK_SLOTS {
        return None;
    }
    let ends = PACK_HEADER + 4 * usize::from(count);
    let hashes_at = ends.checked_add(end_offset(value, count - 1)?)?;
    let hashes = value.len().checked_sub(hashes_at)?;
    hashes
        .is_multiple_of(32)
        .then_some((first, count, hashes_at))
}

/// The hash of the subtree at `level` ≥ 4 completed by a stored pack's last entry.
pub(crate) fn completed_in(value: &[u8], level: u8) -> Option<Hash> {
    let (_, _, at) = header(value)?;
    let from = at + 32 * usize::from(level.checked_sub(PACK_LEVELS)?);
    Hash::from_slice(value.get(from..from + 32)?).ok()
}

fn end_offset(value: &[u8], at: u8) -> Option<usize> {
    let from = PACK_HEADER + 4 * usize::from(at);
    let bytes: [u8; 4] = value.get(from..from + 4)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(bytes)).ok()
}

/// The row in `slot` of a stored pack without decoding the rest: `Some(None)` when the
/// slot is absent, `None` when the pack is malformed.
pub(crate) fn slot_in(value: &[u8], slot: u8) -> Option<Option<&[u8]>> {
    let (first, count, _) = header(value)?;
    if slot < first || slot >= first + count {
        return Some(None);
    }
    let at = slot - first;
    let data = &value[PACK_HEADER + 4 * usize::from(count)..];
    let start = if at == 0 {
        0
    } else {
        end_offset(value, at - 1)?
    };
    let end = end_offset(value, at)?;
    data.get(start..end).map(Some)
}

/// The hash of the complete subtree at `(level, index)` (level < `PACK_LEVELS`) from the
/// leaf hashes in its pack; `None` if a leaf is missing or a row malformed.
pub(crate) fn subtree_in(value: &[u8], level: u8, index: u64) -> Option<Hash> {
    debug_assert!(level < PACK_LEVELS);
    let first_leaf = index.checked_mul(1 << level)?;
    let width = 1u64 << level;
    let mut hashes = (first_leaf..first_leaf + width)
        .map(|leaf| leaf_of_row(slot_in(value, pack_of(leaf).1)??))
        .collect::<Option<Vec<Hash>>>()?;
    while hashes.len() > 1 {
        hashes = hashes
            .chunks_exact(2)
            .map(|pair| hash_node(&pair[0], &pair[1]))
            .collect();
    }
    hashes.pop()
}

/// A pack's bytes (in the pack form above) as stored: a folded pack, or the open one.
#[derive(Debug)]
pub(crate) struct PackBytes {
    value: sled::IVec,
    /// Where the pack form starts (after the open pack's number).
    at: usize,
}

impl PackBytes {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.value[self.at..]
    }
}

/// The open pack's value: pack number u64 BE ‖ pack form.
pub(crate) fn open_pack_value(pack_no: u64, pack: &Pack) -> Vec<u8> {
    let mut value = pack_no.to_be_bytes().to_vec();
    value.extend_from_slice(&pack.encode());
    value
}

/// Number and contents of a stored open pack; `None` if malformed.
pub(crate) fn decode_open_pack(value: &[u8]) -> Option<(u64, Pack)> {
    Some((decode_u64(value.get(..8)?)?, Pack::decode(&value[8..])?))
}

/// Pack `pack_no`, folded or open (`None` if it is neither). Folding moves the open pack
/// into `p ‖ pack` and starts the next one in the same batch, so reading the folded key,
/// then the open one, then the folded key again never misses a pack that moves meanwhile.
pub(crate) fn find_pack(log: &sled::Tree, pack_no: u64) -> Result<Option<PackBytes>, StoreError> {
    let folded = || -> Result<Option<PackBytes>, StoreError> {
        Ok(log
            .get(pack_key(pack_no))?
            .map(|value| PackBytes { value, at: 0 }))
    };
    if let Some(pack) = folded()? {
        return Ok(Some(pack));
    }
    if let Some(value) = log.get(open_pack_key())? {
        let open = value
            .get(..8)
            .and_then(decode_u64)
            .ok_or_else(|| StoreError::corrupt("open pack"))?;
        if open == pack_no {
            return Ok(Some(PackBytes { value, at: 8 }));
        }
    }
    folded()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::hash_leaf;

    fn row_with_leaf(leaf: &Hash, filler: usize) -> Vec<u8> {
        // An entry row: signature (64), tag 0x02, flags, leaf hash, body bytes.
        let mut row = vec![0u8; 64];
        row.push(0x02);
        row.push(0);
        row.extend_from_slice(&leaf.0);
        row.extend(std::iter::repeat_n(b'x', filler));
        row
    }

    #[test]
    fn a_pack_round_trips_and_reads_single_slots() {
        let mut pack = Pack::new();
        assert!(pack.set(3, b"three".to_vec()));
        assert!(pack.set(4, b"four".to_vec()));
        assert!(!pack.set(6, b"gap".to_vec()), "slot 5 is missing");
        assert!(!pack.set(2, b"before".to_vec()));
        assert!(pack.set(3, b"THREE".to_vec()), "replacing a slot (erasure)");
        let value = pack.encode();
        assert_eq!(Pack::decode(&value), Some(pack.clone()));
        assert_eq!(pack.slots(), 3..5);
        assert_eq!(completed_in(&value, 4), None);
        let mut full = pack.clone();
        full.completed = vec![hash_leaf(b"4"), hash_leaf(b"5")];
        let full_value = full.encode();
        assert_eq!(Pack::decode(&full_value), Some(full));
        assert_eq!(completed_in(&full_value, 5), Some(hash_leaf(b"5")));
        assert_eq!(completed_in(&full_value, 6), None);
        assert_eq!(slot_in(&full_value, 4), Some(Some(&b"four"[..])));
        assert_eq!(slot_in(&value, 3), Some(Some(&b"THREE"[..])));
        assert_eq!(slot_in(&value, 4), Some(Some(&b"four"[..])));
        assert_eq!(slot_in(&value, 2), Some(None));
        assert_eq!(slot_in(&value, 5), Some(None));
    }

    #[test]
    fn damaged_packs_are_refused_not_misread() {
        let mut pack = Pack::new();
        for slot in 0..16 {
            assert!(pack.set(slot, vec![slot; 10]));
        }
        assert!(!pack.set(16, vec![0]), "a pack holds 16 slots");
        let value = pack.encode();
        for cut in 0..value.len() {
            assert_eq!(Pack::decode(&value[..cut]), None, "truncated at {cut}");
            assert_eq!(slot_in(&value[..cut], 0), None, "truncated at {cut}");
        }
        let mut longer = value.clone();
        longer.push(0);
        assert_eq!(Pack::decode(&longer), None);
        let mut version = value.clone();
        version[0] = 9;
        assert_eq!(Pack::decode(&version), None);
        let mut too_many = value.clone();
        too_many[1] = 1;
        assert_eq!(Pack::decode(&too_many), None, "slots 1..17");
        let mut offsets = value;
        offsets[PACK_HEADER + 3] = 200; // first row's end past the next one's
        assert_eq!(Pack::decode(&offsets), None);
    }

    #[test]
    fn subtrees_inside_a_pack_match_the_tree() {
        let leaves: Vec<Hash> = (0..16u8).map(|i| hash_leaf(&[i])).collect();
        let mut pack = Pack::new();
        for (slot, leaf) in leaves.iter().enumerate() {
            assert!(pack.set(slot as u8, row_with_leaf(leaf, slot * 7)));
        }
        let value = pack.encode();
        let mut range = crate::merkle::CompactRange::new();
        let pack_base: u64 = 16 * 5;
        let mut nodes = Vec::new();
        for i in 0..pack_base + 16 {
            let leaf = if i >= pack_base {
                leaves[(i - pack_base) as usize]
            } else {
                hash_leaf(&i.to_be_bytes())
            };
            nodes.extend(range.push(leaf).expect("room"));
        }
        let mut checked = 0;
        for node in nodes.iter().filter(|n| n.level < PACK_LEVELS) {
            if node.index << node.level >= pack_base {
                assert_eq!(
                    subtree_in(&value, node.level, node.index),
                    Some(node.hash),
                    "({}, {})",
                    node.level,
                    node.index
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 16 + 8 + 4 + 2);
    }

    #[test]
    fn stored_levels_follow_the_first_packed_index() {
        assert!(!node_is_stored(1, 0, 0));
        assert!(!node_is_stored(3, 7, 0));
        assert!(!node_is_stored(4, 0, 0));
        assert!(node_is_stored(5, 0, 20), "leaves 0..32 start before 20");
        assert!(!node_is_stored(5, 1, 20));
        assert_eq!(completing_pack(4, 0), Some(0));
        assert_eq!(completing_pack(4, 9), Some(9));
        assert_eq!(
            completing_pack(6, 2),
            Some(11),
            "leaves 128..192: packs 8..12"
        );
        assert_eq!(completing_pack(3, 0), None);
        // Packs begin at 20: a level-3 node over leaves 16..24 starts before them.
        assert!(node_is_stored(3, 2, 20));
        assert!(!node_is_stored(3, 3, 20));
        assert!(node_is_stored(2, u64::MAX, 0), "an index past the tree");
    }
}
