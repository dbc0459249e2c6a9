//! The request-id index: request id → entry index, with memory bounded by configuration.
//!
//! A log-structured merge index. Records are `(fingerprint, index)` pairs, the fingerprint
//! being 64 bits of SHA-256 of the request id:
//!
//! - the **memtable** holds the records of the newest entries (at most `memtable_limit`).
//!   It is not written anywhere: every request id is in its entry's body, so on open the
//!   memtable is rebuilt from the entries after `indexed_to`;
//! - a full memtable becomes a **run**: its records sorted, in chunks of 256 (4 KiB
//!   values, `x ‖ run ‖ chunk`), then a manifest (`y ‖ run`) holding each chunk's first
//!   fingerprint, written in one batch with the new `indexed_to` (chunks a crash leaves
//!   without a manifest are removed on open);
//! - when four runs of one level exist they are **merged** into one run of the next level
//!   (in one batch that also removes them), so a record is rewritten O(log n) times and a
//!   lookup reads one chunk per run, O(log n) runs.
//!
//! sled keys grow by one per 256 records, and memory by the manifests' 8 bytes per chunk
//! (~31 KiB per million entries), against one key per entry for a row per request id.
//! A fingerprint match is only a candidate: the store checks the entry's own body.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::RwLock;

use sha2::{Digest, Sha256};

use super::error::StoreError;
use super::schema::{
    chunk_key, chunk_range_end, decode_u64, manifest_key, manifest_range, meta_key,
};

/// Records per chunk (16 bytes each).
const CHUNK_RECORDS: usize = 256;
/// Runs of one level merged at a time.
const FAN_IN: usize = 4;
const RECORD: usize = 16;
/// Chunks a merge writes (or removes) per sled batch: 256 KiB.
const MERGE_BATCH_CHUNKS: usize = 64;

/// Default memtable size: 65,536 records (a few MiB), rebuilt on open by reading at most
/// that many entries.
pub const DEFAULT_REQUEST_MEMTABLE: usize = 65_536;

/// The 64-bit fingerprint of a request id.
pub(crate) fn fingerprint(request_id: &str) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(b"sworn.request-id\0")
        .chain_update(request_id.as_bytes())
        .finalize();
    digest[..8].try_into().expect("8 bytes")
}

/// One sorted run, as its manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    id: u64,
    level: u8,
    /// First fingerprint of each chunk.
    fences: Vec<[u8; 8]>,
}

impl Run {
    fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(1 + 8 * self.fences.len());
        value.push(self.level);
        for fence in &self.fences {
            value.extend_from_slice(fence);
        }
        value
    }

    fn decode(id: u64, value: &[u8]) -> Option<Run> {
        let (&level, fences) = value.split_first()?;
        if fences.is_empty() || !fences.len().is_multiple_of(8) {
            return None;
        }
        let fences: Vec<[u8; 8]> = fences
            .chunks_exact(8)
            .map(|f| f.try_into().expect("8 bytes"))
            .collect();
        fences.is_sorted().then_some(Run { id, level, fences })
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Fingerprint → indices of the newest entries (nearly always one each).
    memtable: HashMap<[u8; 8], Vec<u64>>,
    memtable_records: usize,
    /// Oldest first.
    runs: Vec<Run>,
    next_run: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct RequestIndex {
    inner: RwLock<Inner>,
    memtable_limit: usize,
}

fn decode_records(value: &[u8]) -> Option<impl Iterator<Item = ([u8; 8], u64)> + '_> {
    if value.is_empty() || !value.len().is_multiple_of(RECORD) {
        return None;
    }
    Some(value.chunks_exact(RECORD).map(|r| {
        (
            r[..8].try_into().expect("8 bytes"),
            u64::from_be_bytes(r[8..].try_into().expect("8 bytes")),
        )
    }))
}

