//! The queues of persistent sessions: for each client, the messages of the
//! log (see `message_log`) it has not acknowledged yet, as runs of consecutive
//! message ids, and the state of those it has been sent.
//!
//! A message published to 10 persistent subscribers of one topic is one
//! row in `message_log`; each subscriber's queue grows its last run by one
//! id, in memory, and the run's row is written once per commit, however
//! many messages the commit holds. An acknowledgement moves the run's
//! first id on; the message leaves the log, in a range with its
//! neighbours, once no queue refers to it (see `coverage`).
//!
//! Three tables hold it (see `migrations/0005_message_log.sql`):
//! `queue_runs` (the runs), `inflight` (messages sent and not yet
//! acknowledged, with their packet ids) and `inbound_qos2` (QoS 2 packet
//! ids received and not yet released).
//!
//! [`Queues`] is the in-memory index of all of them, owned by the store
//! actor. Changes are applied to it as they arrive; [`Queues::take_writes`]
//! turns what changed since the last commit into rows to write, which
//! `queue_rows` writes (and loads at start).

mod dequeue;
mod held;

use super::coverage::Coverage;
use super::message_log::Logged;
use super::queue_rows::{QueueWrites, Run};
use crate::message::Message;
use crate::protocol::{PacketId, QoS};
use ahash::{AHashMap, AHashSet};
use bytestring::ByteString;

pub use crate::session::{MessageId, OutboundState};

/// How far a handshake has come: later steps rank higher, and a state
/// never moves back.
fn rank(state: OutboundState) -> u8 {
    match state {
        OutboundState::Queued => 0,
        OutboundState::AwaitingPubAck | OutboundState::AwaitingPubRec => 1,
        OutboundState::AwaitingPubComp => 2,
    }
}

/// A sent message's packet id and state, and whether its row is written.
#[derive(Debug, Clone, Copy)]
struct Sent {
    packet_id: PacketId,
    state: OutboundState,
    stored: bool,
}

#[derive(Default)]
struct ClientQueue {
    /// Sorted by `first`; disjoint.
    runs: Vec<Run>,
    /// The runs (by first id) whose rows exist in the database.
    stored: AHashSet<MessageId>,
    count: u64,
    bytes: u64,
    /// Ids the session holds in memory (sent, or read ahead).
    held: held::Held,
    sent: AHashMap<MessageId, Sent>,
    /// QoS 2 packet ids received and not released, and whether stored.
    inbound: AHashMap<PacketId, bool>,
    /// What changed since the last `take_writes` (ids may repeat): runs by
    /// their first id, sent states, and the stored sent states and inbound
    /// ids that went; `dirty` once the client is on the list of changed ones.
    changed_runs: Vec<MessageId>,
    changed_sent: Vec<MessageId>,
    gone_sent: Vec<MessageId>,
    changed_inbound: Vec<PacketId>,
    gone_inbound: Vec<PacketId>,
    dirty: bool,
}

impl ClientQueue {
    fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.inbound.is_empty() && self.sent.is_empty()
    }

    /// Marks the client changed; true the first time since the last
    /// `take_writes` (the caller then lists it).
    fn touch(&mut self) -> bool {
        !std::mem::replace(&mut self.dirty, true)
    }

    /// The index of the run holding `id`.
    fn find(&self, id: MessageId) -> Option<usize> {
        let i = self.runs.partition_point(|r| r.first <= id);
        (i > 0 && self.runs[i - 1].last >= id).then(|| i - 1)
    }

    /// The run that starts at `first`.
    fn starting_at(&self, first: MessageId) -> Option<&Run> {
        let i = self.runs.partition_point(|r| r.first < first);
        self.runs.get(i).filter(|r| r.first == first)
    }
}

