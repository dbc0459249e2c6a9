//! Stop strings on streamed text.
//!
//! A stop string can span tokens ("<|end" + "|>") and must not reach the client, so the
//! matcher holds back the shortest tail of the text that could still be the start of a
//! stop string, and releases it as soon as it cannot. When a stop string completes, the
//! text before it is released and everything from it on is dropped.

/// What one piece of text did to the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopScan {
    /// No stop string yet: this text is final and may be sent.
    Emit(String),
    /// A stop string completed: send this text (what preceded it) and end the stream.
    Stopped(String),
}

/// Stop-string state for one sequence.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty: everything passes through at once).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Appends `text` and returns what may be sent now.
    pub fn push(&mut self, text: &str) -> StopScan {
        self.held.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let before = self.held[..at].to_owned();
            self.held.clear();
            return StopScan::Stopped(before);
        }
        let keep = self.partial_match_len();
        let release = self.held.len() - keep;
        let out = self.held[..release].to_owned();
        self.held.drain(..release);
        StopScan::Emit(out)
    }

    /// Ends the stream without a stop string: the held-back tail is final after all.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length of the longest tail of `held` that is a proper prefix of some stop string.
    fn partial_match_len(&self) -> usize {
        let held = self.held.as_str();
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut start = held.len().saturating_sub(longest.saturating_sub(1));
        while start < held.len() {
            if held.is_char_boundary(start) {
                let tail = &held[start..];
                if self.stops.iter().any(|s| s.starts_with(tail)) {
                    return held.len() - start;
                }
            }
            start += 1;
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops);
        let mut out = String::new();
        for piece in pieces {
            match m.push(piece) {
                StopScan::Emit(t) => out.push_str(&t),
                StopScan::Stopped(t) => {
                    out.push_str(&t);
                    return (out, true);
                }
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn test_stop_spanning_tokens_is_trimmed() {
        assert_eq!(
            run(&["<|end|>"], &["Hello", " <|e", "nd", "|> more"]),
            ("Hello ".into(), true)
        );
    }

    #[test]
    fn test_stop_partial_prefix_released_when_it_fails() {
        assert_eq!(
            run(&["STOP"], &["a ST", "ART b"]),
            ("a START b".into(), false)
        );
        // Held text is released at the end of the stream too.
        assert_eq!(run(&["STOP"], &["a ST"]), ("a ST".into(), false));
    }

    #[test]
    fn test_stop_earliest_of_several_wins() {
        assert_eq!(run(&["yz", "x"], &["abxyz"]), ("ab".into(), true));
        assert_eq!(run(&["\n\n"], &["line\n", "\nnext"]), ("line".into(), true));
    }

    #[test]
    fn test_stop_holds_only_while_a_match_is_possible() {
        let mut m = StopMatcher::new(&["abc".to_string()]);
        assert_eq!(m.push("xxab"), StopScan::Emit("xx".into()));
        assert_eq!(m.push("d"), StopScan::Emit("abd".into()));
        let mut none = StopMatcher::new(&[]);
        assert_eq!(none.push("é中"), StopScan::Emit("é中".into()));
    }

    #[test]
    fn test_stop_multibyte_boundaries() {
        assert_eq!(run(&["中文"], &["é", "中", "文字"]), ("é".into(), true));
        assert_eq!(run(&["中文"], &["é中", "x"]), ("é中x".into(), false));
    }
}
