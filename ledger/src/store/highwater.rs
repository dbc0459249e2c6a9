//! The high-water record: what the log has acknowledged and signed, kept outside sled.
//!
//! sled 0.34 reads a checksum failure after its last snapshot as a torn tail and recovers
//! to the messages before it without an error, so every check the store could make of
//! itself (its size key, its last entry, its newest checkpoint) can go with the tail. This
//! small file beside the sled directory remembers, independently of sled's recovery, how
//! many entries were acknowledged (and the root of those entries) and the last checkpoint
//! signed; opening refuses a store that holds less (see `open`).
//!
//! The file is 8 KiB: two 4 KiB slots, each holding one record at its start. Writes go to
//! the slots in turn (record `seq` to slot `seq % 2`), each followed by `fdatasync`, so a
//! write torn by a power loss spoils only the slot being written and the other still holds
//! the previous record. The reader takes the valid slot with the higher `seq`.
//!
//! A record (192 bytes, integers big-endian):
//!
//! | bytes    | field                                                          |
//! |----------|----------------------------------------------------------------|
//! | 0..8     | magic `SWORNHW` ‖ version 0x01                                 |
//! | 8..16    | `seq`, the write's sequence number                             |
//! | 16..48   | log id: SHA-256(`sworn/v1/high-water` ‖ 0x00 ‖ origin ‖ 0x0A ‖ public key) |
//! | 48..56   | acknowledged size: every entry below it was acknowledged       |
//! | 56..88   | RFC 9162 root of the first `acknowledged size` entries         |
//! | 88..96   | size of the last signed checkpoint (0: none yet)               |
//! | 96..128  | its root (zeros if none)                                       |
//! | 128..160 | SHA-256 of its signed note (zeros if none)                     |
//! | 160..192 | SHA-256 of bytes 0..160                                        |
//!
//! The record only ever names what sled has already made durable: the writer flushes sled,
//! then writes the record, then acknowledges; the sealer flushes its checkpoint, then
//! records it. A crash between the two leaves the store ahead of the record, never behind.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::merkle::Hash;
use crate::small_file::{CappedReadError, read_capped};

use super::error::StoreError;

/// Bytes of one record.
pub(crate) const RECORD_LEN: usize = 192;
/// Bytes of one slot (a page, so a torn page write reaches one slot only).
const SLOT_LEN: u64 = 4096;
/// Bytes of the file: two slots.
const FILE_LEN: u64 = 2 * SLOT_LEN;
const MAGIC: &[u8; 8] = b"SWORNHW\x01";

/// The last checkpoint the log signed, as the record keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SignedMark {
    pub(crate) size: u64,
    pub(crate) root: Hash,
    pub(crate) note_sha256: [u8; 32],
}

/// One record's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    pub(crate) log_id: [u8; 32],
    /// Every entry below this index was acknowledged to a caller.
    pub(crate) acknowledged: u64,
    /// The root of the first `acknowledged` entries.
    pub(crate) acknowledged_root: Hash,
    /// The last checkpoint signed, if any.
    pub(crate) checkpoint: Option<SignedMark>,
}

impl Record {
    fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0..8].copy_from_slice(MAGIC);
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..48].copy_from_slice(&self.log_id);
        out[48..56].copy_from_slice(&self.acknowledged.to_be_bytes());
        out[56..88].copy_from_slice(&self.acknowledged_root.0);
        if let Some(cp) = &self.checkpoint {
            out[88..96].copy_from_slice(&cp.size.to_be_bytes());
            out[96..128].copy_from_slice(&cp.root.0);
            out[128..160].copy_from_slice(&cp.note_sha256);
        }
        let sum: [u8; 32] = Sha256::digest(&out[..160]).into();
        out[160..].copy_from_slice(&sum);
        out
    }

    /// The record in `bytes`, if its magic and checksum hold and it is consistent.
    fn decode(bytes: &[u8]) -> Option<Record> {
        let bytes = bytes.get(..RECORD_LEN)?;
        let sum: [u8; 32] = Sha256::digest(&bytes[..160]).into();
        if &bytes[0..8] != MAGIC || bytes[160..] != sum {
            return None;
        }
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8"));
        let hash_at = |at: usize| -> [u8; 32] { bytes[at..at + 32].try_into().expect("32") };
        let acknowledged = u64_at(48);
        let cp_size = u64_at(88);
        let checkpoint = (cp_size > 0).then(|| SignedMark {
            size: cp_size,
            root: Hash(hash_at(96)),
            note_sha256: hash_at(128),
        });
        // Checkpoints are sealed over acknowledged entries only.
        if cp_size > acknowledged {
            return None;
        }
        Some(Record {
            seq: u64_at(8),
            log_id: hash_at(16),
            acknowledged,
            acknowledged_root: Hash(hash_at(56)),
            checkpoint,
        })
    }
}

