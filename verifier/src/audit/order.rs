//! Index order: gaps, duplicates and reorders among the entries of an export.
//!
//! The tracker remembers the next expected index and the open gaps (indices skipped but
//! perhaps still to come). An index that fills an open gap later is *reordered*; one
//! that was already seen is a *duplicate*; gaps still open at the end are *missing*.
//! Memory grows only with the number of anomalies, capped by [`MAX_OPEN_GAPS`].

use std::collections::BTreeMap;

/// Most open gaps tracked; past it, new gaps are reported as missing at once (a log with
/// this many holes is already thoroughly failed).
pub const MAX_OPEN_GAPS: usize = 100_000;

/// What an entry's index says about order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    /// The expected index.
    InOrder,
    /// Skips ahead: indices `[from, to)` have not been seen (yet).
    Gap {
        /// First skipped index.
        from: u64,
        /// One past the last skipped index.
        to: u64,
    },
    /// Fills a gap left earlier: the entry is out of order.
    Reordered {
        /// The largest index seen before it.
        after: u64,
    },
    /// Was seen before.
    Duplicate,
}

/// Tracks the order of entry indices in a stream.
#[derive(Debug, Default)]
pub struct OrderTracker {
    next: u64,
    /// Open gaps: start → end (exclusive).
    gaps: BTreeMap<u64, u64>,
    /// Gaps that could not be tracked (over the cap), reported at once.
    untracked: u64,
}

impl OrderTracker {
    /// A tracker expecting index 0 first.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `index` and classifies it.
    pub fn see(&mut self, index: u64) -> OrderEvent {
        if index == self.next {
            self.next = index.saturating_add(1);
            return OrderEvent::InOrder;
        }
        if index > self.next {
            let from = self.next;
            if self.gaps.len() < MAX_OPEN_GAPS {
                self.gaps.insert(from, index);
            } else {
                self.untracked += 1;
            }
            self.next = index.saturating_add(1);
            return OrderEvent::Gap { from, to: index };
        }
        // index < next: inside an open gap, or seen before.
        let Some((&start, &end)) = self.gaps.range(..=index).next_back() else {
            return OrderEvent::Duplicate;
        };
        if index >= end {
            return OrderEvent::Duplicate;
        }
        self.gaps.remove(&start);
        if start < index {
            self.gaps.insert(start, index);
        }
        if index + 1 < end {
            self.gaps.insert(index + 1, end);
        }
        OrderEvent::Reordered {
            after: self.next - 1,
        }
    }

    /// Gaps still open: indices never seen, as `[from, to)` ranges.
    pub fn missing(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.gaps.iter().map(|(&a, &b)| (a, b))
    }

    /// The next index expected (one past the largest seen).
    pub fn next(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_is_a_gap_then_a_reorder_and_leaves_nothing_missing() {
        let mut t = OrderTracker::new();
        assert_eq!(t.see(0), OrderEvent::InOrder);
        assert_eq!(t.see(2), OrderEvent::Gap { from: 1, to: 2 });
        assert_eq!(t.see(1), OrderEvent::Reordered { after: 2 });
        assert_eq!(t.see(3), OrderEvent::InOrder);
        assert_eq!(t.missing().count(), 0);
    }

    #[test]
    fn drops_stay_missing_and_repeats_are_duplicates() {
        let mut t = OrderTracker::new();
        for i in [0, 1, 4, 5, 5, 0] {
            t.see(i);
        }
        assert_eq!(t.missing().collect::<Vec<_>>(), vec![(2, 4)]);
        assert_eq!(t.see(1), OrderEvent::Duplicate);
        assert_eq!(t.see(3), OrderEvent::Reordered { after: 5 });
        assert_eq!(t.missing().collect::<Vec<_>>(), vec![(2, 3)]);
    }
}