impl RequestIndex {
    /// Loads the runs' manifests; the memtable starts empty (see [`Self::indexed_to`]).
    pub(crate) fn load(
        log: &sled::Tree,
        memtable_limit: usize,
    ) -> Result<RequestIndex, StoreError> {
        let mut runs = Vec::new();
        for item in log.range(manifest_range()) {
            let (key, value) = item?;
            let id =
                decode_u64(&key[1..]).ok_or_else(|| StoreError::corrupt("run manifest key"))?;
            runs.push(
                Run::decode(id, &value)
                    .ok_or_else(|| StoreError::corrupt(format!("request index run {id}")))?,
            );
        }
        let next_run = runs.last().map_or(0, |r| r.id + 1);
        // Chunks of runs without a manifest: merged away, or an unfinished merge's output.
        let live: std::collections::HashSet<u64> = runs.iter().map(|r| r.id).collect();
        for run in (0..next_run).filter(|id| !live.contains(id)) {
            remove_chunks(log, run)?;
        }
        let mut orphans = sled::Batch::default();
        for item in log.range(chunk_key(next_run, 0).to_vec()..chunk_range_end().to_vec()) {
            orphans.remove(item?.0);
        }
        log.apply_batch(orphans)?;
        Ok(RequestIndex {
            inner: RwLock::new(Inner {
                runs,
                next_run,
                ..Inner::default()
            }),
            memtable_limit: memtable_limit.max(1),
        })
    }

    /// Entries below this are in the runs; the memtable must be given the ones after.
    pub(crate) fn indexed_to(log: &sled::Tree) -> Result<u64, StoreError> {
        match log.get(meta_key("indexed_to"))? {
            Some(v) => decode_u64(&v).ok_or_else(|| StoreError::corrupt("indexed_to")),
            None => Ok(0),
        }
    }

    /// Every index recorded under `fingerprint`, newest runs last.
    pub(crate) fn candidates(
        &self,
        log: &sled::Tree,
        fingerprint: &[u8; 8],
    ) -> Result<Vec<u64>, StoreError> {
        // Held across the chunk reads: a merge removes chunks only under the write lock.
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut found = inner.memtable.get(fingerprint).cloned().unwrap_or_default();
        for run in &inner.runs {
            // The first chunk that can hold it; equal fingerprints may continue in the next.
            let mut chunk = run
                .fences
                .partition_point(|f| f < fingerprint)
                .saturating_sub(1);
            while chunk < run.fences.len() {
                let value = log.get(chunk_key(run.id, chunk as u32))?.ok_or_else(|| {
                    StoreError::corrupt(format!("request index run {} chunk {chunk}", run.id))
                })?;
                let records = decode_records(&value).ok_or_else(|| {
                    StoreError::corrupt(format!("request index run {} chunk {chunk}", run.id))
                })?;
                let mut past = false;
                for (fp, index) in records {
                    if fp == *fingerprint {
                        found.push(index);
                    } else if fp > *fingerprint {
                        past = true;
                        break;
                    }
                }
                if past {
                    break;
                }
                chunk += 1;
            }
        }
        Ok(found)
    }

    /// Adds the records of an applied group. Returns whether the memtable is full.
    pub(crate) fn add(&self, records: &[([u8; 8], u64)]) -> bool {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        for (fp, index) in records {
            inner.memtable.entry(*fp).or_default().push(*index);
        }
        inner.memtable_records += records.len();
        inner.memtable_records >= self.memtable_limit
    }