/// The log id a record is bound to.
pub(crate) fn log_id(origin: &str, public_key: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sworn/v1/high-water\x00");
    h.update(origin.as_bytes());
    h.update(b"\n");
    h.update(public_key);
    h.finalize().into()
}

/// Where the record of the sled database at `db` lives when the configuration names no
/// other place: beside the directory, `<db>.high-water` (`data/ledger` →
/// `data/ledger.high-water`).
pub(crate) fn default_path(db: &Path) -> Result<PathBuf, StoreError> {
    let db = if db.file_name().is_some() {
        db.to_path_buf()
    } else {
        // `.` or `..`: name the directory itself (it exists, sled has created it).
        std::fs::canonicalize(db).map_err(|e| io_error(db, "resolve", &e))?
    };
    let name = db.file_name().ok_or_else(|| StoreError::Config {
        reason: format!(
            "cannot place the high-water record beside {}; set `high_water`",
            db.display()
        ),
    })?;
    let mut name = name.to_os_string();
    name.push(".high-water");
    Ok(db.with_file_name(name))
}

/// What opening found at the record's path.
pub(crate) enum Found {
    /// No file.
    Missing,
    /// The newest valid record, and whether the other slot failed its checksum.
    Valid { record: Record, other_damaged: bool },
}

/// Reads the record at `path`. A file that is not exactly two slots, or with no valid
/// slot, is damaged.
pub(crate) fn read(path: &Path) -> Result<Found, StoreError> {
    let bytes = match read_capped(path, FILE_LEN) {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(Found::Missing),
        Err(CappedReadError::TooLarge { size, .. }) => {
            return Err(damaged(
                path,
                &format!("it is {size} bytes, not {FILE_LEN}"),
            ));
        }
        Err(CappedReadError::GrewPastCap { .. }) => {
            return Err(damaged(path, &format!("it is over {FILE_LEN} bytes")));
        }
        Err(e) => return Err(io_error(path, "read", &e.into_io_error())),
    };
    if bytes.len() as u64 != FILE_LEN {
        return Err(damaged(
            path,
            &format!("it is {} bytes, not {FILE_LEN}", bytes.len()),
        ));
    }
    let slot = |i: u64| {
        let start = usize::try_from(i * SLOT_LEN).expect("small");
        Record::decode(&bytes[start..]).filter(|r| r.seq % 2 == i)
    };
    match (slot(0), slot(1)) {
        (None, None) => Err(damaged(
            path,
            "neither of its two copies passes its checksum",
        )),
        (Some(record), None) | (None, Some(record)) => Ok(Found::Valid {
            record,
            other_damaged: true,
        }),
        (Some(a), Some(b)) => Ok(Found::Valid {
            record: if a.seq > b.seq { a } else { b },
            other_damaged: false,
        }),
    }
}

fn damaged(path: &Path, why: &str) -> StoreError {
    StoreError::HighWaterRecord {
        path: path.to_path_buf(),
        reason: format!(
            "the record is damaged ({why}), so what the log acknowledged cannot be checked; \
             put back the newest copy of this file (a backup's copy is an older bound, and is \
             still checked against the store) — never create it anew"
        ),
    }
}

fn io_error(path: &Path, what: &str, e: &std::io::Error) -> StoreError {
    StoreError::HighWaterRecord {
        path: path.to_path_buf(),
        reason: format!("cannot {what} it: {e}"),
    }
}

/// The open record file: the writer and the sealer update it, one write at a time.
pub(crate) struct HighWater {
    path: PathBuf,
    file: File,
    /// The last record written (its `seq` is the last one used).
    last: Mutex<Record>,
}

impl std::fmt::Debug for HighWater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HighWater")
            .field("path", &self.path)
            .finish()
    }
}

