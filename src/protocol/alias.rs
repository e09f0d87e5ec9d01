//! Topic aliases (MQTT 5.0, section 3.3.2.3.4), per connection, each way:
//! [`TopicAliases`], those a client sets in its PUBLISH packets, numbered 1
//! to the maximum the server announced in CONNACK (the codec resolves
//! them, so that every decoded PUBLISH carries its full topic name); and
//! [`OutboundAliases`], those roost sets in the PUBLISH packets it sends a
//! client that accepts them.

use super::{ProtocolError, TopicName};

/// The inbound aliases of one connection.
#[derive(Debug, Clone, Default)]
pub struct TopicAliases {
    /// The Topic Alias Maximum roost announced; 0 accepts none.
    max: u16,
    /// Alias `n` at `n - 1`; grows as aliases are set, at most to `max`.
    topics: Vec<Option<TopicName>>,
}

impl TopicAliases {
    pub fn new(max: u16) -> TopicAliases {
        TopicAliases {
            max,
            topics: Vec::new(),
        }
    }

    /// The topic of a PUBLISH that carries alias `alias`: `topic` is its
    /// topic name, `None` when empty. A name sets (or replaces) the alias;
    /// an empty name uses it.
    pub fn resolve(
        &mut self,
        alias: u16,
        topic: Option<TopicName>,
    ) -> Result<TopicName, ProtocolError> {
        if alias == 0 || alias > self.max {
            // [MQTT-3.3.2-8] [MQTT-3.3.2-9]: DISCONNECT with 0x94.
            return Err(ProtocolError::TopicAliasInvalid {
                alias,
                max: self.max,
            });
        }
        let slot = usize::from(alias - 1);
        match topic {
            Some(topic) => {
                if self.topics.len() <= slot {
                    self.topics.resize(slot + 1, None);
                }
                // Kept beyond this packet: in an allocation of its own.
                self.topics[slot] = Some(topic.detached());
                Ok(topic)
            }
            None => self
                .topics
                .get(slot)
                .and_then(Clone::clone)
                .ok_or(ProtocolError::UnknownTopicAlias(alias)),
        }
    }
}

/// The aliases roost assigns to the topics it sends one client: the first
/// topics sent, up to the client's Topic Alias Maximum (and roost's own
/// bound), each keep theirs for the connection's lifetime; later topics go
/// out in full. Bounded by its maximum, and stable: a topic's alias never
/// changes, so no PUBLISH has to re-set one. A topic of 3 bytes or less is
/// not aliased: the alias property costs as much as it saves.
#[derive(Debug)]
pub struct OutboundAliases {
    max: u16,
    topics: ahash::AHashMap<TopicName, u16>,
}

/// Topics this long or shorter are sent in full.
const NOT_WORTH_AN_ALIAS: usize = 3;

impl OutboundAliases {
    pub fn new(max: u16) -> OutboundAliases {
        OutboundAliases {
            max,
            topics: ahash::AHashMap::new(),
        }
    }

    /// The alias to send `topic` with, and whether this PUBLISH sets it
    /// (carries the topic name too); `None`: send the name alone.
    pub fn alias_for(&mut self, topic: &TopicName) -> Option<(u16, bool)> {
        if let Some(&alias) = self.topics.get(topic) {
            return Some((alias, false));
        }
        let next = u16::try_from(self.topics.len() + 1).ok()?;
        if next > self.max || topic.as_str().len() <= NOT_WORTH_AN_ALIAS {
            return None;
        }
        self.topics.insert(topic.detached(), next);
        Some((next, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    #[test]
    fn an_alias_is_set_by_a_name_and_used_without_one() {
        let mut aliases = TopicAliases::new(4);
        assert_eq!(aliases.resolve(2, Some(topic("a/b"))), Ok(topic("a/b")));
        assert_eq!(aliases.resolve(2, None), Ok(topic("a/b")));
        assert_eq!(aliases.resolve(2, Some(topic("c"))), Ok(topic("c")));
        assert_eq!(aliases.resolve(2, None), Ok(topic("c")));
        assert_eq!(
            aliases.resolve(1, None),
            Err(ProtocolError::UnknownTopicAlias(1))
        );
    }

    /// [MQTT-3.3.2-8] 0 is not an alias; [MQTT-3.3.2-9] nor is one above
    /// the maximum the server announced.
    #[test]
    fn zero_and_above_the_maximum_are_invalid() {
        let mut aliases = TopicAliases::new(4);
        for alias in [0, 5, u16::MAX] {
            assert_eq!(
                aliases.resolve(alias, Some(topic("a"))),
                Err(ProtocolError::TopicAliasInvalid { alias, max: 4 })
            );
        }
        let mut none = TopicAliases::new(0);
        assert!(none.resolve(1, Some(topic("a"))).is_err());
    }

    /// [MQTT-3.1.2-26] [MQTT-3.3.2-11] No alias above the client's maximum: the first
    /// topics get 1 and 2, keep them, and a third goes out in full; short
    /// topics are not aliased.
    #[test]
    fn outbound_aliases_are_assigned_once_up_to_the_maximum_mqtt_3_3_2_11() {
        let mut a = OutboundAliases::new(2);
        assert_eq!(a.alias_for(&topic("sensors/1")), Some((1, true)));
        assert_eq!(a.alias_for(&topic("sensors/1")), Some((1, false)));
        assert_eq!(a.alias_for(&topic("abc")), None, "short");
        assert_eq!(a.alias_for(&topic("sensors/2")), Some((2, true)));
        assert_eq!(a.alias_for(&topic("sensors/3")), None, "at the maximum");
        assert_eq!(a.alias_for(&topic("sensors/2")), Some((2, false)));
        assert_eq!(OutboundAliases::new(0).alias_for(&topic("sensors/1")), None);
    }
}
