//! How many references each message of the log has, kept as spans of
//! consecutive ids with one count each, so that its size follows the
//! number of queue runs, not the number of messages.
//!
//! A message leaves the log when its count falls to zero: the ids of such
//! spans are handed back, in ranges, for one `DELETE ... BETWEEN` each
//! (see `message_log`). Ids that were never counted (no durable copy) have no span.

use std::collections::BTreeMap;

/// A message's id in the log (see `message_log`).
pub type Id = u64;

#[derive(Default, Debug)]
pub struct Coverage {
    /// first id → (last id, count > 0); spans never overlap, and two
    /// neighbours with the same count are one span.
    spans: BTreeMap<Id, (Id, u32)>,
}

impl Coverage {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The count of one id (0 if none).
    pub fn count(&self, id: Id) -> u32 {
        match self.spans.range(..=id).next_back() {
            Some((_, &(last, count))) if last >= id => count,
            _ => 0,
        }
    }

    /// Adds `n` references to every id in `first..=last`.
    pub fn add(&mut self, first: Id, last: Id, n: u32) {
        if n == 0 || first > last {
            return;
        }
        if first == last && self.add_after_last(first, n) {
            return;
        }
        self.split_at(first);
        self.split_at(last.saturating_add(1));
        // Walk the ids of the range: existing spans grow, gaps get new spans.
        let mut at = first;
        let inside: Vec<(Id, (Id, u32))> = self
            .spans
            .range(first..=last)
            .map(|(k, v)| (*k, *v))
            .collect();
        for (start, (end, count)) in inside {
            if start > at {
                self.spans.insert(at, (start - 1, n));
            }
            self.spans.insert(start, (end, count.saturating_add(n)));
            at = end.saturating_add(1);
        }
        if at <= last {
            self.spans.insert(at, (last, n));
        }
        self.merge_around(first, last);
    }

    /// The common case of `add`, without the general splitting: a new id
    /// past every span (a message just appended). False if it is not that.
    fn add_after_last(&mut self, id: Id, n: u32) -> bool {
        let Some((&start, &mut (ref mut end, count))) = self.spans.iter_mut().next_back() else {
            self.spans.insert(id, (id, n));
            return true;
        };
        if *end >= id {
            return false;
        }
        if *end + 1 == id && count == n {
            *end = id;
        } else {
            let _ = start;
            self.spans.insert(id, (id, n));
        }
        true
    }

    /// Takes one reference from `id` alone, the common case of `sub` (one
    /// acknowledgement), without its general splitting and merging.
    fn sub_one(&mut self, id: Id, freed: &mut Vec<(Id, Id)>) {
        let Some((&start, &(end, count))) = self.spans.range(..=id).next_back() else {
            return;
        };
        if end < id {
            return;
        }
        if count > 1 {
            // Split out `id` with one reference less, then join neighbours.
            self.split_at(id);
            self.split_at(id + 1);
            self.spans.insert(id, (id, count - 1));
            self.merge_around(id, id);
            return;
        }
        match (start == id, end == id) {
            (true, true) => {
                self.spans.remove(&start);
            }
            (true, false) => {
                self.spans.remove(&start);
                self.spans.insert(id + 1, (end, count));
            }
            (false, true) => {
                self.spans.insert(start, (id - 1, count));
            }
            (false, false) => {
                self.spans.insert(start, (id - 1, count));
                self.spans.insert(id + 1, (end, count));
            }
        }
        match freed.last_mut() {
            Some((_, prev_end)) if prev_end.saturating_add(1) == id => *prev_end = id,
            _ => freed.push((id, id)),
        }
    }

    /// Takes `n` references from every id in `first..=last`; the ranges whose
    /// count fell to zero are pushed to `freed` (ids without references are
    /// left alone).
    pub fn sub(&mut self, first: Id, last: Id, n: u32, freed: &mut Vec<(Id, Id)>) {
        if n == 0 || first > last {
            return;
        }
        if first == last && n == 1 {
            self.sub_one(first, freed);
            return;
        }
        self.split_at(first);
        self.split_at(last.saturating_add(1));
        let inside: Vec<(Id, (Id, u32))> = self
            .spans
            .range(first..=last)
            .map(|(k, v)| (*k, *v))
            .collect();
        for (start, (end, count)) in inside {
            let left = count.saturating_sub(n);
            if left == 0 {
                self.spans.remove(&start);
                match freed.last_mut() {
                    Some((_, prev_end)) if prev_end.saturating_add(1) == start => *prev_end = end,
                    _ => freed.push((start, end)),
                }
            } else {
                self.spans.insert(start, (end, left));
            }
        }
        self.merge_around(first, last);
    }