/// The rows of one client's changes since the last `take_writes`.
fn changes_of(client_id: &ByteString, queue: &mut ClientQueue, w: &mut QueueWrites) {
    let mut runs = std::mem::take(&mut queue.changed_runs);
    runs.sort_unstable();
    runs.dedup();
    for first in runs {
        match queue.starting_at(first).copied() {
            Some(run) => {
                queue.stored.insert(first);
                w.runs.push((client_id.clone(), run));
            }
            None => {
                if queue.stored.remove(&first) {
                    w.run_deletes.push((client_id.clone(), first));
                }
            }
        }
    }
    let mut sent = std::mem::take(&mut queue.changed_sent);
    sent.sort_unstable();
    sent.dedup();
    for id in sent {
        if let Some(s) = queue.sent.get_mut(&id) {
            s.stored = true;
            w.sent
                .push((client_id.clone(), id, Some((s.packet_id, s.state))));
        }
    }
    let mut gone = std::mem::take(&mut queue.gone_sent);
    gone.sort_unstable();
    gone.dedup();
    for id in gone {
        if !queue.sent.contains_key(&id) {
            w.sent.push((client_id.clone(), id, None));
        }
    }
    let mut inbound = std::mem::take(&mut queue.changed_inbound);
    inbound.sort_unstable();
    inbound.dedup();
    for packet_id in inbound {
        if let Some(stored) = queue.inbound.get_mut(&packet_id) {
            if !*stored {
                *stored = true;
                w.inbound.push((client_id.clone(), packet_id, true));
            }
        }
    }
    let mut gone = std::mem::take(&mut queue.gone_inbound);
    gone.sort_unstable();
    gone.dedup();
    for packet_id in gone {
        if !queue.inbound.contains_key(&packet_id) {
            w.inbound.push((client_id.clone(), packet_id, false));
        }
    }
}

/// A message handed to a session from its queue (see [`Queues::page`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged {
    pub id: MessageId,
    pub qos: QoS,
    pub retain: bool,
    /// Its packet id and state, if it was sent before.
    pub sent: Option<(PacketId, OutboundState)>,
}

/// What happened to a message offered to a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    /// The queue is at its bound: dropped (its reference released).
    Full,
}

#[derive(Default)]
pub struct Queues {
    clients: AHashMap<ByteString, ClientQueue>,
    /// Messages queued in all (the sum of the clients' counts).
    total: u64,
    coverage: Coverage,
    /// Clients whose queues changed since the last `take_writes`.
    dirty: Vec<ByteString>,
    /// Log rows to insert: appended since the last `take_writes`.
    appended: Vec<(MessageId, Logged)>,
    /// Ids whose last reference went, since the last `take_writes`.
    freed: Vec<(MessageId, MessageId)>,
}

impl Queues {
    /// A message enters the log with `copies` references, one for each
    /// durable copy on its way to a queue: each is either queued
    /// ([`Queues::enqueue`]) or released ([`Queues::release`]).
    pub fn append(&mut self, id: MessageId, message: &Message, copies: u32) {
        self.coverage.add(id, id, copies);
        self.appended.push((
            id,
            Logged {
                topic: message.topic.clone(),
                payload: message.payload.clone(),
                qos: message.qos,
                properties: message.properties.clone(),
            },
        ));
    }

    /// One of a message's copies was dropped before reaching a queue.
    pub fn release(&mut self, id: MessageId) {
        self.coverage.sub(id, id, 1, &mut self.freed);
    }

