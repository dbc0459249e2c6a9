//! Streaming reader of export lines, with a cap on line length so a hostile file cannot
//! make it buffer without bound.

use std::io::BufRead;

use super::{ExportError, ExportLine};

/// Longest line accepted: a canonical body is at most 64 KiB, at most doubled by JSON
/// string escaping, plus the line's own members.
pub const MAX_EXPORT_LINE_BYTES: usize = 160 * 1024;

/// Reads an export one line at a time.
#[derive(Debug)]
pub struct ExportReader<R> {
    input: R,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> ExportReader<R> {
    /// A reader over `input`.
    pub fn new(input: R) -> Self {
        ExportReader {
            input,
            line: 0,
            buf: Vec::new(),
        }
    }

    /// Number of the line last returned (1-based).
    pub fn line_number(&self) -> u64 {
        self.line
    }

    /// The next line, or `None` at end of input.
    pub fn next_line(&mut self) -> Result<Option<ExportLine>, ExportError> {
        self.buf.clear();
        self.line += 1;
        loop {
            let available = self.input.fill_buf()?;
            if available.is_empty() {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(ExportError::BadLine {
                    line: self.line,
                    reason: "last line has no newline".into(),
                });
            }
            let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            if self.buf.len() + chunk.len() > MAX_EXPORT_LINE_BYTES {
                return Err(ExportError::LineTooLong {
                    line: self.line,
                    max: MAX_EXPORT_LINE_BYTES,
                });
            }
            self.buf.extend_from_slice(chunk);
            let consumed = found.unwrap_or(chunk.len());
            self.input.consume(consumed);
            if found.is_some() {
                break;
            }
        }
        serde_json::from_slice(&self.buf)
            .map(Some)
            .map_err(|e| ExportError::BadLine {
                line: self.line,
                reason: e.to_string(),
            })
    }
}

impl<R: BufRead> Iterator for ExportReader<R> {
    type Item = Result<ExportLine, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_line().transpose()
    }
}
