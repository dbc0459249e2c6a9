//! Duplicate request ids in bounded memory: an external sort of `(SHA-256(id), index)`.
//!
//! Records gather in a buffer of [`RUN_RECORDS`]; a full buffer is sorted and spilled to
//! an anonymous temporary file. At the end the runs are merged, and equal neighbours are
//! duplicates. Memory is one buffer plus one record per run, whatever the log's size;
//! disk is 40 bytes per receipt. The full 32-byte digest is kept, so a reported
//! duplicate is a real one (no truncated-hash collisions).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

/// Records held in memory before a run is spilled: 16 Ki × 40 bytes = 640 KiB.
pub const RUN_RECORDS: usize = 16 * 1024;
/// Most runs kept open; past it they are merged into one (bounds file handles: a log of
/// 10^9 receipts makes ~61k runs, merged every 128).
pub const MAX_OPEN_RUNS: usize = 128;
/// Most duplicates reported; more are counted.
pub const MAX_REPORTED_DUPLICATES: usize = 10_000;

const RECORD_BYTES: usize = 40;

type Record = ([u8; 32], u64);

/// A repeated request id: the index where it first appeared and the repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duplicate {
    /// Earlier index with this request id.
    pub first: u64,
    /// Later index with the same request id.
    pub again: u64,
}

/// Collects request ids and finds the repeated ones.
#[derive(Debug)]
pub struct DuplicateFinder {
    buffer: Vec<Record>,
    runs: Vec<File>,
    run_records: usize,
}

impl Default for DuplicateFinder {
    fn default() -> Self {
        Self::with_run_records(RUN_RECORDS)
    }
}

impl DuplicateFinder {
    /// A finder spilling every `run_records` records (tests use small runs).
    pub fn with_run_records(run_records: usize) -> Self {
        DuplicateFinder {
            buffer: Vec::new(),
            runs: Vec::new(),
            run_records: run_records.max(1),
        }
    }

    /// Records that `request_id` appeared at `index`.
    pub fn push(&mut self, request_id: &str, index: u64) -> std::io::Result<()> {
        self.buffer
            .push((Sha256::digest(request_id.as_bytes()).into(), index));
        if self.buffer.len() >= self.run_records {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> std::io::Result<()> {
        self.buffer.sort_unstable();
        let mut file = tempfile::tempfile()?;
        {
            let mut out = BufWriter::new(&mut file);
            for (digest, index) in self.buffer.drain(..) {
                out.write_all(&digest)?;
                out.write_all(&index.to_be_bytes())?;
            }
            out.flush()?;
        }
        file.seek(SeekFrom::Start(0))?;
        self.runs.push(file);
        if self.runs.len() >= MAX_OPEN_RUNS {
            let merged = merge_into_one(std::mem::take(&mut self.runs))?;
            self.runs.push(merged);
        }
        Ok(())
    }

    /// Merges everything and returns the duplicates (up to the cap) and their count.
    pub fn finish(mut self) -> std::io::Result<(Vec<Duplicate>, u64)> {
        if !self.buffer.is_empty() {
            self.spill()?;
        }
        let mut readers: Vec<BufReader<File>> = self.runs.into_iter().map(BufReader::new).collect();
        let mut heap = BinaryHeap::new();
        for (run, reader) in readers.iter_mut().enumerate() {
            if let Some(record) = read_record(reader)? {
                heap.push(Reverse((record, run)));
            }
        }
        let mut duplicates = Vec::new();
        let mut count = 0u64;
        let mut previous: Option<Record> = None;
        while let Some(Reverse((record, run))) = heap.pop() {
            match previous {
                Some((digest, first)) if digest == record.0 => {
                    count += 1;
                    if duplicates.len() < MAX_REPORTED_DUPLICATES {
                        duplicates.push(Duplicate {
                            first,
                            again: record.1,
                        });
                    }
                }
                _ => previous = Some(record),
            }
            if let Some(next) = read_record(&mut readers[run])? {
                heap.push(Reverse((next, run)));
            }
        }
        Ok((duplicates, count))
    }
}

/// Merges sorted runs into one sorted run (duplicates kept for the final pass).
fn merge_into_one(runs: Vec<File>) -> std::io::Result<File> {
    let mut readers: Vec<BufReader<File>> = runs.into_iter().map(BufReader::new).collect();
    let mut heap = BinaryHeap::new();
    for (run, reader) in readers.iter_mut().enumerate() {
        if let Some(record) = read_record(reader)? {
            heap.push(Reverse((record, run)));
        }
    }
    let mut file = tempfile::tempfile()?;
    {
        let mut out = BufWriter::new(&mut file);
        while let Some(Reverse(((digest, index), run))) = heap.pop() {
            out.write_all(&digest)?;
            out.write_all(&index.to_be_bytes())?;
            if let Some(next) = read_record(&mut readers[run])? {
                heap.push(Reverse((next, run)));
            }
        }
        out.flush()?;
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

fn read_record(reader: &mut BufReader<File>) -> std::io::Result<Option<Record>> {
    let mut bytes = [0u8; RECORD_BYTES];
    match reader.read_exact(&mut bytes) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&bytes[..32]);
    let mut index = [0u8; 8];
    index.copy_from_slice(&bytes[32..]);
    Ok(Some((digest, u64::from_be_bytes(index))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_across_runs_are_found_with_both_indices() {
        let mut f = DuplicateFinder::with_run_records(3);
        for i in 0..10u64 {
            f.push(&format!("req-{i}"), i).unwrap();
        }
        f.push("req-2", 10).unwrap();
        f.push("req-7", 11).unwrap();
        let (dups, count) = f.finish().unwrap();
        assert_eq!(count, 2);
        let mut pairs: Vec<_> = dups.iter().map(|d| (d.first, d.again)).collect();
        pairs.sort_unstable();
        assert_eq!(pairs, vec![(2, 10), (7, 11)]);
    }

    #[test]
    fn merged_runs_still_find_duplicates() {
        let mut f = DuplicateFinder::with_run_records(1);
        for i in 0..(3 * MAX_OPEN_RUNS as u64) {
            f.push(&format!("id-{}", i % 200), i).unwrap();
        }
        assert!(f.runs.len() < MAX_OPEN_RUNS);
        let (_, count) = f.finish().unwrap();
        assert_eq!(count, 3 * MAX_OPEN_RUNS as u64 - 200);
    }

    #[test]
    fn no_duplicates_in_distinct_ids() {
        let mut f = DuplicateFinder::with_run_records(2);
        for i in 0..7u64 {
            f.push(&i.to_string(), i).unwrap();
        }
        assert_eq!(f.finish().unwrap().1, 0);
    }
}