    /// Queues a copy of message `id` for `client_id` (its reference moves
    /// to the queue). `held`: the session holds it in memory, and is not
    /// dropped at a bound; otherwise it is dropped at `max_count` messages
    /// or `max_bytes` bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &mut self,
        client_id: &ByteString,
        id: MessageId,
        qos: QoS,
        retain: bool,
        size: u64,
        held: bool,
        max_count: u64,
        max_bytes: u64,
    ) -> Enqueued {
        let queue = self.clients.entry(client_id.clone()).or_default();
        if !held && (queue.count >= max_count || queue.bytes + size > max_bytes) {
            self.coverage.sub(id, id, 1, &mut self.freed);
            return Enqueued::Full;
        }
        if queue.find(id).is_some() {
            // Already queued (a resend of the same copy): one reference is enough.
            self.coverage.sub(id, id, 1, &mut self.freed);
            if held {
                queue.held.insert(id);
            }
            return Enqueued::Queued;
        }
        queue.count += 1;
        self.total += 1;
        queue.bytes += size;
        if held {
            queue.held.insert(id);
        }
        if queue.touch() {
            self.dirty.push(client_id.clone());
        }
        let dirty = &mut queue.changed_runs;
        let i = queue.runs.partition_point(|r| r.first < id);
        let joins_prev = i > 0 && {
            let p = &queue.runs[i - 1];
            p.last + 1 == id && p.qos == qos && p.retain == retain
        };
        let joins_next = i < queue.runs.len() && {
            let n = &queue.runs[i];
            n.first == id + 1 && n.qos == qos && n.retain == retain
        };
        match (joins_prev, joins_next) {
            (true, true) => {
                let next = queue.runs.remove(i);
                let prev = &mut queue.runs[i - 1];
                prev.last = next.last;
                prev.bytes += size + next.bytes;
                dirty.push(prev.first);
                dirty.push(next.first);
            }
            (true, false) => {
                let prev = &mut queue.runs[i - 1];
                prev.last = id;
                prev.bytes += size;
                dirty.push(prev.first);
            }
            (false, true) => {
                // The run's key (its first id) changes: a row goes, one comes.
                let next = &mut queue.runs[i];
                dirty.push(next.first);
                next.first = id;
                next.bytes += size;
                dirty.push(id);
            }
            (false, false) => {
                queue.runs.insert(
                    i,
                    Run {
                        first: id,
                        last: id,
                        qos,
                        retain,
                        bytes: size,
                    },
                );
                dirty.push(id);
            }
        }
        Enqueued::Queued
    }

    /// Records that message `id` was sent to `client_id` with `packet_id`,
    /// or moved on to `state`. A state never moves back.
    pub fn set_sent(
        &mut self,
        client_id: &ByteString,
        id: MessageId,
        packet_id: PacketId,
        state: OutboundState,
    ) {
        let Some(queue) = self.clients.get_mut(client_id) else {
            return;
        };
        if queue.find(id).is_none() {
            return;
        }
        let entry = queue.sent.entry(id).or_insert(Sent {
            packet_id,
            state,
            stored: false,
        });
        if rank(state) >= rank(entry.state) {
            entry.packet_id = packet_id;
            entry.state = state;
        }
        queue.changed_sent.push(id);
        if queue.touch() {
            self.dirty.push(client_id.clone());
        }
    }

    /// A QoS 2 packet id received (`awaiting` true) or released.
    pub fn set_inbound(&mut self, client_id: &ByteString, packet_id: PacketId, awaiting: bool) {
        let queue = self.clients.entry(client_id.clone()).or_default();
        if queue.touch() {
            self.dirty.push(client_id.clone());
        }
        if awaiting {
            queue.inbound.entry(packet_id).or_insert(false);
            queue.changed_inbound.push(packet_id);
        } else if let Some(true) = queue.inbound.remove(&packet_id) {
            queue.gone_inbound.push(packet_id);
        }
    }

    /// A session is deleted: its queue goes, and its rows with it (the
    /// caller deletes them by client id). Its messages lose a reference each.
    pub fn delete_client(&mut self, client_id: &ByteString) {
        let Some(queue) = self.clients.remove(client_id) else {
            return;
        };
        self.total -= queue.count;
        for run in &queue.runs {
            self.coverage.sub(run.first, run.last, 1, &mut self.freed);
        }
        // Its changes go with it: its rows are deleted by client id.
    }

    /// The session no longer holds anything in memory (its client went
    /// away, or a new session actor starts): every message is to be paged
    /// in again.
    pub fn unhold(&mut self, client_id: &ByteString) {
        if let Some(q) = self.clients.get_mut(client_id) {
            q.held.clear();
        }
    }

    /// Gives back ids handed out by `page` that the caller did not take.
    pub fn unhold_ids(&mut self, client_id: &ByteString, ids: &[MessageId]) {
        if let Some(q) = self.clients.get_mut(client_id) {
            for id in ids {
                q.held.remove(*id);
            }
        }
    }

    /// The first `max` messages of `client_id`'s queue the session does not
    /// hold yet, in id order; they count as held from now on.
    pub fn page(&mut self, client_id: &ByteString, max: usize) -> Vec<Paged> {
        let Some(queue) = self.clients.get_mut(client_id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        'runs: for run in &queue.runs {
            let mut id = queue.held.next_absent(run.first);
            while id <= run.last {
                if out.len() >= max {
                    break 'runs;
                }
                out.push(Paged {
                    id,
                    qos: run.qos,
                    retain: run.retain,
                    sent: queue.sent.get(&id).map(|s| (s.packet_id, s.state)),
                });
                id = queue.held.next_absent(id + 1);
            }
        }
        for p in &out {
            queue.held.insert(p.id);
        }
        out
    }

    /// Messages queued for `client_id`, and their bytes.
    pub fn len(&self, client_id: &ByteString) -> (u64, u64) {
        self.clients
            .get(client_id)
            .map_or((0, 0), |q| (q.count, q.bytes))
    }

    /// Messages of `client_id`'s queue the session does not hold.
    pub fn unheld(&self, client_id: &ByteString) -> u64 {
        self.clients
            .get(client_id)
            .map_or(0, |q| q.count.saturating_sub(q.held.len()))
    }

    /// Messages queued for all clients (copies), for metrics.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The inbound QoS 2 packet ids of `client_id` awaiting PUBREL.
    pub fn inbound(&self, client_id: &ByteString) -> Vec<PacketId> {
        self.clients
            .get(client_id)
            .map(|q| q.inbound.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The spans of the log's reference counts (memory use, for metrics).
    pub fn coverage_spans(&self) -> usize {
        self.coverage.spans()
    }

    /// Whether any queue still refers to message `id`.
    pub fn is_referenced(&self, id: MessageId) -> bool {
        self.coverage.count(id) > 0
    }

    /// Ranges of ids whose last reference went since the last call (the
    /// caller forgets their contents), without taking them.
    pub fn freed(&self) -> &[(MessageId, MessageId)] {
        &self.freed
    }

    /// Rows to write for everything that changed since the last call, which
    /// then count as written (a failed commit is tried again with the same
    /// rows, until it commits).
    pub fn take_writes(&mut self) -> QueueWrites {
        let mut w = QueueWrites::default();
        // A message appended and released within one commit is never written.
        let appended = std::mem::take(&mut self.appended);
        let inserted: AHashSet<MessageId> = appended
            .iter()
            .filter(|(id, ..)| self.coverage.count(*id) > 0)
            .map(|(id, ..)| *id)
            .collect();
        let written_now: AHashSet<MessageId> = appended.iter().map(|(id, ..)| *id).collect();
        w.log_inserts = appended
            .into_iter()
            .filter(|(id, ..)| inserted.contains(id))
            .collect();
        w.log_inserts.sort_unstable_by_key(|(id, ..)| *id);
        w.forgotten = std::mem::take(&mut self.freed);
        for &(first, last) in &w.forgotten {
            if written_now.is_empty() {
                w.log_deletes.push((first, last));
                continue;
            }
            // Only the ids of the range that an earlier commit wrote.
            let mut start = None;
            for id in first..=last {
                match (written_now.contains(&id), start) {
                    (false, None) => start = Some(id),
                    (true, Some(s)) => {
                        w.log_deletes.push((s, id - 1));
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = start {
                w.log_deletes.push((s, last));
            }
        }
        for client_id in std::mem::take(&mut self.dirty) {
            let Some(queue) = self.clients.get_mut(&client_id) else {
                continue; // deleted since
            };
            if !std::mem::take(&mut queue.dirty) {
                continue; // listed twice (deleted and made again)
            }
            changes_of(&client_id, queue, &mut w);
            if queue.is_empty() && queue.stored.is_empty() {
                self.clients.remove(&client_id);
            }
        }
        w
    }

    /// At start: a run as stored.
    pub fn load_run(&mut self, client_id: ByteString, run: Run) {
        self.coverage.add(run.first, run.last, 1);
        let queue = self.clients.entry(client_id).or_default();
        queue.count += run.messages();
        self.total += run.messages();
        queue.bytes += run.bytes;
        queue.stored.insert(run.first);
        let i = queue.runs.partition_point(|r| r.first < run.first);
        queue.runs.insert(i, run);
    }

    /// At start: a sent message's state as stored.
    pub fn load_sent(
        &mut self,
        client_id: &ByteString,
        id: MessageId,
        packet_id: PacketId,
        state: OutboundState,
    ) {
        if let Some(queue) = self.clients.get_mut(client_id) {
            queue.sent.insert(
                id,
                Sent {
                    packet_id,
                    state,
                    stored: true,
                },
            );
        }
    }

    /// At start: an inbound QoS 2 packet id as stored.
    pub fn load_inbound(&mut self, client_id: ByteString, packet_id: PacketId) {
        self.clients
            .entry(client_id)
            .or_default()
            .inbound
            .insert(packet_id, true);
    }

    /// At start: the ids in `from..=to` no queue refers to.
    pub fn unreferenced(&self, from: MessageId, to: MessageId) -> Vec<(MessageId, MessageId)> {
        self.coverage.gaps(from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TopicName;
    use bytes::Bytes;

    fn msg(n: u8) -> Message {
        Message {
            topic: TopicName::new("t".to_string()).unwrap(),
            payload: Bytes::from(vec![n; 9]),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: None,
        }
    }

    fn c(s: &str) -> ByteString {
        ByteString::from(s.to_string())
    }

    fn enqueue(q: &mut Queues, client: &str, id: MessageId) -> Enqueued {
        q.enqueue(
            &c(client),
            id,
            QoS::AtLeastOnce,
            false,
            10,
            false,
            100_000,
            1 << 30,
        )
    }

    /// The runs a write holds, as (first, last, bytes), in order.
    fn runs_written(w: &QueueWrites) -> Vec<(MessageId, MessageId, u64)> {
        let mut runs: Vec<_> = w
            .runs
            .iter()
            .map(|(_, r)| (r.first, r.last, r.bytes))
            .collect();
        runs.sort();
        runs
    }

    /// One message for ten offline sessions: one log row, one run row per
    /// session; a thousand more: still one run row each, updated.
    #[test]
    fn a_topic_queued_for_ten_sessions_is_one_run_each() {
        let mut q = Queues::default();
        for id in 1..=1000 {
            q.append(id, &msg(1), 10);
            for s in 0..10 {
                assert_eq!(enqueue(&mut q, &format!("s{s}"), id), Enqueued::Queued);
            }
        }
        let w = q.take_writes();
        assert_eq!(w.log_inserts.len(), 1000);
        assert_eq!(w.runs.len(), 10);
        assert!(w
            .runs
            .iter()
            .all(|(_, r)| (r.first, r.last, r.bytes) == (1, 1000, 10_000)));
        assert_eq!(q.len(&c("s3")), (1000, 10_000));
        assert_eq!(q.coverage_spans(), 1);
    }

    /// Acknowledged in order, by every session: the log's rows go in one
    /// range, and the runs' rows are deleted.
    #[test]
    fn acknowledged_messages_leave_the_log_in_ranges() {
        let mut q = Queues::default();
        for id in 1..=100 {
            q.append(id, &msg(1), 2);
            enqueue(&mut q, "a", id);
            enqueue(&mut q, "b", id);
        }
        q.take_writes();
        for id in 1..=60 {
            assert!(q.dequeue(&c("a"), id, 10));
        }
        let w = q.take_writes();
        assert!(w.log_deletes.is_empty(), "b still needs them");
        assert_eq!(w.runs.len(), 1);
        assert_eq!((w.runs[0].1.first, w.runs[0].1.last), (61, 100));
        for id in 1..=100 {
            q.dequeue(&c("b"), id, 10);
        }
        for id in 61..=100 {
            q.dequeue(&c("a"), id, 10);
        }
        let w = q.take_writes();
        assert_eq!(w.log_deletes, [(1, 100)]);
        assert_eq!(w.run_deletes.len(), 2);
        assert!(w.runs.is_empty());
        assert_eq!(q.total(), 0);
        assert_eq!(q.coverage_spans(), 0);
    }

    /// Queued and acknowledged before a commit: nothing is written at all.
    #[test]
    fn a_message_acknowledged_before_its_commit_writes_nothing() {
        let mut q = Queues::default();
        q.append(1, &msg(1), 1);
        q.enqueue(&c("a"), 1, QoS::AtLeastOnce, false, 10, true, 100, 1000);
        q.set_sent(
            &c("a"),
            1,
            PacketId::new(7).unwrap(),
            OutboundState::AwaitingPubAck,
        );
        q.dequeue(&c("a"), 1, 10);
        let w = q.take_writes();
        assert!(
            w.is_empty(),
            "{:?} {:?} {:?}",
            w.log_deletes,
            w.run_deletes,
            w.sent
        );
    }

    #[test]
    fn an_acknowledgement_out_of_order_splits_a_run() {
        let mut q = Queues::default();
        for id in 1..=10 {
            q.append(id, &msg(1), 1);
            enqueue(&mut q, "a", id);
        }
        q.take_writes();
        q.dequeue(&c("a"), 5, 10);
        let w = q.take_writes();
        assert_eq!(runs_written(&w), [(1, 4, 40), (6, 10, 50)]);
        assert_eq!(w.log_deletes, [(5, 5)]);
        let paged: Vec<_> = q.page(&c("a"), 100).iter().map(|p| p.id).collect();
        assert_eq!(paged, [1, 2, 3, 4, 6, 7, 8, 9, 10]);
    }

    /// A row of acknowledgements taken in one step leaves the queues, the
    /// log and the coverage exactly as the same acknowledgements one by one.
    mod dequeue_range {
        use super::*;
        use proptest::prelude::*;

        /// Two sessions queued for some of 40 messages (gaps make several
        /// runs), then rows of acknowledgements of either.
        fn build(queued: &[(bool, bool)]) -> Queues {
            let mut q = Queues::default();
            for (i, &(a, b)) in queued.iter().enumerate() {
                let id = i as MessageId + 1;
                q.append(id, &msg(1), u32::from(a) + u32::from(b));
                if a {
                    enqueue(&mut q, "a", id);
                }
                if b {
                    enqueue(&mut q, "b", id);
                }
            }
            q.take_writes();
            q
        }

        fn log_deletes(w: &QueueWrites) -> Vec<MessageId> {
            let mut ids: Vec<_> = w.log_deletes.iter().flat_map(|&(a, b)| a..=b).collect();
            ids.sort_unstable();
            ids
        }

        proptest! {
            #[test]
            fn same_as_one_by_one(
                queued in proptest::collection::vec((any::<bool>(), any::<bool>()), 40),
                rows in proptest::collection::vec((any::<bool>(), 1u64..=40, 0u64..12), 0..8),
            ) {
                let (mut one, mut range) = (build(&queued), build(&queued));
                for &(to_a, first, len) in &rows {
                    let client = c(if to_a { "a" } else { "b" });
                    let last = (first + len).min(40);
                    // Sizes that differ from message to message.
                    let sizes: Vec<u32> = (first..=last).map(|id| (id % 7 + 1) as u32).collect();
                    for (id, &size) in (first..=last).zip(&sizes) {
                        one.dequeue(&client, id, size);
                    }
                    range.dequeue_range(&client, first, &sizes);
                }
                for client in ["a", "b"] {
                    let client = c(client);
                    prop_assert_eq!(one.len(&client), range.len(&client));
                    let ids = |q: &mut Queues| q.page(&client, 100).iter().map(|p| p.id).collect::<Vec<_>>();
                    prop_assert_eq!(ids(&mut one), ids(&mut range));
                }
                prop_assert_eq!(one.total(), range.total());
                prop_assert_eq!(one.coverage_spans(), range.coverage_spans());
                prop_assert_eq!(log_deletes(&one.take_writes()), log_deletes(&range.take_writes()));
            }
        }
    }

    /// A row across two runs of different sizes takes from each run the
    /// bytes of its own messages (the runs' bytes are what a restart
    /// counts the queue's bytes from).
    #[test]
    fn a_row_across_runs_takes_each_runs_own_bytes() {
        let mut q = Queues::default();
        for id in 1..=10 {
            q.append(id, &msg(1), 1);
            let (qos, size) = if id <= 6 {
                (QoS::AtLeastOnce, 1000)
            } else {
                (QoS::ExactlyOnce, 10)
            };
            q.enqueue(&c("a"), id, qos, false, size, false, 100, 1 << 20);
        }
        q.take_writes();
        q.dequeue_range(&c("a"), 5, &[1000, 1000, 10, 10]);
        let w = q.take_writes();
        assert_eq!(runs_written(&w), [(1, 4, 4000), (9, 10, 20)]);
        assert_eq!(q.len(&c("a")), (6, 4020));
    }

    #[test]
    fn a_row_of_acknowledgements_cuts_the_run_once() {
        let mut q = Queues::default();
        for id in 1..=10 {
            q.append(id, &msg(1), 1);
            enqueue(&mut q, "a", id);
        }
        q.take_writes();
        q.dequeue_range(&c("a"), 4, &[10, 10, 10]);
        let w = q.take_writes();
        assert_eq!(runs_written(&w), [(1, 3, 30), (7, 10, 40)]);
        assert_eq!(w.log_deletes, [(4, 6)]);
        assert_eq!(q.len(&c("a")), (7, 70));
    }

    #[test]
    fn page_skips_what_the_session_holds_and_a_late_lower_id_is_still_paged() {
        let mut q = Queues::default();
        for id in [1, 2, 3, 5, 6] {
            q.append(id, &msg(1), 1);
            enqueue(&mut q, "a", id);
        }
        assert_eq!(
            q.page(&c("a"), 2).iter().map(|p| p.id).collect::<Vec<_>>(),
            [1, 2]
        );
        // Message 4 was routed before 5 but reaches the queue after it.
        q.append(4, &msg(1), 1);
        enqueue(&mut q, "a", 4);
        assert_eq!(
            q.page(&c("a"), 10).iter().map(|p| p.id).collect::<Vec<_>>(),
            [3, 4, 5, 6]
        );
        assert!(q.page(&c("a"), 10).is_empty());
        q.unhold(&c("a"));
        assert_eq!(q.page(&c("a"), 10).len(), 6);
        let w = q.take_writes();
        assert_eq!(w.runs.len(), 1, "4 joined the runs on both sides");
        assert_eq!((w.runs[0].1.first, w.runs[0].1.last), (1, 6));
    }

    #[test]
    fn a_full_queue_drops_new_messages_but_not_what_the_session_holds() {
        let mut q = Queues::default();
        for id in 1..=3 {
            q.append(id, &msg(1), 1);
            assert_eq!(
                q.enqueue(&c("a"), id, QoS::AtLeastOnce, false, 10, false, 2, 1000),
                if id <= 2 {
                    Enqueued::Queued
                } else {
                    Enqueued::Full
                }
            );
        }
        q.append(4, &msg(1), 1);
        assert_eq!(
            q.enqueue(&c("a"), 4, QoS::AtLeastOnce, false, 10, true, 2, 1000),
            Enqueued::Queued
        );
        let w = q.take_writes();
        assert_eq!(
            w.log_inserts.iter().map(|(id, ..)| *id).collect::<Vec<_>>(),
            [1, 2, 4],
            "the dropped message is never written"
        );
    }

    #[test]
    fn sent_state_moves_forward_and_is_paged_with_the_message() {
        let mut q = Queues::default();
        q.append(1, &msg(1), 1);
        q.enqueue(&c("a"), 1, QoS::ExactlyOnce, false, 10, true, 10, 1000);
        let pid = PacketId::new(3).unwrap();
        q.set_sent(&c("a"), 1, pid, OutboundState::AwaitingPubComp);
        q.set_sent(&c("a"), 1, pid, OutboundState::AwaitingPubRec);
        let w = q.take_writes();
        assert_eq!(w.sent.len(), 1);
        assert_eq!(w.sent[0].2, Some((pid, OutboundState::AwaitingPubComp)));
        q.unhold(&c("a"));
        assert_eq!(
            q.page(&c("a"), 1)[0].sent,
            Some((pid, OutboundState::AwaitingPubComp))
        );
        q.dequeue(&c("a"), 1, 10);
        let w = q.take_writes();
        assert_eq!(w.sent[0].2, None, "the stored row is deleted");
    }

    #[test]
    fn deleting_a_session_releases_its_messages() {
        let mut q = Queues::default();
        for id in 1..=5 {
            q.append(id, &msg(1), 2);
            enqueue(&mut q, "a", id);
            enqueue(&mut q, "b", id);
        }
        q.set_inbound(&c("a"), PacketId::new(1).unwrap(), true);
        q.take_writes();
        q.delete_client(&c("a"));
        let w = q.take_writes();
        assert!(w.log_deletes.is_empty());
        assert!(
            w.runs.is_empty() && w.run_deletes.is_empty(),
            "the caller deletes by client"
        );
        q.delete_client(&c("b"));
        assert_eq!(q.take_writes().log_deletes, [(1, 5)]);
        assert!(q.inbound(&c("a")).is_empty());
    }

    #[test]
    fn loaded_runs_are_counted_and_unreferenced_ids_found() {
        let mut q = Queues::default();
        let run = Run {
            first: 4,
            last: 9,
            qos: QoS::AtLeastOnce,
            retain: false,
            bytes: 60,
        };
        q.load_run(c("a"), run);
        q.load_run(
            c("b"),
            Run {
                first: 12,
                last: 12,
                bytes: 5,
                ..run
            },
        );
        assert_eq!(q.len(&c("a")), (6, 60));
        assert_eq!(q.unreferenced(1, 14), [(1, 3), (10, 11), (13, 14)]);
        for id in 4..=9 {
            q.dequeue(&c("a"), id, 10);
        }
        let w = q.take_writes();
        assert_eq!(w.run_deletes, [(c("a"), 4)]);
        assert_eq!(w.log_deletes, [(4, 9)]);
    }
}