    /// Writes the memtable as a run covering entries below `indexed_to`, then merges while
    /// a level has `FAN_IN` runs. Called by the builder only (the index's one writer).
    pub(crate) fn flush(&self, log: &sled::Tree, indexed_to: u64) -> Result<(), StoreError> {
        let (mut records, id) = {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            let records: Vec<([u8; 8], u64)> = inner
                .memtable
                .iter()
                .flat_map(|(fp, indices)| indices.iter().map(|i| (*fp, *i)))
                .collect();
            (records, inner.next_run)
        };
        records.sort_unstable();
        let mut out = RunWriter::new(id, 0);
        for record in records {
            out.push(log, record)?;
        }
        let run = out.finish(log)?;
        // The switch: the run's manifest and the new `indexed_to` land together.
        let mut batch = sled::Batch::default();
        if let Some(run) = &run {
            batch.insert(&manifest_key(run.id)[..], run.encode());
        }
        batch.insert(&meta_key("indexed_to")[..], &indexed_to.to_be_bytes()[..]);
        {
            let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
            log.apply_batch(batch)?;
            if let Some(run) = run {
                inner.runs.push(run);
            }
            inner.next_run = id + 1;
            inner.memtable.clear();
            inner.memtable_records = 0;
        }
        while self.merge_once(log)? {}
        Ok(())
    }

    /// Merges the newest `FAN_IN` runs if they share a level; `false` if there was nothing
    /// to merge. Streams: one chunk per input and one output chunk in memory, the output
    /// written in batches of `MERGE_BATCH_CHUNKS`. The switch (new manifest in, old ones
    /// out) is one small batch; chunks a crash leaves without a manifest are removed on
    /// the next open.
    fn merge_once(&self, log: &sled::Tree) -> Result<bool, StoreError> {
        let (inputs, id) = {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            let n = inner.runs.len();
            if n < FAN_IN {
                return Ok(false);
            }
            let tail = &inner.runs[n - FAN_IN..];
            if tail.iter().any(|r| r.level != tail[0].level) {
                return Ok(false);
            }
            (tail.to_vec(), inner.next_run)
        };
        let mut cursors = inputs
            .iter()
            .map(|run| Cursor::new(log, run))
            .collect::<Result<Vec<_>, _>>()?;
        let mut heap = BinaryHeap::new();
        for (i, cursor) in cursors.iter().enumerate() {
            if let Some(record) = cursor.peek() {
                heap.push(Reverse((record, i)));
            }
        }
        let mut out = RunWriter::new(id, inputs[0].level.saturating_add(1));
        while let Some(Reverse((record, i))) = heap.pop() {
            out.push(log, record)?;
            if let Some(next) = cursors[i].advance(log)? {
                heap.push(Reverse((next, i)));
            }
        }
        let merged = out.finish(log)?;
        let mut switch = sled::Batch::default();
        if let Some(run) = &merged {
            switch.insert(&manifest_key(run.id)[..], run.encode());
        }
        for run in &inputs {
            switch.remove(&manifest_key(run.id)[..]);
        }
        {
            let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
            log.apply_batch(switch)?;
            let keep = inner.runs.len() - FAN_IN;
            inner.runs.truncate(keep);
            inner.runs.extend(merged);
            inner.next_run = id + 1;
        }
        // No reader can reach the old chunks any more.
        for run in &inputs {
            remove_chunks(log, run.id)?;
        }
        Ok(true)
    }

    /// Runs and memtable records, for tests.
    #[cfg(test)]
    fn shape(&self) -> (Vec<u8>, usize) {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        (
            inner.runs.iter().map(|r| r.level).collect(),
            inner.memtable_records,
        )
    }
}

/// Removes every chunk of run `run`, in batches.
fn remove_chunks(log: &sled::Tree, run: u64) -> Result<(), StoreError> {
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in log
            .range(chunk_key(run, 0)..chunk_key(run.saturating_add(1), 0))
            .take(MERGE_BATCH_CHUNKS)
        {
            batch.remove(item?.0);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        log.apply_batch(batch)?;
    }
}

