//! Stop strings over a stream of text pieces. Text that could still turn out to be the start
//! of a stop string is held back, so a client never sees a stop string (or half of one) even
//! when it is split across tokens.

/// Finds the earliest stop string in streamed text.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

/// What one piece of text led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopScan {
    /// Text that is now safe to emit.
    pub emit: String,
    /// Whether a stop string was found (the text from it on is dropped).
    pub stopped: bool,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            pending: String::new(),
        }
    }

    /// Feeds the next piece of generated text.
    pub fn push(&mut self, piece: &str) -> StopScan {
        self.pending.push_str(piece);
        let earliest = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = earliest {
            let emit = self.pending[..at].to_string();
            self.pending.clear();
            return StopScan {
                emit,
                stopped: true,
            };
        }
        let keep = self.held_back_len();
        let cut = self.pending.len() - keep;
        let emit = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        StopScan {
            emit,
            stopped: false,
        }
    }

    /// Everything still held back (at the end of generation, when no stop can follow).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of a stop string,
    /// cut at a character boundary.
    fn held_back_len(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            let max = stop.len().saturating_sub(1).min(self.pending.len());
            for len in (best + 1..=max).rev() {
                let start = self.pending.len() - len;
                if self.pending.is_char_boundary(start) && stop.starts_with(&self.pending[start..])
                {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let scan = m.push(p);
            out.push_str(&scan.emit);
            if scan.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.flush());
        (out, false)
    }

    #[test]
    fn no_stops_passes_everything_through() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn stop_inside_one_piece_cuts_before_it() {
        assert_eq!(run(&["END"], &["abcENDdef"]), ("abc".into(), true));
    }

    #[test]
    fn stop_split_across_pieces_is_never_shown() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        let first = m.push("abcE");
        assert_eq!(
            first.emit, "abc",
            "the `E` could start `END` and is held back"
        );
        let second = m.push("N");
        assert_eq!(second.emit, "");
        let third = m.push("D!");
        assert_eq!(
            third,
            StopScan {
                emit: String::new(),
                stopped: true
            }
        );
    }

    #[test]
    fn false_starts_are_released() {
        assert_eq!(run(&["END"], &["E", "N", "x"]), ("ENx".into(), false));
    }

    #[test]
    fn earliest_of_several_stops_wins_and_multibyte_is_safe() {
        assert_eq!(run(&["zz", "é!"], &["aé", "!zz"]), ("a".into(), true));
        assert_eq!(run(&["ab"], &["ééé"]), ("ééé".into(), false));
    }
}
