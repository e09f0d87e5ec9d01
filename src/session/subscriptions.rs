//! A session's subscriptions, and the decision on each filter of a
//! SUBSCRIBE: granted at the QoS asked for [MQTT-3.9.3-1], or refused
//! (return code 0x80) by the ACL or by a limit [MQTT-3.9.3-2]. The actor
//! acts on the outcome: it logs and counts the refusals, and adds the
//! granted filters to the topic shards and the store.

use super::map::SharedSeedMap;
use crate::config::LimitsConfig;
use crate::protocol::{ReasonCode, RetainHandling, SubscribeTopic, TopicFilter, TopicName};
use crate::routing::Grant;
use std::num::NonZeroU32;

/// The filters of one session, each with its granted QoS and options.
#[derive(Default)]
pub struct Subscriptions(SharedSeedMap<TopicFilter, Subscription>);

/// One subscription of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// What routing applies: QoS, No Local, Retain As Published.
    pub grant: Grant,
    /// MQTT 5.0: its Subscription Identifier, sent with every message it
    /// matches [MQTT-3.3.4-3].
    pub id: Option<NonZeroU32>,
}

impl Subscription {
    /// A subscription of 3.1.1, or of 5.0 without options.
    pub fn of(grant: Grant) -> Subscription {
        Subscription { grant, id: None }
    }
}

/// A filter of a SUBSCRIBE that was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub filter: TopicFilter,
    pub subscription: Subscription,
    /// Not a replacement of an existing subscription [MQTT-3.8.4-3].
    pub new: bool,
    /// Its retained messages are sent: always in 3.1.1, as its Retain
    /// Handling says in 5.0 [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11].
    pub send_retained: bool,
}

/// Why a filter of a SUBSCRIBE was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeRefusal {
    /// The ACL does not let this client read all the filter covers.
    Acl,
    /// The filter is beyond `max_topic_length`/`max_topic_levels`, or the
    /// client holds `max_subscriptions_per_client` already.
    Limit,
    /// The packet has more than `max_filters_per_subscribe` filters: those
    /// beyond are not looked at.
    TooManyFilters,
}

impl SubscribeRefusal {
    /// The SUBACK code a 5.0 client is sent (3.1.1 says 0x80 for each).
    pub fn reason(self) -> ReasonCode {
        match self {
            SubscribeRefusal::Acl => ReasonCode::NOT_AUTHORIZED,
            SubscribeRefusal::Limit => ReasonCode::QUOTA_EXCEEDED,
            SubscribeRefusal::TooManyFilters => ReasonCode::QUOTA_EXCEEDED,
        }
    }
}

/// What one SUBSCRIBE did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SubscribeOutcome {
    /// One per filter, in the packet's order, for the SUBACK [MQTT-3.8.4-5].
    pub codes: Vec<ReasonCode>,
    /// The granted filters in the packet's order.
    pub granted: Vec<Granted>,
    /// The refused filters, with the reason (a repeat of a refused filter
    /// is not listed again).
    pub refused: Vec<(TopicFilter, SubscribeRefusal)>,
}

