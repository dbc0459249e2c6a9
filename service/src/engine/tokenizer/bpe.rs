//! The BPE merge loop, shared by byte-level and SentencePiece-style vocabularies.
//!
//! A word starts as a sequence of token ids (one per byte or character); the adjacent pair
//! with the best (lowest) rank is merged, ties going to the leftmost pair, until no pair
//! has a rank. Pairs wait in a binary heap and a doubly linked list tracks the live
//! symbols, so a word of n symbols costs O(n log n). A heap entry that went stale (one of
//! its symbols was merged away) is recognised by its ids and skipped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Merge rules: `(left, right) -> (rank, merged)`.
#[derive(Debug, Default)]
pub(crate) struct Merges {
    rules: HashMap<(u32, u32), (u32, u32)>,
}

impl Merges {
    pub(crate) fn with_capacity(n: usize) -> Merges {
        Merges {
            rules: HashMap::with_capacity(n),
        }
    }

    /// Adds a rule unless the pair already has one (the first, best-ranked rule wins, as in
    /// the reference implementation).
    pub(crate) fn insert(&mut self, left: u32, right: u32, rank: u32, merged: u32) {
        self.rules.entry((left, right)).or_insert((rank, merged));
    }

    /// Merges `word` in place.
    pub(crate) fn apply(&self, word: &mut Vec<u32>) {
        if word.len() < 2 {
            return;
        }
        let n = word.len();
        let mut ids = word.clone();
        // Linked list over positions; `usize::MAX` marks "none".
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut next: Vec<usize> = (1..=n)
            .map(|i| if i == n { usize::MAX } else { i })
            .collect();
        let mut alive = vec![true; n];
        // (rank, left position, left id, right id, merged id), for a pair that has a rule.
        let entry = |pos: usize, l: u32, r: u32| {
            self.rules
                .get(&(l, r))
                .map(|&(rank, m)| Reverse((rank, pos, l, r, m)))
        };
        let mut heap: BinaryHeap<_> = (0..n - 1)
            .filter_map(|i| entry(i, ids[i], ids[i + 1]))
            .collect();
        while let Some(Reverse((_, left, left_id, right_id, merged))) = heap.pop() {
            let right = next[left];
            if !alive[left] || right == usize::MAX || ids[left] != left_id || ids[right] != right_id
            {
                continue; // stale
            }
            ids[left] = merged;
            alive[right] = false;
            next[left] = next[right];
            if next[right] != usize::MAX {
                prev[next[right]] = left;
            }
            let p = prev[left];
            if p != usize::MAX {
                heap.extend(entry(p, ids[p], merged));
            }
            let nx = next[left];
            if nx != usize::MAX {
                heap.extend(entry(left, merged, ids[nx]));
            }
        }
        word.clear();
        word.extend((0..n).filter(|&i| alive[i]).map(|i| ids[i]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_rank_first_and_leftmost_on_ties() {
        // ids: a=0 b=1 ab=2 bb=3 abb=4
        let mut m = Merges::default();
        m.insert(1, 1, 0, 3); // b b -> bb, best
        m.insert(0, 1, 1, 2); // a b -> ab
        m.insert(0, 3, 2, 4); // a bb -> abb
        let mut w = vec![0, 1, 1];
        m.apply(&mut w);
        assert_eq!(w, [4]);
        // "aaa" with a a -> aa merges the leftmost pair first.
        let mut m = Merges::default();
        m.insert(0, 0, 0, 5);
        let mut w = vec![0, 0, 0];
        m.apply(&mut w);
        assert_eq!(w, [5, 0]);
    }
}