    /// The ranges of ids in `from..=to` that have no reference.
    pub fn gaps(&self, from: Id, to: Id) -> Vec<(Id, Id)> {
        let mut gaps = Vec::new();
        let mut at = from;
        for (&start, &(end, _)) in self.spans.range(..=to) {
            if end < at {
                continue;
            }
            if start > at {
                gaps.push((at, start - 1));
            }
            at = end.saturating_add(1);
            if at > to {
                return gaps;
            }
        }
        if at <= to {
            gaps.push((at, to));
        }
        gaps
    }

    /// Spans held (for tests and metrics).
    pub fn spans(&self) -> usize {
        self.spans.len()
    }

    /// Makes `at` the first id of a span, if a span covers it.
    fn split_at(&mut self, at: Id) {
        let Some((&start, &(end, count))) = self.spans.range(..at).next_back() else {
            return;
        };
        if end >= at {
            self.spans.insert(start, (at - 1, count));
            self.spans.insert(at, (end, count));
        }
    }

    /// Joins neighbours of equal count from just before `first` to just
    /// after `last`.
    fn merge_around(&mut self, first: Id, last: Id) {
        let mut at = self
            .spans
            .range(..first)
            .next_back()
            .map_or(first, |(k, _)| *k);
        let stop = last.saturating_add(1);
        // Walks the spans from the one before `first` to the one after
        // `last`, joining each into the one before it where they touch with
        // equal counts.
        while let Some((&key, &(end, count))) = self.spans.range(at..).next() {
            if key > stop {
                break;
            }
            match self.spans.range(key.saturating_add(1)..).next() {
                Some((&next, &(next_end, next_count)))
                    if next <= stop.saturating_add(1)
                        && end.saturating_add(1) == next
                        && next_count == count =>
                {
                    self.spans.remove(&next);
                    self.spans.insert(key, (next_end, count));
                }
                Some((&next, _)) => at = next,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(c: &Coverage) -> Vec<(Id, Id, u32)> {
        c.spans.iter().map(|(k, (e, n))| (*k, *e, *n)).collect()
    }

    #[test]
    fn ten_queues_of_one_topic_are_one_span() {
        let mut c = Coverage::default();
        for id in 1..=1000 {
            c.add(id, id, 10);
        }
        assert_eq!(all(&c), [(1, 1000, 10)]);
        // Nine sessions read ahead of the tenth: two spans, whatever the length.
        let mut freed = Vec::new();
        for id in 1..=500 {
            c.sub(id, id, 9, &mut freed);
        }
        assert_eq!(all(&c), [(1, 500, 1), (501, 1000, 10)]);
        assert!(freed.is_empty());
        c.sub(1, 500, 1, &mut freed);
        assert_eq!(freed, [(1, 500)]);
        assert_eq!(all(&c), [(501, 1000, 10)]);
    }

    #[test]
    fn freed_ranges_are_joined_and_gaps_found() {
        let mut c = Coverage::default();
        c.add(1, 10, 1);
        c.add(20, 30, 2);
        assert_eq!(c.gaps(0, 40), [(0, 0), (11, 19), (31, 40)]);
        assert_eq!(c.count(25), 2);
        assert_eq!(c.count(15), 0);
        let mut freed = Vec::new();
        c.sub(5, 25, 1, &mut freed);
        assert_eq!(freed, [(5, 10)]);
        assert_eq!(all(&c), [(1, 4, 1), (20, 25, 1), (26, 30, 2)]);
        c.sub(1, 30, 2, &mut freed);
        assert_eq!(freed, [(5, 10), (1, 4), (20, 30)]);
        assert!(c.is_empty());
    }

    proptest! {
        /// Against a plain array of counts: every count, and every freed id.
        #[test]
        fn matches_a_count_per_id(ops in proptest::collection::vec((any::<bool>(), 0u64..64, 0u64..8, 1u32..4), 1..80)) {
            let mut c = Coverage::default();
            let mut counts = [0u32; 80];
            for (add, first, len, n) in ops {
                let last = first + len;
                if add {
                    c.add(first, last, n);
                    for i in first..=last { counts[i as usize] += n; }
                } else {
                    let mut freed = Vec::new();
                    c.sub(first, last, n, &mut freed);
                    let mut expect = Vec::new();
                    for i in first..=last {
                        let before = counts[i as usize];
                        counts[i as usize] = before.saturating_sub(n);
                        if before > 0 && counts[i as usize] == 0 { expect.push(i); }
                    }
                    let got: Vec<u64> = freed.iter().flat_map(|&(a, b)| a..=b).collect();
                    prop_assert_eq!(got, expect);
                }
                for (i, want) in counts.iter().enumerate() {
                    prop_assert_eq!(c.count(i as u64), *want);
                }
                // Spans are canonical: no zero counts, no equal neighbours.
                let spans = all(&c);
                for w in spans.windows(2) {
                    prop_assert!(w[0].1 < w[1].0);
                    prop_assert!(!(w[0].1 + 1 == w[1].0 && w[0].2 == w[1].2));
                }
                prop_assert!(spans.iter().all(|s| s.2 > 0));
            }
        }
    }
}
