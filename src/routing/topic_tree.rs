//! Values keyed by topic name in a trie of levels, looked up by topic filter.
//! This is the retained-message index: a subscribe to `a/+/c` walks only the
//! branches the filter can match instead of scanning every retained topic.

use crate::protocol::{TopicFilter, TopicName};
use ahash::AHashMap;

pub struct TopicTree<V> {
    root: Node<V>,
    len: usize,
}

struct Node<V> {
    children: AHashMap<Box<str>, Node<V>>,
    value: Option<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: AHashMap::new(),
            value: None,
        }
    }
}

impl<V> Default for TopicTree<V> {
    fn default() -> Self {
        TopicTree {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<V> TopicTree<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets the value for `topic`, returning the previous one.
    pub fn insert(&mut self, topic: &TopicName, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in topic.levels() {
            node = node.children.entry(level.into()).or_default();
        }
        let old = node.value.replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the value for `topic` and prunes branches left empty.
    pub fn remove(&mut self, topic: &TopicName) -> Option<V> {
        let levels: Vec<&str> = topic.levels().collect();
        let old = remove_at(&mut self.root, &levels);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    pub fn get(&self, topic: &TopicName) -> Option<&V> {
        let mut node = &self.root;
        for level in topic.levels() {
            node = node.children.get(level)?;
        }
        node.value.as_ref()
    }

    /// Calls `f` for every value whose topic `filter` matches (section 4.7),
    /// skipping `$` topics for filters that start with a wildcard
    /// [MQTT-4.7.2-1].
    pub fn for_each_match(&self, filter: &TopicFilter, mut f: impl FnMut(&V)) {
        let levels: Vec<&str> = filter.levels().collect();
        match_at(&self.root, &levels, true, &mut f);
    }
}

fn remove_at<V>(node: &mut Node<V>, levels: &[&str]) -> Option<V> {
    let Some((level, rest)) = levels.split_first() else {
        return node.value.take();
    };
    let child = node.children.get_mut(*level)?;
    let old = remove_at(child, rest);
    if child.value.is_none() && child.children.is_empty() {
        node.children.remove(*level);
    }
    old
}

fn match_at<V>(node: &Node<V>, levels: &[&str], root: bool, f: &mut impl FnMut(&V)) {
    let visible = |name: &str| !(root && name.starts_with('$'));
    match levels.split_first() {
        None => {
            if let Some(v) = &node.value {
                f(v);
            }
        }
        Some((&"#", _)) => {
            if let Some(v) = &node.value {
                f(v);
            }
            for (name, child) in &node.children {
                if visible(name) {
                    visit_all(child, f);
                }
            }
        }
        Some((&"+", rest)) => {
            for (name, child) in &node.children {
                if visible(name) {
                    match_at(child, rest, false, f);
                }
            }
        }
        Some((level, rest)) => {
            if let Some(child) = node.children.get(*level) {
                match_at(child, rest, false, f);
            }
        }
    }
}

fn visit_all<V>(node: &Node<V>, f: &mut impl FnMut(&V)) {
    if let Some(v) = &node.value {
        f(v);
    }
    for child in node.children.values() {
        visit_all(child, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The tree returns exactly the topics the reference matcher accepts.
        #[test]
        fn tree_agrees_with_reference_matcher(
            topics in prop::collection::vec("[ab$]{0,2}(/[ab$]{0,2}){0,3}", 0..30),
            removed in prop::collection::vec(0usize..30, 0..5),
            filters in prop::collection::vec("([ab$]{0,2}|\\+)(/([ab$]{0,2}|\\+)){0,3}(/#)?|#", 1..10),
        ) {
            let mut tree = TopicTree::new();
            let mut reference = std::collections::BTreeSet::new();
            for t in topics.iter().filter_map(|t| TopicName::new(t.clone()).ok()) {
                tree.insert(&t, t.clone());
                reference.insert(t);
            }
            for r in removed {
                if let Some(t) = reference.iter().nth(r).cloned() {
                    prop_assert_eq!(tree.remove(&t), Some(t.clone()));
                    reference.remove(&t);
                }
            }
            prop_assert_eq!(tree.len(), reference.len());
            for f in filters.iter().filter_map(|f| TopicFilter::new(f.clone()).ok()) {
                let mut got = Vec::new();
                tree.for_each_match(&f, |t| got.push(t.clone()));
                got.sort();
                let want: Vec<TopicName> = reference.iter().filter(|t| f.matches(t)).cloned().collect();
                prop_assert_eq!(got, want, "filter {:?}", f);
            }
        }
    }
}