/// Reads one input run of a merge, a chunk at a time.
struct Cursor<'a> {
    run: &'a Run,
    chunk: usize,
    records: Vec<([u8; 8], u64)>,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(log: &sled::Tree, run: &'a Run) -> Result<Cursor<'a>, StoreError> {
        let mut cursor = Cursor {
            run,
            chunk: 0,
            records: Vec::new(),
            at: 0,
        };
        cursor.load(log)?;
        Ok(cursor)
    }

    fn load(&mut self, log: &sled::Tree) -> Result<(), StoreError> {
        let damaged = || {
            StoreError::corrupt(format!(
                "request index run {} chunk {}",
                self.run.id, self.chunk
            ))
        };
        self.records.clear();
        self.at = 0;
        if self.chunk < self.run.fences.len() {
            let value = log
                .get(chunk_key(self.run.id, self.chunk as u32))?
                .ok_or_else(damaged)?;
            self.records
                .extend(decode_records(&value).ok_or_else(damaged)?);
        }
        Ok(())
    }

    fn peek(&self) -> Option<([u8; 8], u64)> {
        self.records.get(self.at).copied()
    }

    fn advance(&mut self, log: &sled::Tree) -> Result<Option<([u8; 8], u64)>, StoreError> {
        self.at += 1;
        if self.at == self.records.len() {
            self.chunk += 1;
            self.load(log)?;
        }
        Ok(self.peek())
    }
}

/// Writes a run's chunks in sorted order, a batch of chunks at a time.
struct RunWriter {
    id: u64,
    level: u8,
    fences: Vec<[u8; 8]>,
    chunk: Vec<u8>,
    batch: sled::Batch,
    in_batch: usize,
}

impl RunWriter {
    fn new(id: u64, level: u8) -> RunWriter {
        RunWriter {
            id,
            level,
            fences: Vec::new(),
            chunk: Vec::with_capacity(CHUNK_RECORDS * RECORD),
            batch: sled::Batch::default(),
            in_batch: 0,
        }
    }

    fn push(&mut self, log: &sled::Tree, (fp, index): ([u8; 8], u64)) -> Result<(), StoreError> {
        if self.chunk.is_empty() {
            self.fences.push(fp);
        }
        self.chunk.extend_from_slice(&fp);
        self.chunk.extend_from_slice(&index.to_be_bytes());
        if self.chunk.len() == CHUNK_RECORDS * RECORD {
            self.end_chunk(log)?;
        }
        Ok(())
    }

