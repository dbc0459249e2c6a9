//! Reading a small file whole under a size cap: key files, configuration, deployment
//! records, auditor state, the high-water record. Their loaders (here, in the verifier
//! and in the service) all read through this module, so each gets the same checks in the
//! same order.
//!
//! The file is opened first and everything is checked on the open handle: its size comes
//! from `fstat` of that handle, not from a `stat` of the path, which another process could
//! swap between the check and the read. The read then takes at most `cap + 1` bytes, so a
//! file that grows after the check (or a device or pipe, whose size `fstat` does not know)
//! is refused when more than `cap` bytes arrive rather than read without bound.
//! Loaders that also check permissions (key files) do so on the same handle through
//! [`OpenedFile::metadata`] before reading.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Why a capped read failed. Each variant names the file; [`CappedReadError::reason`]
/// gives the same message without the path, for errors that name it already.
#[derive(Debug, thiserror::Error)]
pub enum CappedReadError {
    /// The file could not be opened (missing, not permitted, …).
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The open file could not be inspected (`fstat`) or read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is larger than the cap.
    #[error("{}: {size} bytes, over the cap of {cap}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size when opened.
        size: u64,
        /// The cap.
        cap: u64,
    },
    /// More than the cap arrived while the file was read: it grew after it was opened, or
    /// it is a device or pipe with no size of its own.
    #[error("{}: more than {cap} bytes arrived while reading it, over the cap", path.display())]
    GrewPastCap {
        /// The file.
        path: PathBuf,
        /// The cap.
        cap: u64,
    },
}

impl CappedReadError {
    /// The message without the path: `cannot open: …`, `N bytes, over the cap of M`, ….
    pub fn reason(&self) -> String {
        match self {
            CappedReadError::Open { source, .. } => format!("cannot open: {source}"),
            CappedReadError::Read { source, .. } => format!("cannot read: {source}"),
            CappedReadError::TooLarge { size, cap, .. } => {
                format!("{size} bytes, over the cap of {cap}")
            }
            CappedReadError::GrewPastCap { cap, .. } => {
                format!("more than {cap} bytes arrived while reading it, over the cap")
            }
        }
    }

    /// Whether the file does not exist (opening it found nothing at the path).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CappedReadError::Open { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// As an [`io::Error`], for loaders whose errors carry one: the I/O error itself for
    /// [`Open`](Self::Open) and [`Read`](Self::Read), `InvalidData` with
    /// [`reason`](Self::reason) otherwise.
    pub fn into_io_error(self) -> io::Error {
        match self {
            CappedReadError::Open { source, .. } | CappedReadError::Read { source, .. } => source,
            other => io::Error::new(io::ErrorKind::InvalidData, other.reason()),
        }
    }
}

/// A file opened for one capped read, with the metadata of the open handle.
#[derive(Debug)]
pub struct OpenedFile {
    path: PathBuf,
    file: File,
    metadata: Metadata,
}

impl OpenedFile {
    /// Opens `path` and takes the metadata of the open handle (`fstat`).
    pub fn open(path: &Path) -> Result<OpenedFile, CappedReadError> {
        let file = File::open(path).map_err(|source| CappedReadError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let metadata = file.metadata().map_err(|source| CappedReadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(OpenedFile {
            path: path.to_path_buf(),
            file,
            metadata,
        })
    }

    /// The open handle's metadata (size, permissions, file type) as of opening.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Reads the whole file, refusing it if it was over `cap` bytes when opened or if more
    /// than `cap` bytes arrive.
    pub fn read_capped(self, cap: u64) -> Result<Vec<u8>, CappedReadError> {
        let OpenedFile {
            path,
            file,
            metadata,
        } = self;
        if metadata.len() > cap {
            return Err(CappedReadError::TooLarge {
                path,
                size: metadata.len(),
                cap,
            });
        }
        // Sized from fstat (at most `cap`), not from what the file may claim later.
        let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
        if let Err(source) = file.take(cap.saturating_add(1)).read_to_end(&mut bytes) {
            return Err(CappedReadError::Read { path, source });
        }
        if bytes.len() as u64 > cap {
            return Err(CappedReadError::GrewPastCap { path, cap });
        }
        Ok(bytes)
    }
}

/// Reads the file at `path` whole, refusing it past `cap` bytes (see the module
/// documentation for the order of the checks).
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, CappedReadError> {
    OpenedFile::open(path)?.read_capped(cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_a_file_at_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").expect("write");
        assert_eq!(read_capped(&path, 5).expect("read"), b"12345");
        assert_eq!(read_capped(&path, 6).expect("read"), b"12345");
    }

    #[test]
    fn a_file_over_the_cap_is_refused_with_its_size_and_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"123456").expect("write");
        let err = read_capped(&path, 5).expect_err("over the cap");
        assert!(
            matches!(
                err,
                CappedReadError::TooLarge {
                    size: 6,
                    cap: 5,
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("6 bytes, over the cap of 5"), "{message}");
    }

    #[test]
    fn a_file_that_grows_past_the_cap_after_opening_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"1234").expect("write");
        let opened = OpenedFile::open(&path).expect("open");
        assert_eq!(opened.metadata().len(), 4);
        // Another writer appends after the size was checked on the open handle.
        let mut appender = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open for append");
        appender.write_all(b"5678").expect("append");
        let err = opened.read_capped(5).expect_err("grew past the cap");
        assert!(
            matches!(err, CappedReadError::GrewPastCap { cap: 5, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_device_without_a_size_is_read_only_up_to_the_cap() {
        // /dev/zero has size 0 and never ends: only the `take(cap + 1)` bound stops it.
        let err = read_capped(Path::new("/dev/zero"), 1024).expect_err("endless");
        assert!(
            matches!(err, CappedReadError::GrewPastCap { cap: 1024, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_missing_file_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing");
        let err = read_capped(&path, 5).expect_err("missing");
        assert!(err.is_not_found(), "{err:?}");
        assert!(
            err.reason().starts_with("cannot open: "),
            "{}",
            err.reason()
        );
        assert_eq!(err.into_io_error().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_directory_is_refused_when_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = read_capped(dir.path(), 1 << 20).expect_err("a directory");
        assert!(matches!(err, CappedReadError::Read { .. }), "{err:?}");
    }
}
