//! Pre-tokenisation: cutting text into the pieces BPE runs on, so merges never cross
//! a word, number or whitespace boundary the vocabulary was trained with.
//!
//! The split patterns are those of Hugging Face `tokenizers` (which uses Oniguruma) and
//! llama.cpp. They end in `\s+(?!\S)|\s+` — "a run of whitespace, leaving its last
//! character to the word that follows" — a lookahead the linear-time `regex` crate does
//! not have. [`SplitRegex`] replaces that tail with a captured `(\s+)` and gives the last
//! character back by hand when the run is followed by something else, which is exactly
//! what the lookahead does; any other pattern with lookaround falls back to `fancy-regex`.

use regex::Regex;

use super::error::TokenizerError;

/// GPT-2's pattern, used by `tokenizers`' `ByteLevel` pre-tokenizer (`use_regex: true`).
pub(crate) const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3's pattern (also Falcon 3, DBRX, smaug…): numbers in groups of up to three.
pub(crate) const LLAMA3_PATTERN: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

/// Qwen 2's pattern: like Llama 3's, but every digit on its own.
pub(crate) const QWEN2_PATTERN: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

/// Mistral's Tekken pattern.
pub(crate) const TEKKEN_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*",
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

/// GPT-4o's pattern (also Llama 4).
pub(crate) const GPT4O_PATTERN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

/// The lookahead tail that [`SplitRegex`] emulates.
const WHITESPACE_TAIL: &str = r"\s+(?!\S)|\s+";

/// A compiled split pattern.
#[derive(Debug)]
pub(crate) enum SplitRegex {
    /// A `regex` pattern; `trailing_ws_group` is the capture group standing in for
    /// [`WHITESPACE_TAIL`], when the pattern had it.
    Linear {
        re: Regex,
        trailing_ws_group: Option<usize>,
    },
    /// Lookaround the emulation does not cover.
    Backtracking(fancy_regex::Regex),
}

impl SplitRegex {
    pub(crate) fn new(pattern: &str) -> Result<SplitRegex, TokenizerError> {
        if let Some(head) = pattern.strip_suffix(WHITESPACE_TAIL) {
            let rewritten = format!(r"{head}(\s+)");
            if let Ok(re) = Regex::new(&rewritten) {
                let group = re.captures_len() - 1;
                return Ok(SplitRegex::Linear {
                    re,
                    trailing_ws_group: Some(group),
                });
            }
        }
        if let Ok(re) = Regex::new(pattern) {
            return Ok(SplitRegex::Linear {
                re,
                trailing_ws_group: None,
            });
        }
        fancy_regex::Regex::new(pattern)
            .map(SplitRegex::Backtracking)
            .map_err(|e| TokenizerError::BadPattern {
                pattern: pattern.into(),
                reason: e.to_string(),
            })
    }

    /// The spans of `text` the pattern matches, in order (non-empty, non-overlapping).
    fn matches(&self, text: &str, out: &mut Vec<(usize, usize)>) -> Result<(), TokenizerError> {
        match self {
            SplitRegex::Linear {
                re,
                trailing_ws_group,
            } => {
                let mut locs = re.capture_locations();
                let mut at = 0;
                while at < text.len() {
                    let Some(m) = re.captures_read_at(&mut locs, text, at) else {
                        break;
                    };
                    let (start, mut end) = (m.start(), m.end());
                    if start == end {
                        at = next_boundary(text, end);
                        continue;
                    }
                    let ws_tail = trailing_ws_group.is_some_and(|g| locs.get(g).is_some());
                    if ws_tail && end < text.len() {
                        // `\s+(?!\S)`: leave the last whitespace character to what follows,
                        // unless the run is a single character (then plain `\s+` matched).
                        let last = text[start..end]
                            .char_indices()
                            .last()
                            .map_or(start, |(i, _)| start + i);
                        if last > start {
                            end = last;
                        }
                    }
                    out.push((start, end));
                    at = end;
                }
                Ok(())
            }
            SplitRegex::Backtracking(re) => {
                for m in re.find_iter(text) {
                    let m = m.map_err(|e| TokenizerError::PatternFailed {
                        reason: e.to_string(),
                    })?;
                    if !m.as_str().is_empty() {
                        out.push((m.start(), m.end()));
                    }
                }
                Ok(())
            }
        }
    }
}

