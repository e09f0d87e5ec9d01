//! Which subscribers a message goes to: pure data structures, no actors.
//!
//! - [`trie::SubscriptionTrie`]: topic filters of many sessions, matched
//!   against one topic name (the index inside each `TopicShard`).
//! - [`topic_tree::TopicTree`]: values keyed by topic name, matched against
//!   one filter (the retained-message index).
//! - [`grant::Grant`]: what a subscription was granted (QoS and options).
//! - [`shard::ShardRule`]: which `TopicShard` holds a subscription and which
//!   one routes a publish.

pub mod grant;
pub mod shard;
pub mod topic_tree;
pub mod trie;

pub use grant::Grant;
pub use shard::{FilterShards, ShardRule};
pub use topic_tree::TopicTree;
pub use trie::SubscriptionTrie;
