//! Streaming reader of export lines, with a cap on line length so a hostile file cannot
//! make it buffer without bound.

use std::io::BufRead;

use serde::Deserialize;

use super::line::{ExportError, ExportLine, MAX_EXPORT_LINE_BYTES};

/// The fields of an entry line (`ExportLine::Entry` with its tag), for the fast path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine {
    #[serde(rename = "type")]
    kind: EntryTag,
    index: u64,
    body: String,
    signature: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum EntryTag {
    Entry,
}

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
        // Every line is a JSON object. serde's derived readers would also take a struct or
        // a tagged enum written as an array (`["entry",2,"…","…"]`), a form the format
        // does not have; refuse it before either reader sees the line.
        if self.buf.first() != Some(&b'{') {
            return Err(ExportError::BadLine {
                line: self.line,
                reason: "an export line is a JSON object starting with `{`".into(),
            });
        }
        // Almost every line is an entry: parse those straight into their fields, which is
        // faster than the tagged enum (serde buffers a tagged enum's members before it can
        // pick the variant). Anything else, or an entry line with an error, goes through the
        // enum, so what is accepted and every error message stay the enum's.
        if let Ok(EntryLine {
            kind: EntryTag::Entry,
            index,
            body,
            signature,
        }) = serde_json::from_slice(&self.buf)
        {
            return Ok(Some(ExportLine::Entry {
                index,
                body,
                signature,
            }));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads every line of `text` the way an audit does, keeping results and errors.
    fn read(text: &str) -> Vec<Result<ExportLine, String>> {
        let mut reader = ExportReader::new(text.as_bytes());
        let mut out = Vec::new();
        loop {
            match reader.next_line() {
                Ok(Some(line)) => out.push(Ok(line)),
                Ok(None) => return out,
                Err(e) => out.push(Err(e.to_string())),
            }
        }
    }

    #[test]
    fn entry_lines_read_the_same_through_either_path() {
        let entry = ExportLine::Entry {
            index: 7,
            body: "{\"a\":\"b\\\"c\"}".into(),
            signature: "c2ln".into(),
        };
        let text = concat!(
            r#"{"type":"entry","index":7,"body":"{\"a\":\"b\\\"c\"}","signature":"c2ln"}"#,
            "\n",
            r#"{"signature":"c2ln","body":"{\"a\":\"b\\\"c\"}","index":7,"type":"entry"}"#,
            "\n",
            r#"{"type":"end","size":1,"checkpoints":0}"#,
            "\n",
        );
        let lines = read(text);
        assert_eq!(lines[0], Ok(entry.clone()));
        assert_eq!(lines[1], Ok(entry));
        assert_eq!(
            lines[2],
            Ok(ExportLine::End {
                size: 1,
                checkpoints: 0
            })
        );
    }

    /// serde reads `["entry",7,"…","…"]` as an entry; the export format has no array lines.
    #[test]
    fn lines_written_as_arrays_are_refused() {
        let text = concat!(
            r#"["entry",7,"{\"a\":1}","c2ln"]"#,
            "\n",
            r#"["end",1,0]"#,
            "\n",
            r#" {"type":"end","size":1,"checkpoints":0}"#,
            "\n",
        );
        for (i, line) in read(text).iter().enumerate() {
            assert!(line.is_err(), "line {}: {line:?}", i + 1);
        }
    }

    #[test]
    fn bad_entry_lines_get_the_tagged_enums_errors() {
        let bad = [
            r#"{"type":"entry","index":7,"body":"{}","signature":"c2ln","extra":1}"#,
            r#"{"type":"entry","index":7,"index":8,"body":"{}","signature":"c2ln"}"#,
            r#"{"type":"entry","index":-1,"body":"{}","signature":"c2ln"}"#,
            r#"{"type":"entry","body":"{}","signature":"c2ln"}"#,
            r#"{"type":"entries","index":7,"body":"{}","signature":"c2ln"}"#,
        ];
        for line in bad {
            let via_enum = serde_json::from_str::<ExportLine>(line)
                .expect_err(line)
                .to_string();
            let lines = read(&format!("{line}\n"));
            assert_eq!(lines.len(), 1);
            let error = lines[0].as_ref().expect_err(line);
            assert!(error.contains(&via_enum), "{line}: {error} vs {via_enum}");
        }
    }
}
