//! Topic names and topic filters (section 4.7), validated once when they are
//! decoded so that the rest of the broker never sees an invalid one.

use super::ProtocolError;
use bytestring::ByteString;
use std::fmt;

/// A topic a message is published to: non-empty, no `+` or `#`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(ByteString);

impl TopicName {
    /// The same name in an allocation of its own (see
    /// [`TopicFilter::detached`]).
    pub fn detached(&self) -> TopicName {
        TopicName(detached(&self.0))
    }

    pub fn new(s: impl Into<ByteString>) -> Result<TopicName, ProtocolError> {
        let s = s.into();
        if s.is_empty() {
            return Err(ProtocolError::EmptyTopic);
        }
        if s.contains(['+', '#']) {
            return Err(ProtocolError::WildcardInTopicName(s.to_string()));
        }
        if s.contains('\0') {
            return Err(ProtocolError::NullCharacter);
        }
        Ok(TopicName(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Topics beginning with `$` are not matched by filters beginning with a
    /// wildcard [MQTT-4.7.2-1].
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subscription filter: non-empty; `#` only as a whole last level, `+` only
/// as a whole level [MQTT-4.7.1-2] [MQTT-4.7.1-3].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(ByteString);

impl TopicFilter {
    /// The same filter in an allocation of its own. A filter decoded from
    /// a packet is a slice of the connection's read buffer, and keeping it
    /// (a subscription lives on after its connection) would keep the whole
    /// buffer, kilobytes, alive with it.
    pub fn detached(&self) -> TopicFilter {
        TopicFilter(detached(&self.0))
    }

    pub fn new(s: impl Into<ByteString>) -> Result<TopicFilter, ProtocolError> {
        let s = s.into();
        if s.is_empty() {
            return Err(ProtocolError::EmptyTopic);
        }
        if s.contains('\0') {
            return Err(ProtocolError::NullCharacter);
        }
        let mut levels = s.split('/').peekable();
        while let Some(level) = levels.next() {
            let valid = match level {
                "#" => levels.peek().is_none(),
                "+" => true,
                other => !other.contains(['+', '#']),
            };
            if !valid {
                return Err(ProtocolError::InvalidTopicFilter(s.to_string()));
            }
        }
        Ok(TopicFilter(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// True when the filter contains `+` or `#`; such a filter lives in every
    /// topic shard (see `routing::shard`).
    pub fn has_wildcards(&self) -> bool {
        self.0.contains(['+', '#'])
    }

    /// Whether this filter matches `topic` (section 4.7). The subscription
    /// index in `routing::trie` gives the same answers for many filters at once.
    pub fn matches(&self, topic: &TopicName) -> bool {
        filter_covers(&self.0, topic.as_str())
    }
}

/// Whether the filter text `filter` matches every topic that `other`
/// matches (section 4.7). `other` is a filter, or a topic name, which
/// matches only itself: so this also answers whether `filter` matches a
/// topic. ACL rules, which are not parsed `TopicFilter`s, need both.
pub fn filter_covers(filter: &str, other: &str) -> bool {
    // Wildcards at the first level do not match `$` topics [MQTT-4.7.2-1].
    if other.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let (mut filter, mut other) = (filter.split('/'), other.split('/'));
    loop {
        match (filter.next(), other.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(f), Some(o)) if f == o && o != "+" && o != "#" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `s` in an allocation of its own, not a slice of a larger buffer (see
/// [`TopicFilter::detached`]).
pub fn detached(s: &ByteString) -> ByteString {
    ByteString::from(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(filter: &str, topic: &str) -> bool {
        TopicFilter::new(filter.to_string())
            .unwrap()
            .matches(&TopicName::new(topic.to_string()).unwrap())
    }

    #[test]
    fn filter_validation_follows_mqtt_4_7_1() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/",
            "a//b",
            "+/",
            "sport/tennis/#",
        ] {
            assert!(TopicFilter::new(ok.to_string()).is_ok(), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+", "a/b+", "#/a", "a/+b", "##"] {
            assert!(TopicFilter::new(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn topic_names_reject_wildcards_mqtt_3_3_2_2() {
        assert!(TopicName::new("a/+".to_string()).is_err());
        assert!(TopicName::new("a/#".to_string()).is_err());
        assert!(TopicName::new("".to_string()).is_err());
        assert!(TopicName::new("/".to_string()).is_ok());
    }

    #[test]
    fn matching_examples_from_section_4_7() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("#", "a/b/c"));
        assert!(matches("a//b", "a//b"));
    }

    #[test]
    fn dollar_topics_not_matched_by_leading_wildcards_mqtt_4_7_2_1() {
        assert!(!matches("#", "$SYS/broker"));
        assert!(!matches("+/broker", "$SYS/broker"));
        assert!(matches("$SYS/#", "$SYS/broker"));
        assert!(matches("$SYS/+", "$SYS/broker"));
    }
}
