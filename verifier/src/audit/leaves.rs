//! Leaf hashes by position, on disk: erasure events name an earlier entry by index and
//! leaf hash, and checking that must not mean holding every leaf in memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;

use sworn_ledger::merkle::Hash;

/// An append-only file of 32-byte leaf hashes (anonymous, deleted on drop).
#[derive(Debug)]
pub struct LeafFile {
    writer: BufWriter<File>,
    len: u64,
}

impl LeafFile {
    /// An empty leaf file.
    pub fn new() -> std::io::Result<Self> {
        Ok(LeafFile {
            writer: BufWriter::with_capacity(64 * 1024, tempfile::tempfile()?),
            len: 0,
        })
    }

    /// Appends the leaf at the next position.
    pub fn push(&mut self, leaf: &Hash) -> std::io::Result<()> {
        self.writer.write_all(&leaf.0)?;
        self.len += 1;
        Ok(())
    }

    /// The leaf at `position`, if that many were pushed.
    pub fn get(&mut self, position: u64) -> std::io::Result<Option<Hash>> {
        if position >= self.len {
            return Ok(None);
        }
        self.writer.flush()?;
        let mut bytes = [0u8; 32];
        self.writer
            .get_ref()
            .read_exact_at(&mut bytes, position * 32)?;
        Ok(Some(Hash(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sworn_ledger::merkle::hash_leaf;

    #[test]
    fn leaves_read_back_by_position() {
        let mut f = LeafFile::new().unwrap();
        for i in 0u8..100 {
            f.push(&hash_leaf(&[i])).unwrap();
        }
        assert_eq!(f.get(37).unwrap(), Some(hash_leaf(&[37])));
        assert_eq!(f.get(100).unwrap(), None);
    }
}
