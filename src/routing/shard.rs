//! The sharding rule, written once.
//!
//! The subscription index is split over N `TopicShard` actors so that routing
//! runs on every core. A publish goes to shard `hash(topic) % N`. A filter
//! without wildcards can only match the one topic equal to it, so it lives in
//! shard `hash(filter) % N`, the same shard that topic's publishes go to. A
//! filter with `+` or `#` may match topics of any shard, so it lives in every
//! shard. Each publish therefore consults exactly one shard, and that shard
//! holds every subscription that can match it: overlapping subscriptions of
//! one client are seen together and delivered once [MQTT-3.3.5-1].

use crate::protocol::TopicFilter;

/// Where a subscription lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterShards {
    One(usize),
    All,
}

#[derive(Clone)]
pub struct ShardRule {
    count: usize,
    hasher: ahash::RandomState,
}

impl ShardRule {
    /// `count` must be at least 1.
    pub fn new(count: usize) -> ShardRule {
        assert!(count >= 1, "shard count is validated by config");
        // Fixed seeds: the rule must give the same answer in every actor.
        ShardRule {
            count,
            hasher: ahash::RandomState::with_seeds(
                0x726f_6f73,
                0x7420_6d71,
                0x7474_2073,
                0x6861_7264,
            ),
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The shard that routes a publish to `topic`.
    pub fn shard_for_topic(&self, topic: &str) -> usize {
        if self.count == 1 {
            return 0;
        }
        (self.hasher.hash_one(topic) % self.count as u64) as usize
    }

    /// The shards that must hold a subscription to `filter`.
    pub fn shards_for_filter(&self, filter: &TopicFilter) -> FilterShards {
        if filter.has_wildcards() {
            FilterShards::All
        } else {
            FilterShards::One(self.shard_for_topic(filter.as_str()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TopicName;
    use proptest::prelude::*;

    #[test]
    fn wildcard_filters_live_in_every_shard() {
        let rule = ShardRule::new(4);
        for f in ["#", "a/+", "+/b", "a/#"] {
            assert_eq!(
                rule.shards_for_filter(&TopicFilter::new(f.to_string()).unwrap()),
                FilterShards::All
            );
        }
    }

    #[test]
    fn one_shard_means_shard_zero() {
        let rule = ShardRule::new(1);
        assert_eq!(rule.shard_for_topic("anything"), 0);
    }

    #[test]
    fn topics_spread_over_shards() {
        let rule = ShardRule::new(4);
        let mut seen = [0usize; 4];
        for i in 0..1000 {
            seen[rule.shard_for_topic(&format!("building/floor-{i}/temperature"))] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "{seen:?}");
    }

    proptest! {
        /// Every subscription that matches a topic lives in that topic's shard.
        #[test]
        fn matching_filter_lives_in_the_topics_shard(topic in "[a-c/]{1,8}", filter in "[a-c/+#]{1,8}", n in 1usize..9) {
            let rule = ShardRule::new(n);
            if let (Ok(t), Ok(f)) = (TopicName::new(topic), TopicFilter::new(filter)) {
                if f.matches(&t) {
                    let shard = rule.shard_for_topic(t.as_str());
                    match rule.shards_for_filter(&f) {
                        FilterShards::All => {}
                        FilterShards::One(s) => prop_assert_eq!(s, shard),
                    }
                }
            }
        }
    }
}
