//! Topic aliases a client sets in its PUBLISH packets (MQTT 5.0, section
//! 3.3.2.3.4): per connection, numbered 1 to the maximum the server
//! announced in CONNACK. The codec resolves them, so that every decoded
//! PUBLISH carries its full topic name.

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
}
