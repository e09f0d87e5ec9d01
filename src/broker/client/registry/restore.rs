//! Persistent sessions from the store, restored asleep at start.

use super::{Entry, Held, SessionRegistry};
use crate::broker::client::messages::Dormant;
use crate::broker::durable::Completion;
use crate::broker::ops::metrics::Metrics;
use crate::broker::route::delivery_inbox::{DeliveryInbox, InboxHandle};
use crate::store::StoredSession;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl SessionRegistry {
    /// A persistent session from the store, asleep: its subscriptions go
    /// back into the shards (`indexed` is held until every shard has them).
    pub(super) fn restore_asleep(&mut self, stored: StoredSession, indexed: &Completion) {
        self.next_session_id += 1;
        let session_id = self.next_session_id - 1;
        let inbox = (!stored.subscriptions.is_empty())
            .then(|| Arc::new(DeliveryInbox::for_limits(&self.deps.limits)));
        if let Some(inbox) = &inbox {
            let handle = InboxHandle::new(inbox.clone());
            for (filter, subscription) in &stored.subscriptions {
                Metrics::inc(&self.deps.metrics.subscriptions);
                self.deps.router.subscribe(
                    session_id,
                    &handle,
                    filter,
                    subscription.grant,
                    true,
                    Some(indexed),
                );
            }
        }
        let away = Duration::from_secs(stored.idle_secs);
        // A 5.0 session's own interval, within `session.expiry_secs`.
        let cap = self
            .deps
            .expiry
            .map_or(0, |e| u32::try_from(e.as_secs()).unwrap_or(u32::MAX));
        let expiry = match stored.session_expiry {
            Some(secs) => crate::session::connect::session_expiry(secs, cap),
            None => self.deps.expiry,
        };
        let dormant = Dormant {
            username: stored.username,
            subscriptions: stored.subscriptions.into_boxed_slice(),
            inbound: stored.inbound.into_boxed_slice(),
            inbox,
            expires_at: expiry.map(|e| Instant::now() + e.saturating_sub(away)),
        };
        // A placeholder that `put_to_sleep` replaces.
        let entry = Entry {
            session_id,
            held: Held::Asleep(Box::new(Dormant {
                username: None,
                subscriptions: Box::new([]),
                inbound: Box::new([]),
                inbox: None,
                expires_at: None,
            })),
            durable: true,
            generation: 0,
            expiry,
        };
        self.insert(stored.client_id.clone(), entry);
        self.put_to_sleep(stored.client_id, session_id, dormant);
    }
}