    fn end_chunk(&mut self, log: &sled::Tree) -> Result<(), StoreError> {
        let chunk = (self.fences.len() - 1) as u32;
        let value = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_RECORDS * RECORD));
        self.batch.insert(&chunk_key(self.id, chunk)[..], value);
        self.in_batch += 1;
        if self.in_batch == MERGE_BATCH_CHUNKS {
            log.apply_batch(std::mem::take(&mut self.batch))?;
            self.in_batch = 0;
        }
        Ok(())
    }

    /// Writes what is left; the run, or `None` if it has no records. Its manifest is
    /// not written: the caller switches it in.
    fn finish(mut self, log: &sled::Tree) -> Result<Option<Run>, StoreError> {
        if !self.chunk.is_empty() {
            self.end_chunk(log)?;
        }
        log.apply_batch(std::mem::take(&mut self.batch))?;
        Ok((!self.fences.is_empty()).then_some(Run {
            id: self.id,
            level: self.level,
            fences: self.fences,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new().path(dir.path()).open().expect("open");
        (dir, db.open_tree("log").expect("tree"))
    }

    #[test]
    fn every_record_is_found_through_memtable_runs_and_merges() {
        let (_dir, log) = tree();
        let index = RequestIndex::load(&log, 100).expect("load");
        let ids: Vec<String> = (0..2_000).map(|i| format!("req-{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            if index.add(&[(fingerprint(id), i as u64)]) {
                index.flush(&log, i as u64 + 1).expect("flush");
            }
        }
        // 20 flushes of 100: 16 merged into one level-2 run... 4 level-1 runs merge into
        // level 2 after 16 flushes; the last 4 flushes make one level-1 run.
        assert_eq!(index.shape(), (vec![2, 1], 0));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                index.candidates(&log, &fingerprint(id)).expect("read"),
                vec![i as u64]
            );
        }
        assert!(
            index
                .candidates(&log, &fingerprint("absent"))
                .expect("read")
                .is_empty()
        );
        // Reloaded from the manifests, the runs answer the same.
        let again = RequestIndex::load(&log, 100).expect("load");
        assert_eq!(again.shape(), (vec![2, 1], 0));
        assert_eq!(RequestIndex::indexed_to(&log).expect("meta"), 2_000);
        for (i, id) in ids.iter().enumerate().step_by(37) {
            assert_eq!(
                again.candidates(&log, &fingerprint(id)).expect("read"),
                vec![i as u64]
            );
        }
        // Only the live runs' keys remain.
        let chunks = log.scan_prefix(b"x").count();
        assert_eq!(
            chunks,
            1_600usize.div_ceil(CHUNK_RECORDS) + 400usize.div_ceil(CHUNK_RECORDS)
        );
        assert_eq!(log.scan_prefix(b"y").count(), 2);
    }

    #[test]
    fn equal_fingerprints_across_a_chunk_boundary_are_all_found() {
        let (_dir, log) = tree();
        let index = RequestIndex::load(&log, 1_000).expect("load");
        let fp = [7u8; 8];
        let mut records: Vec<([u8; 8], u64)> =
            (0..300u64).map(|i| ([(i % 7) as u8; 8], i)).collect();
        records.extend((0..300u64).map(|i| (fp, 1_000 + i)));
        index.add(&records);
        index.flush(&log, 600).expect("flush");
        let found = index.candidates(&log, &fp).expect("read");
        assert_eq!(found, (1_000..1_300).collect::<Vec<_>>());
    }

    #[test]
    fn chunks_without_a_manifest_are_removed_on_load() {
        let (_dir, log) = tree();
        let index = RequestIndex::load(&log, 300).expect("load");
        let ids: Vec<String> = (0..1_200).map(|i| format!("o-{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            if index.add(&[(fingerprint(id), i as u64)]) {
                index.flush(&log, i as u64 + 1).expect("flush");
            }
        }
        // Four flushes merged into run 4; runs 0-3 are gone, chunks and manifests.
        assert_eq!(index.shape(), (vec![1], 0));
        assert_eq!(log.scan_prefix(b"y").count(), 1);
        // What a crash would leave: chunks of a merged-away run and of an unfinished
        // merge's output, neither with a manifest.
        log.insert(chunk_key(2, 0), &[0u8; 16][..]).expect("orphan");
        log.insert(chunk_key(9, 3), &[0u8; 16][..]).expect("orphan");
        let again = RequestIndex::load(&log, 300).expect("load");
        assert_eq!(again.shape(), (vec![1], 0));
        let chunk_runs: Vec<u64> = log
            .scan_prefix(b"x")
            .map(|item| decode_u64(&item.expect("read").0[1..9]).expect("run id"))
            .collect();
        assert!(chunk_runs.iter().all(|&run| run == 4), "{chunk_runs:?}");
        assert_eq!(chunk_runs.len(), 1_200usize.div_ceil(CHUNK_RECORDS));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                again.candidates(&log, &fingerprint(id)).expect("read"),
                vec![i as u64]
            );
        }
    }

    #[test]
    fn damaged_runs_are_typed_errors() {
        let (_dir, log) = tree();
        let index = RequestIndex::load(&log, 10).expect("load");
        index.add(&[(fingerprint("a"), 0)]);
        index.flush(&log, 1).expect("flush");
        log.insert(chunk_key(0, 0), &[1u8; 15][..]).expect("damage");
        assert!(matches!(
            index.candidates(&log, &fingerprint("a")),
            Err(StoreError::Corrupt { .. })
        ));
        log.insert(manifest_key(0), &[0u8; 4][..]).expect("damage");
        assert!(matches!(
            RequestIndex::load(&log, 10),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