impl HighWater {
    /// Creates the file holding `record` in both slots, atomically: written and synced
    /// under a temporary name, renamed into place, and the directory synced. A crash
    /// leaves either no record or a whole one.
    pub(crate) fn create(path: &Path, record: Record) -> Result<HighWater, StoreError> {
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            let mut image = vec![0u8; usize::try_from(FILE_LEN).expect("small")];
            for (i, seq) in [(0usize, record.seq), (1, record.seq + 1)] {
                let start = i * usize::try_from(SLOT_LEN).expect("small");
                image[start..start + RECORD_LEN]
                    .copy_from_slice(&Record { seq, ..record }.encode());
            }
            f.write_all(&image)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            sync_parent(path)
        };
        write().map_err(|e| io_error(path, "create", &e))?;
        HighWater::open(
            path,
            Record {
                seq: record.seq + 1,
                ..record
            },
        )
    }

    /// Opens the existing file whose newest record is `last`.
    pub(crate) fn open(path: &Path, last: Record) -> Result<HighWater, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_error(path, "open", &e))?;
        Ok(HighWater {
            path: path.to_path_buf(),
            file,
            last: Mutex::new(last),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Records that entries below `size` (whose root is `root`) are durable and may be
    /// acknowledged; returns once the record is on disk. Sizes only grow.
    pub(crate) fn acknowledge(&self, size: u64, root: Hash) -> Result<(), StoreError> {
        self.advance(Some((size, root)), None, false)
    }

    /// Records the checkpoint just signed (and flushed to the store); returns once the
    /// record is on disk. Sizes only grow.
    pub(crate) fn signed(&self, mark: SignedMark) -> Result<(), StoreError> {
        self.advance(None, Some(mark), false)
    }

    /// Moves the record forward to an acknowledged size and root and/or a signed
    /// checkpoint (whichever is larger than what it holds) and writes it to the next slot,
    /// synced. Writes nothing if nothing moved, unless `rewrite`.
    pub(crate) fn advance(
        &self,
        acknowledged: Option<(u64, Hash)>,
        checkpoint: Option<SignedMark>,
        rewrite: bool,
    ) -> Result<(), StoreError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = *last;
        if let Some((size, root)) = acknowledged.filter(|&(size, _)| size > last.acknowledged) {
            next.acknowledged = size;
            next.acknowledged_root = root;
        }
        if let Some(mark) = checkpoint {
            if last.checkpoint.is_none_or(|c| mark.size > c.size) {
                next.checkpoint = Some(mark);
            }
        }
        if next.checkpoint.is_some_and(|c| c.size > next.acknowledged) {
            // Checkpoints are sealed over acknowledged entries only; a record saying
            // otherwise would read back as damaged.
            return Err(StoreError::corrupt(format!(
                "a checkpoint of size {} was to be recorded past the acknowledged size {}",
                next.checkpoint.map_or(0, |c| c.size),
                next.acknowledged
            )));
        }
        if next == *last && !rewrite {
            return Ok(());
        }
        next.seq = last.seq + 1;
        let at = (next.seq % 2) * SLOT_LEN;
        self.file
            .write_all_at(&next.encode(), at)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_error(&self.path, "write", &e))?;
        *last = next;
        Ok(())
    }
}

/// Makes a rename in `path`'s directory durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> Record {
        Record {
            seq,
            log_id: [7; 32],
            acknowledged: 254,
            acknowledged_root: Hash([1; 32]),
            checkpoint: Some(SignedMark {
                size: 250,
                root: Hash([2; 32]),
                note_sha256: [3; 32],
            }),
        }
    }

    #[test]
    fn records_round_trip_and_every_flipped_bit_is_caught() {
        let r = record(9);
        let bytes = r.encode();
        assert_eq!(Record::decode(&bytes), Some(r));
        for byte in 0..RECORD_LEN {
            for bit in 0..8 {
                let mut bad = bytes;
                bad[byte] ^= 1 << bit;
                assert_eq!(Record::decode(&bad), None, "byte {byte} bit {bit}");
            }
        }
        let none = Record {
            checkpoint: None,
            ..r
        };
        assert_eq!(Record::decode(&none.encode()), Some(none));
    }

    #[test]
    fn writes_alternate_slots_and_a_torn_slot_leaves_the_previous_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.high-water");
        let hw = HighWater::create(&path, record(0)).unwrap();
        hw.acknowledge(300, Hash([4; 32])).unwrap();
        hw.acknowledge(200, Hash([5; 32])).unwrap();
        let Found::Valid {
            record: newest,
            other_damaged,
        } = read(&path).unwrap()
        else {
            panic!("missing");
        };
        assert!(!other_damaged);
        assert_eq!((newest.seq, newest.acknowledged), (2, 300));
        // Tear the newest slot: the previous record (both slots held one) is read back.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[50] ^= 0x40; // Record 2 is in slot 0.
        std::fs::write(&path, &bytes).unwrap();
        let Found::Valid {
            record: previous,
            other_damaged,
        } = read(&path).unwrap()
        else {
            panic!("missing");
        };
        assert!(other_damaged);
        assert_eq!((previous.seq, previous.acknowledged), (1, 254));
    }
}