fn next_boundary(text: &str, at: usize) -> usize {
    text[at..]
        .chars()
        .next()
        .map_or(text.len(), |c| at + c.len_utf8())
}

/// One splitting step; every step keeps all the text ("isolated" behaviour): matches and
/// the gaps between them both become pieces.
#[derive(Debug)]
pub(crate) enum SplitStep {
    /// Split on a pattern.
    Pattern(SplitRegex),
    /// `tokenizers`' `Digits`: numeric characters apart from the rest, each on its own when
    /// `individual`, else in runs.
    Digits { individual: bool },
}

/// A sequence of splitting steps, each applied to every piece the previous one produced.
#[derive(Debug, Default)]
pub(crate) struct PreTokenizer {
    steps: Vec<SplitStep>,
}

impl PreTokenizer {
    pub(crate) fn new(steps: Vec<SplitStep>) -> PreTokenizer {
        PreTokenizer { steps }
    }

    /// A single pattern.
    pub(crate) fn pattern(pattern: &str) -> Result<PreTokenizer, TokenizerError> {
        Ok(PreTokenizer {
            steps: vec![SplitStep::Pattern(SplitRegex::new(pattern)?)],
        })
    }

    /// Cuts `text` into pieces that together are `text`.
    pub(crate) fn split<'a>(&self, text: &'a str) -> Result<Vec<&'a str>, TokenizerError> {
        let mut pieces = vec![text];
        let mut spans = Vec::new();
        for step in &self.steps {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            for piece in pieces {
                spans.clear();
                match step {
                    SplitStep::Pattern(re) => re.matches(piece, &mut spans)?,
                    SplitStep::Digits { individual } => digit_spans(piece, *individual, &mut spans),
                }
                isolate(piece, &spans, &mut next);
            }
            pieces = next;
        }
        Ok(pieces)
    }
}

/// Pushes the matched spans of `piece` and the gaps between them, in order.
fn isolate<'a>(piece: &'a str, spans: &[(usize, usize)], out: &mut Vec<&'a str>) {
    let mut last = 0;
    for &(s, e) in spans {
        if s > last {
            out.push(&piece[last..s]);
        }
        out.push(&piece[s..e]);
        last = e;
    }
    if last < piece.len() {
        out.push(&piece[last..]);
    }
}

/// Pushes the spans of numeric characters in `piece` onto the empty `out`: each on its own
/// when `individual`, else in runs.
fn digit_spans(piece: &str, individual: bool, out: &mut Vec<(usize, usize)>) {
    for (i, c) in piece.char_indices().filter(|(_, c)| c.is_numeric()) {
        let end = i + c.len_utf8();
        match out.last_mut() {
            Some((_, e)) if !individual && *e == i => *e = end,
            _ => out.push((i, end)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pattern: &str, text: &str) -> Vec<String> {
        PreTokenizer::pattern(pattern)
            .unwrap()
            .split(text)
            .unwrap()
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn whitespace_lookahead_matches_the_backtracking_engine() {
        let fancy = |text: &str| -> Vec<String> {
            let re = fancy_regex::Regex::new(GPT2_PATTERN).unwrap();
            re.find_iter(text)
                .map(|m| m.unwrap().as_str().to_string())
                .collect()
        };
        for text in [
            "a   b",
            "a \t b",
            "  x",
            "x  ",
            "\t\tx",
            " ",
            "a\n\n b",
            "it's  12\u{3000}\u{3000}z",
            "",
        ] {
            assert_eq!(split(GPT2_PATTERN, text), fancy(text), "{text:?}");
        }
        assert_eq!(split(GPT2_PATTERN, "a   b"), ["a", "  ", " b"]);
    }

    #[test]
    fn llama3_groups_digits_by_three_and_keeps_newlines_together() {
        assert_eq!(
            split(LLAMA3_PATTERN, "1234567 x\n\n  y"),
            ["123", "456", "7", " x", "\n\n", " ", " y"]
        );
    }

    #[test]
    fn digits_step_isolates_each_digit() {
        let p = PreTokenizer::new(vec![SplitStep::Digits { individual: true }]);
        assert_eq!(p.split("ab12 3").unwrap(), ["ab", "1", "2", " ", "3"]);
        let p = PreTokenizer::new(vec![SplitStep::Digits { individual: false }]);
        assert_eq!(p.split("ab12 3").unwrap(), ["ab", "12", " ", "3"]);
    }
}
