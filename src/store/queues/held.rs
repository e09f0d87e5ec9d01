//! The ids of a queue that its session holds in memory ([`Held`]), as
//! ranges: a session holds the front of its queue (in flight and read
//! ahead), and takes ids off that front as it is acknowledged, so the set
//! is one range or a few. A hash set cost a hash per id added and removed,
//! and a page had to test every held id before the first it could hand
//! out (measured: 3% of a drain in `HashSet::remove` alone).

use super::MessageId;

/// A set of message ids, kept as sorted, disjoint, non-adjacent ranges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Held {
    /// `(first, last)`, inclusive; sorted, with a gap between neighbours.
    ranges: Vec<(MessageId, MessageId)>,
    len: u64,
}

impl Held {
    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// The index of the range that contains `id`, or where one would go.
    fn find(&self, id: MessageId) -> Result<usize, usize> {
        let i = self.ranges.partition_point(|&(_, last)| last < id);
        match self.ranges.get(i) {
            Some(&(first, _)) if first <= id => Ok(i),
            _ => Err(i),
        }
    }

    #[cfg(test)]
    fn contains(&self, id: MessageId) -> bool {
        self.find(id).is_ok()
    }

    /// The first id at or after `id` that is not in the set.
    pub(super) fn next_absent(&self, id: MessageId) -> MessageId {
        match self.find(id) {
            Ok(i) => self.ranges[i].1 + 1,
            Err(_) => id,
        }
    }

    pub(super) fn insert(&mut self, id: MessageId) {
        // The usual case first: one past the last range.
        if let Some(last) = self.ranges.last_mut() {
            if last.1 + 1 == id {
                last.1 = id;
                self.len += 1;
                return;
            }
        }
        let Err(i) = self.find(id) else {
            return; // already in
        };
        let joins_prev = i > 0 && self.ranges[i - 1].1 + 1 == id;
        let joins_next = self
            .ranges
            .get(i)
            .is_some_and(|&(first, _)| first == id + 1);
        match (joins_prev, joins_next) {
            (true, true) => {
                self.ranges[i - 1].1 = self.ranges[i].1;
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i - 1].1 = id,
            (false, true) => self.ranges[i].0 = id,
            (false, false) => self.ranges.insert(i, (id, id)),
        }
        self.len += 1;
    }

    pub(super) fn remove(&mut self, id: MessageId) {
        let Ok(i) = self.find(id) else {
            return;
        };
        let (first, last) = self.ranges[i];
        match (first == id, last == id) {
            (true, true) => {
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i].0 = id + 1,
            (false, true) => self.ranges[i].1 = id - 1,
            (false, false) => {
                self.ranges[i].1 = id - 1;
                self.ranges.insert(i + 1, (id + 1, last));
            }
        }
        self.len -= 1;
    }

    pub(super) fn clear(&mut self) {
        self.ranges = Vec::new();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_front_of_a_queue_is_one_range() {
        let mut held = Held::default();
        for id in 10..=20 {
            held.insert(id);
        }
        assert_eq!(held.ranges, [(10, 20)]);
        held.remove(10);
        held.remove(11);
        assert_eq!(held.ranges, [(12, 20)]);
        assert_eq!(held.len(), 9);
        assert_eq!(held.next_absent(12), 21);
        assert_eq!(held.next_absent(5), 5);
        held.remove(15);
        assert_eq!(held.ranges, [(12, 14), (16, 20)]);
        held.insert(15);
        assert_eq!(held.ranges, [(12, 20)]);
    }

    proptest! {
        /// Any sequence of inserts and removes gives the same set as a
        /// `BTreeSet`, kept as sorted, disjoint, non-adjacent ranges.
        #[test]
        fn behaves_as_a_set(ops in proptest::collection::vec((any::<bool>(), 0u64..64), 0..200)) {
            let mut held = Held::default();
            let mut model = BTreeSet::new();
            for (insert, id) in ops {
                match insert {
                    true => { held.insert(id); model.insert(id); }
                    false => { held.remove(id); model.remove(&id); }
                }
                prop_assert_eq!(held.len(), model.len() as u64);
                for w in held.ranges.windows(2) {
                    prop_assert!(w[0].1 + 1 < w[1].0, "sorted, apart: {:?}", held.ranges);
                }
                for id in 0..66 {
                    prop_assert_eq!(held.contains(id), model.contains(&id));
                    let absent = (id..).find(|i| !model.contains(i)).unwrap();
                    prop_assert_eq!(held.next_absent(id), absent);
                }
            }
        }
    }
}
