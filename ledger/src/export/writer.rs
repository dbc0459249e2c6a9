//! Writing the durable log as an export, one entry at a time.

use std::io::Write;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::line::{EXPORT_FORMAT, EXPORT_VERSION, ExportError, ExportLine};
use crate::store::{Ledger, StoreError};

/// Writes the durable log as of now to `out`, returning the count of entries and
/// checkpoints written. Reads one entry at a time: memory does not grow with the log.
pub fn write_export<W: Write>(ledger: &Ledger, mut out: W) -> Result<(u64, u64), ExportError> {
    let size = ledger.size();
    write_line(
        &mut out,
        &ExportLine::Header {
            format: EXPORT_FORMAT.to_string(),
            version: EXPORT_VERSION,
            origin: ledger.origin().to_string(),
            public_key: ledger.public_key().to_vkey(),
            size,
        },
    )?;
    let mut checkpoints = ledger.checkpoints_between(1, size).peekable();
    let mut written_checkpoints = 0u64;
    for entry in ledger.entries(0, size) {
        let entry = entry?;
        let body = String::from_utf8(entry.body)
            .map_err(|_| StoreError::corrupt(format!("entry {} body is not UTF-8", entry.index)))?;
        write_line(
            &mut out,
            &ExportLine::Entry {
                index: entry.index,
                body,
                signature: BASE64.encode(entry.signature.to_bytes()),
            },
        )?;
        while let Some(Ok(cp)) = checkpoints.peek() {
            if cp.checkpoint.size != entry.index + 1 {
                break;
            }
            write_line(
                &mut out,
                &ExportLine::Checkpoint {
                    size: cp.checkpoint.size,
                    note: cp.note.clone(),
                },
            )?;
            written_checkpoints += 1;
            checkpoints.next();
        }
        if let Some(Err(_)) = checkpoints.peek() {
            if let Some(Err(e)) = checkpoints.next() {
                return Err(e.into());
            }
        }
    }
    write_line(
        &mut out,
        &ExportLine::End {
            size,
            checkpoints: written_checkpoints,
        },
    )?;
    out.flush()?;
    Ok((size, written_checkpoints))
}

fn write_line<W: Write>(out: &mut W, line: &ExportLine) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}