impl Subscriptions {
    pub fn restore(filters: Vec<(TopicFilter, Subscription)>) -> Subscriptions {
        Subscriptions(filters.into_iter().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TopicFilter, Subscription)> {
        self.0.iter().map(|(f, s)| (f, *s))
    }

    /// Whether any subscription has a Subscription Identifier.
    pub fn any_ids(&self) -> bool {
        self.0.values().any(|s| s.id.is_some())
    }

    /// The Subscription Identifiers of the subscriptions `topic` matches,
    /// for a message sent on them [MQTT-3.3.4-3] [MQTT-3.3.4-4].
    pub fn ids_matching(&self, topic: &TopicName) -> Vec<u32> {
        let mut ids: Vec<u32> = (self.0.iter())
            .filter_map(|(f, s)| s.id.filter(|_| f.matches(topic)))
            .map(NonZeroU32::get)
            .collect();
        ids.sort_unstable();
        ids
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, filter: &TopicFilter) -> bool {
        self.0.contains_key(filter)
    }

    /// Adds or replaces a subscription [MQTT-3.8.4-3]; returns the previous grant.
    fn insert(&mut self, filter: TopicFilter, subscription: Subscription) -> Option<Subscription> {
        self.0.insert(filter, subscription)
    }

    pub fn remove(&mut self, filter: &TopicFilter) -> bool {
        self.0.remove(filter).is_some()
    }

    /// Decides on each filter of a SUBSCRIBE in order, and adds the granted
    /// ones. `allowed_by_acl` is the ACL's answer for a filter.
    ///
    /// A filter repeated within the packet is decided, and added, once:
    /// as processing the packet in order would leave it, at the QoS of its
    /// last occurrence, each occurrence answered with its own code. Filters
    /// beyond `max_filters_per_subscribe` are refused (0x80) without being
    /// looked at. So one SUBSCRIBE of any size costs at most that many
    /// subscriptions' work (and retained lookups).
    pub fn subscribe(
        &mut self,
        topics: &[SubscribeTopic],
        id: Option<NonZeroU32>,
        limits: &LimitsConfig,
        allowed_by_acl: impl Fn(&TopicFilter) -> bool,
    ) -> SubscribeOutcome {
        let mut outcome = SubscribeOutcome {
            codes: Vec::with_capacity(topics.len()),
            granted: Vec::new(),
            refused: Vec::new(),
        };
        let considered = topics.len().min(limits.max_filters_per_subscribe);
        // Where each filter occurs last among those considered.
        let mut last: ahash::AHashMap<&TopicFilter, usize> = ahash::AHashMap::new();
        for (i, t) in topics[..considered].iter().enumerate() {
            last.insert(&t.filter, i);
        }
        // An earlier occurrence waits for the decision on its last one.
        let mut repeats = Vec::new();
        for (i, t) in topics.iter().enumerate() {
            if i >= considered {
                outcome
                    .codes
                    .push(SubscribeRefusal::TooManyFilters.reason());
                outcome
                    .refused
                    .push((t.filter.clone(), SubscribeRefusal::TooManyFilters));
                continue;
            }
            if last[&t.filter] != i {
                repeats.push(i);
                outcome.codes.push(ReasonCode::UNSPECIFIED_ERROR);
                continue;
            }
            let new = !self.contains(&t.filter);
            let at_max = limits.max_subscriptions_per_client > 0
                && self.len() >= limits.max_subscriptions_per_client;
            let refusal = if !allowed_by_acl(&t.filter) {
                Some(SubscribeRefusal::Acl)
            } else if !limits.topic_allowed(t.filter.as_str()) || (new && at_max) {
                Some(SubscribeRefusal::Limit)
            } else {
                None
            };
            if let Some(refusal) = refusal {
                outcome.codes.push(refusal.reason());
                outcome.refused.push((t.filter.clone(), refusal));
                continue;
            }
            // roost supports every QoS, so the granted QoS is the requested
            // one [MQTT-3.9.3-1]. Kept apart from the packet's buffer.
            let filter = t.filter.detached();
            let subscription = Subscription {
                grant: Grant::new(t.qos, &t.options),
                id,
            };
            self.insert(filter.clone(), subscription);
            outcome.codes.push(ReasonCode::granted(t.qos));
            let send_retained = match t.options.retain_handling {
                RetainHandling::Always => true,
                RetainHandling::IfNew => new,
                RetainHandling::Never => false,
            };
            outcome.granted.push(Granted {
                filter,
                subscription,
                new,
                send_retained,
            });
        }
        for i in repeats {
            // A repeat is granted its own QoS, or refused as its last one.
            let decided = outcome.codes[last[&topics[i].filter]];
            outcome.codes[i] = match decided.is_error() {
                false => ReasonCode::granted(topics[i].qos),
                true => decided,
            };
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{QoS, SubscriptionOptions};

    fn topic(filter: &str, qos: QoS) -> SubscribeTopic {
        SubscribeTopic::new(TopicFilter::new(filter.to_string()).unwrap(), qos)
    }

    fn limits(max_subscriptions: usize) -> LimitsConfig {
        let mut l = crate::config::Config::defaults().limits;
        l.max_subscriptions_per_client = max_subscriptions;
        l.max_topic_levels = 3;
        l
    }

    /// [MQTT-3.9.3-1] [MQTT-3.9.3-2] Each row: the filter, and its return code.
    #[test]
    fn each_filter_is_granted_at_its_qos_or_refused_mqtt_3_9_3_1_and_3_9_3_2() {
        let mut s = Subscriptions::default();
        let topics = [
            topic("a/b", QoS::ExactlyOnce),
            topic("secret/#", QoS::AtLeastOnce),
            topic("a/b/c/d", QoS::AtMostOnce),
            topic("a/+", QoS::AtMostOnce),
        ];
        let outcome = s.subscribe(&topics, None, &limits(0), |f| {
            !f.as_str().starts_with("secret")
        });
        assert_eq!(
            outcome.codes,
            [
                ReasonCode::GRANTED_QOS_2,
                ReasonCode::NOT_AUTHORIZED,
                ReasonCode::QUOTA_EXCEEDED,
                ReasonCode::SUCCESS,
            ]
        );
        let refused: Vec<_> = outcome
            .refused
            .iter()
            .map(|(f, r)| (f.as_str(), *r))
            .collect();
        assert_eq!(
            refused,
            [
                ("secret/#", SubscribeRefusal::Acl),
                ("a/b/c/d", SubscribeRefusal::Limit)
            ]
        );
        assert_eq!(s.len(), 2);
    }

    /// [MQTT-3.8.4-3] A filter subscribed again replaces the old one: not
    /// new, and it does not count against the limit.
    #[test]
    fn a_repeated_filter_replaces_and_is_not_held_to_the_limit_mqtt_3_8_4_3() {
        let mut s = Subscriptions::default();
        let first = s.subscribe(&[topic("t", QoS::AtMostOnce)], None, &limits(1), |_| true);
        assert!(first.granted[0].new, "new");
        let again = s.subscribe(
            &[topic("t", QoS::ExactlyOnce), topic("u", QoS::AtMostOnce)],
            None,
            &limits(1),
            |_| true,
        );
        assert_eq!(
            again.codes,
            [ReasonCode::GRANTED_QOS_2, ReasonCode::QUOTA_EXCEEDED]
        );
        assert!(!again.granted[0].new, "a replacement, not new");
        assert_eq!(again.refused[0].1, SubscribeRefusal::Limit);
        assert_eq!(
            s.iter().next().map(|(_, s)| s.grant.qos()),
            Some(QoS::ExactlyOnce)
        );
    }

    /// [MQTT-3.8.4-5] one return code per filter, in order, though a filter
    /// repeated in the packet is decided and added once, at the QoS of its
    /// last occurrence, as processing the packet in order would leave it.
    #[test]
    fn a_filter_repeated_in_one_packet_is_added_once_mqtt_3_8_4_5() {
        let mut s = Subscriptions::default();
        let topics = [
            topic("a/#", QoS::AtMostOnce),
            topic("b", QoS::AtLeastOnce),
            topic("a/#", QoS::ExactlyOnce),
            topic("secret", QoS::AtMostOnce),
            topic("secret", QoS::AtLeastOnce),
        ];
        let outcome = s.subscribe(&topics, None, &limits(0), |f| f.as_str() != "secret");
        assert_eq!(
            outcome.codes,
            [
                ReasonCode::SUCCESS,
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::GRANTED_QOS_2,
                ReasonCode::NOT_AUTHORIZED,
                ReasonCode::NOT_AUTHORIZED,
            ]
        );
        let granted: Vec<_> = outcome
            .granted
            .iter()
            .map(|g| (g.filter.as_str(), g.subscription.grant.qos()))
            .collect();
        assert_eq!(
            granted,
            [("b", QoS::AtLeastOnce), ("a/#", QoS::ExactlyOnce)]
        );
        assert_eq!(outcome.refused.len(), 1, "the refused filter listed once");
        assert_eq!(s.len(), 2);
    }

    /// Filters beyond `max_filters_per_subscribe` are refused unlooked-at;
    /// 262,000 copies of one filter are one subscription.
    #[test]
    fn filters_beyond_the_limit_are_refused_and_copies_cost_one() {
        let mut s = Subscriptions::default();
        let mut l = limits(0);
        l.max_filters_per_subscribe = 2;
        let topics = [
            topic("a", QoS::AtMostOnce),
            topic("b", QoS::AtMostOnce),
            topic("c", QoS::AtMostOnce),
        ];
        let outcome = s.subscribe(&topics, None, &l, |_| true);
        assert_eq!(outcome.codes[2], ReasonCode::QUOTA_EXCEEDED);
        assert_eq!(outcome.refused[0].1, SubscribeRefusal::TooManyFilters);
        let copies = vec![topic("#", QoS::AtMostOnce); 262_000];
        let mut s = Subscriptions::default();
        let outcome = s.subscribe(&copies, None, &limits(0), |_| true);
        assert_eq!(outcome.granted.len(), 1);
        assert_eq!(outcome.codes.len(), 262_000);
        assert_eq!(
            outcome
                .codes
                .iter()
                .filter(|c| **c == ReasonCode::SUCCESS)
                .count(),
            1000,
            "the first 1000 looked at, the rest refused"
        );
    }

    /// [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11] Retain Handling 0
    /// always sends the retained messages, 1 only for a subscription that
    /// did not exist, 2 never; No Local and Retain As Published are kept
    /// in the grant.
    #[test]
    fn retain_handling_decides_what_is_sent_at_subscribe_mqtt_3_3_1_9_to_3_3_1_11() {
        let with = |filter: &str, retain_handling| SubscribeTopic {
            options: SubscriptionOptions {
                no_local: true,
                retain_as_published: true,
                retain_handling,
            },
            ..topic(filter, QoS::AtLeastOnce)
        };
        let mut s = Subscriptions::default();
        let rows = [
            (RetainHandling::Always, true, true),
            (RetainHandling::Always, false, true),
            (RetainHandling::IfNew, true, true),
            (RetainHandling::IfNew, false, false),
            (RetainHandling::Never, true, false),
            (RetainHandling::Never, false, false),
        ];
        for (i, (handling, new, sent)) in rows.into_iter().enumerate() {
            let filter = format!("f/{}", i / 2);
            let outcome = s.subscribe(&[with(&filter, handling)], None, &limits(0), |_| true);
            let g = &outcome.granted[0];
            assert_eq!(
                (g.new, g.send_retained),
                (new, sent),
                "{handling:?}, new {new}"
            );
            assert!(g.subscription.grant.no_local() && g.subscription.grant.retain_as_published());
        }
    }
}
