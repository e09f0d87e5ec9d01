//! The subscription index: topic filters of many subscribers in a trie of
//! topic levels, matched against one topic name in time proportional to the
//! topic's depth and the number of matching filters, not to the number of
//! subscriptions.

use super::Grant;
use crate::protocol::{TopicFilter, TopicName};
use ahash::AHashMap;
use smallvec::SmallVec;

/// The subscriber lists of a node, for `remove_at`.
trait TakeList<K> {
    fn items(&self) -> &[(K, Grant)];
    fn swap_remove_at(&mut self, i: usize);
}

impl<K> TakeList<K> for Vec<(K, Grant)> {
    fn items(&self) -> &[(K, Grant)] {
        self
    }
    fn swap_remove_at(&mut self, i: usize) {
        self.swap_remove(i);
        if self.is_empty() {
            self.shrink_to_fit();
        }
    }
}

impl<K> TakeList<K> for SmallVec<[(K, Grant); 1]> {
    fn items(&self) -> &[(K, Grant)] {
        self
    }
    fn swap_remove_at(&mut self, i: usize) {
        self.swap_remove(i);
        if self.is_empty() {
            self.shrink_to_fit();
        }
    }
}

/// Subscribers keyed by `K` (a session id), each filter with its grant.
pub struct SubscriptionTrie<K> {
    root: Node<K>,
    len: usize,
}

/// One level of the trie. Most nodes are leaves of one subscriber's
/// filter (`devices/17/cmd`), so a node is kept small: no map until it has
/// children, and its first exact subscriber inline.
struct Node<K> {
    children: Option<Box<AHashMap<Box<str>, Node<K>>>>,
    /// The child for a `+` level.
    plus: Option<Box<Node<K>>>,
    /// Subscribers whose filter ends at this node.
    exact: SmallVec<[(K, Grant); 1]>,
    /// Subscribers whose filter is this node followed by `#`.
    multi: Vec<(K, Grant)>,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Node {
            children: None,
            plus: None,
            exact: SmallVec::new(),
            multi: Vec::new(),
        }
    }
}

impl<K> Node<K> {
    fn child(&self, level: &str) -> Option<&Node<K>> {
        self.children.as_ref()?.get(level)
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<K>> {
        self.children.as_mut()?.get_mut(level)
    }
}

impl<K> Node<K> {
    fn is_empty(&self) -> bool {
        self.children.as_ref().is_none_or(|c| c.is_empty())
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.multi.is_empty()
    }
}

impl<K: Copy + Eq> Default for SubscriptionTrie<K> {
    fn default() -> Self {
        SubscriptionTrie::new()
    }
}

impl<K: Copy + Eq> SubscriptionTrie<K> {
    pub fn new() -> Self {
        SubscriptionTrie {
            root: Node::default(),
            len: 0,
        }
    }

    /// Number of (subscriber, filter) pairs.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces `key`'s subscription to `filter`; true when it is new.
    pub fn insert(&mut self, filter: &TopicFilter, key: K, grant: Grant) -> bool {
        let mut node = &mut self.root;
        let mut slot = None;
        for level in filter.levels() {
            match level {
                "#" => {
                    slot = Some(&mut node.multi);
                    break;
                }
                "+" => node = node.plus.get_or_insert_with(Default::default),
                l => {
                    node = node
                        .children
                        .get_or_insert_with(Default::default)
                        .entry(l.into())
                        .or_default()
                }
            }
        }
        let new = match slot {
            Some(list) => upsert(list, key, grant),
            None => upsert(&mut node.exact, key, grant),
        };
        self.len += usize::from(new);
        new
    }

    /// Removes `key`'s subscription to `filter`; true when there was one.
    pub fn remove(&mut self, filter: &TopicFilter, key: K) -> bool {
        let levels: Vec<&str> = filter.levels().collect();
        let removed = remove_at(&mut self.root, &levels, key);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` once per matching (subscriber, filter): a subscriber with
    /// overlapping filters is reported once per filter.
    pub fn for_each_match(&self, topic: &TopicName, mut f: impl FnMut(K, Grant)) {
        let levels: smallvec::SmallVec<[&str; 16]> = topic.levels().collect();
        let system = topic.is_system();
        match_at(&self.root, &levels, system, &mut f);
    }
}

/// Sets `key`'s grant in a subscriber list, adding it if missing; true when
/// it is new.
fn upsert<K: Eq, L: Extend<(K, Grant)> + std::ops::DerefMut<Target = [(K, Grant)]>>(
    list: &mut L,
    key: K,
    grant: Grant,
) -> bool {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => {
            entry.1 = grant;
            false
        }
        None => {
            list.extend([(key, grant)]);
            true
        }
    }
}

fn remove_at<K: Copy + Eq>(node: &mut Node<K>, levels: &[&str], key: K) -> bool {
    fn take<K: Eq, L: TakeList<K>>(list: &mut L, key: K) -> bool {
        match list.items().iter().position(|(k, _)| *k == key) {
            Some(i) => {
                list.swap_remove_at(i);
                true
            }
            None => false,
        }
    }
    match levels.split_first() {
        None => take(&mut node.exact, key),
        Some((&"#", _)) => take(&mut node.multi, key),
        Some((&"+", rest)) => {
            let Some(child) = node.plus.as_deref_mut() else {
                return false;
            };
            let removed = remove_at(child, rest, key);
            if child.is_empty() {
                node.plus = None;
            }
            removed
        }
        Some((level, rest)) => {
            let Some(child) = node.child_mut(level) else {
                return false;
            };
            let removed = remove_at(child, rest, key);
            if child.is_empty() {
                if let Some(children) = &mut node.children {
                    children.remove(*level);
                    if children.is_empty() {
                        node.children = None;
                    }
                }
            }
            removed
        }
    }
}

/// `at_root_of_system_topic`: wildcards at the first level do not match
/// topics starting with `$` [MQTT-4.7.2-1].
fn match_at<K: Copy>(
    node: &Node<K>,
    levels: &[&str],
    system_root: bool,
    f: &mut impl FnMut(K, Grant),
) {
    if !system_root {
        // `a/#` matches `a` and everything below it.
        for &(k, q) in &node.multi {
            f(k, q);
        }
    }
    let Some((level, rest)) = levels.split_first() else {
        for &(k, q) in &node.exact {
            f(k, q);
        }
        return;
    };
    if let Some(child) = node.child(level) {
        match_at(child, rest, false, f);
    }
    if !system_root {
        if let Some(plus) = &node.plus {
            match_at(plus, rest, false, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::QoS;
    use proptest::prelude::*;

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s.to_string()).unwrap()
    }

    fn matches(trie: &SubscriptionTrie<u32>, topic: &str) -> Vec<(u32, QoS)> {
        let mut out = Vec::new();
        trie.for_each_match(&TopicName::new(topic.to_string()).unwrap(), |k, g| {
            out.push((k, g.qos()))
        });
        out.sort();
        out
    }

    #[test]
    fn insert_replaces_and_remove_prunes() {
        let mut t = SubscriptionTrie::new();
        assert!(t.insert(&filter("a/+/c"), 1, Grant::of(QoS::AtMostOnce)));
        assert!(!t.insert(&filter("a/+/c"), 1, Grant::of(QoS::ExactlyOnce)));
        assert_eq!(t.len(), 1);
        assert_eq!(matches(&t, "a/b/c"), vec![(1, QoS::ExactlyOnce)]);
        assert!(t.remove(&filter("a/+/c"), 1));
        assert!(!t.remove(&filter("a/+/c"), 1));
        assert!(t.root.is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn multi_level_wildcard_matches_parent_level() {
        let mut t = SubscriptionTrie::new();
        t.insert(&filter("sport/#"), 1, Grant::of(QoS::AtLeastOnce));
        assert_eq!(matches(&t, "sport"), vec![(1, QoS::AtLeastOnce)]);
        assert_eq!(matches(&t, "sport/tennis/x"), vec![(1, QoS::AtLeastOnce)]);
        assert!(matches(&t, "sports").is_empty());
    }

    #[test]
    fn system_topics_skip_leading_wildcards() {
        let mut t = SubscriptionTrie::new();
        t.insert(&filter("#"), 1, Grant::of(QoS::AtMostOnce));
        t.insert(&filter("+/x"), 2, Grant::of(QoS::AtMostOnce));
        t.insert(&filter("$SYS/#"), 3, Grant::of(QoS::AtMostOnce));
        assert_eq!(matches(&t, "$SYS/x"), vec![(3, QoS::AtMostOnce)]);
        assert_eq!(matches(&t, "a/x").len(), 2);
    }

    fn arb_filter() -> impl Strategy<Value = TopicFilter> {
        prop::collection::vec(
            prop_oneof!["[ab$]{0,2}", Just("+".to_string()), Just("#".to_string())],
            1..4,
        )
        .prop_filter_map("valid", |l| TopicFilter::new(l.join("/")).ok())
    }

    fn arb_topic() -> impl Strategy<Value = TopicName> {
        prop::collection::vec("[ab$]{0,2}", 1..5)
            .prop_filter_map("valid", |l| TopicName::new(l.join("/")).ok())
    }

    proptest! {
        /// The trie agrees with the one-filter reference matcher
        /// (`TopicFilter::matches`) for any set of subscriptions.
        #[test]
        fn trie_agrees_with_reference_matcher(
            subs in prop::collection::vec((arb_filter(), 0u32..6), 0..30),
            removals in prop::collection::vec(0usize..30, 0..10),
            topics in prop::collection::vec(arb_topic(), 1..10),
        ) {
            let mut trie = SubscriptionTrie::new();
            let mut reference: Vec<(TopicFilter, u32)> = Vec::new();
            for (f, k) in &subs {
                trie.insert(f, *k, Grant::of(QoS::AtMostOnce));
                if !reference.contains(&(f.clone(), *k)) {
                    reference.push((f.clone(), *k));
                }
            }
            for r in removals {
                if r < reference.len() {
                    let (f, k) = reference.remove(r);
                    prop_assert!(trie.remove(&f, k));
                }
            }
            prop_assert_eq!(trie.len(), reference.len());
            for topic in &topics {
                let mut got = Vec::new();
                trie.for_each_match(topic, |k, _| got.push(k));
                got.sort();
                let mut want: Vec<u32> = reference.iter().filter(|(f, _)| f.matches(topic)).map(|(_, k)| *k).collect();
                want.sort();
                prop_assert_eq!(got, want, "topic {:?}", topic);
            }
        }
    }
}
