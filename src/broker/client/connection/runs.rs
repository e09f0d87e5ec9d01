//! Packets of one kind read together are handled together.
//!
//! Two kinds of packet come in long runs:
//! - **Acknowledgements.** A subscriber draining its queue sends a PUBACK
//!   (or PUBREC, PUBCOMP) for every message, and one read of its socket
//!   holds hundreds of them. Handed to the session one actix message each,
//!   every acknowledgement cost an envelope, a mailbox hand-off, a run of
//!   the session's state machine, a write to the client's outbound queue
//!   with a wake-up of its writer, and a write to the store's inbox. A run
//!   of them goes to the session as one event.
//! - **Publishes at QoS 0 and 1.** A publisher's read holds many. Routed
//!   one by one, each was an actix message to its shard, and when the shard
//!   runs on another worker, a wake-up of that worker's thread. A run of
//!   them is routed under one `RoutesHeldBack`: one message per shard.
//!
//! [`Runs`] groups up to `max_run` packets of one kind that the framed
//! reader yields one after another into one [`Read::Acks`] or
//! [`Read::Publishes`].
//!
//! After each run the stream lets the other tasks of its thread run before
//! it reads on (see `RunState::handed`): the session frees room in its
//! in-flight window as the acknowledgements arrive and sends the next
//! messages, while the client is still acknowledging. Without that pause
//! actix takes up to 16 items from a stream before it lets anything else
//! run, 16 runs here: a client whose window was full then got nothing until
//! a whole read of acknowledgements was handled, and live fan-in at QoS 1
//! fell by 13% (6 alternating runs, pinned), though each message cost less.
//!
//! Order is kept: a run ends before any packet not of its kind, which is
//! yielded after it, and when the reader has nothing more for now.

use crate::protocol::codec::CodecError;
use crate::protocol::{Packet, QoS};
use futures::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What the connection reads.
pub enum Read {
    /// A packet, or why the bytes are not one.
    One(Result<Packet, CodecError>),
    /// Acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP) read one after
    /// another, in order; never empty.
    Acks(Vec<Packet>),
    /// PUBLISHes at QoS 0 or 1 read one after another, in order; never
    /// empty. (QoS 2 goes through the session, one by one.)
    Publishes(Vec<Packet>),
}

/// The kinds of packet read in runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
enum Kind {
    #[default]
    Acks,
    Publishes,
}

impl Kind {
    fn of(packet: &Packet) -> Option<Kind> {
        match packet {
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                Some(Kind::Acks)
            }
            Packet::Publish(p) if p.qos != QoS::ExactlyOnce => Some(Kind::Publishes),
            _ => None,
        }
    }

    /// Most packets in one run.
    ///
    /// Acknowledgements: big drain (10 × 100,000 QoS 1, pinned): 1.0–1.1M
    /// deliveries/s handed on one by one, 1.44–1.51M in runs of 16,
    /// 1.52–1.60M in runs of 32; live fan-in at QoS 1 was as fast with runs
    /// of 16 as one by one.
    ///
    /// Publishes (pinned, 5 alternating runs): fan-out 1 → 100 at QoS 0
    /// did 5.74M deliveries/s in runs of 64, 3.58M in runs of 16 and 3.45M
    /// one by one; each session then takes 64 deliveries at a time and its
    /// writer writes them in one call. Fan-in at QoS 1 cost 1.02 µs of
    /// broker CPU per message in runs of 64, 1.10 in runs of 16.
    fn max_run(self) -> usize {
        match self {
            Kind::Acks => 16,
            Kind::Publishes => 64,
        }
    }
}

/// What the reader under a [`Runs`] says about its room: how many more
/// PUBLISHes may be read before it would stop reading (see
/// `net::outbound::Gated`). A run of publishes is not longer, so that
/// gathering them reads no more than handling each as it came.
pub trait Room {
    fn room(&self) -> usize;
}

impl<S> Room for crate::broker::net::outbound::Gated<S> {
    fn room(&self) -> usize {
        self.room()
    }
}

/// Groups the packets of a stream into runs (see the module's doc).
pub struct Runs<S> {
    inner: S,
    /// Boxed, and made at the first packet of a run: every connection holds
    /// this stream (boxed by actix), many never publish or acknowledge
    /// anything, and a packet is large.
    state: Option<Box<RunState>>,
}

#[derive(Default)]
struct RunState {
    run: Vec<Packet>,
    kind: Kind,
    /// The item read after a run, yielded (or begun as a run) after it.
    next: Option<Result<Packet, CodecError>>,
    /// The inner stream ended after the run.
    ended: bool,
    /// A run was just handed on: the next poll lets the other tasks of the
    /// thread run first (it wakes itself and returns `Pending`).
    handed: bool,
}

impl<S> Runs<S> {
    pub fn new(inner: S) -> Runs<S> {
        Runs { inner, state: None }
    }

    /// The run so far (not empty), as one item.
    fn take_run(&mut self) -> Poll<Option<Read>> {
        let state = self.state.get_or_insert_with(Box::default);
        state.handed = true;
        let run = std::mem::take(&mut state.run);
        Poll::Ready(Some(match state.kind {
            Kind::Acks => Read::Acks(run),
            Kind::Publishes => Read::Publishes(run),
        }))
    }
}

impl<S: Stream<Item = Result<Packet, CodecError>> + Room + Unpin> Stream for Runs<S> {
    type Item = Read;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Read>> {
        let this = &mut *self;
        if let Some(state) = &mut this.state {
            if std::mem::take(&mut state.handed) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        loop {
            let (run_len, kind) = this
                .state
                .as_ref()
                .map_or((0, Kind::Acks), |s| (s.run.len(), s.kind));
            let max_run = match kind {
                Kind::Acks => kind.max_run(),
                Kind::Publishes => kind.max_run().min(this.inner.room()),
            };
            if run_len > 0 && run_len >= max_run {
                return this.take_run();
            }
            // The packet held back after the last run comes first.
            let polled = match this.state.as_mut().and_then(|s| s.next.take()) {
                Some(item) => Poll::Ready(Some(item)),
                None if this.state.as_ref().is_some_and(|s| s.ended) => Poll::Ready(None),
                None => Pin::new(&mut this.inner).poll_next(cx),
            };
            match polled {
                Poll::Ready(Some(Ok(packet))) => match Kind::of(&packet) {
                    Some(of) if run_len == 0 || of == kind => {
                        let state = this.state.get_or_insert_with(Box::default);
                        state.kind = of;
                        state.run.push(packet);
                    }
                    _ if run_len == 0 => return Poll::Ready(Some(Read::One(Ok(packet)))),
                    _ => {
                        this.state.get_or_insert_with(Box::default).next = Some(Ok(packet));
                        return this.take_run();
                    }
                },
                Poll::Ready(Some(item)) if run_len == 0 => {
                    return Poll::Ready(Some(Read::One(item)))
                }
                Poll::Ready(Some(item)) => {
                    this.state.get_or_insert_with(Box::default).next = Some(item);
                    return this.take_run();
                }
                Poll::Ready(None) if run_len == 0 => return Poll::Ready(None),
                Poll::Ready(None) => {
                    this.state.get_or_insert_with(Box::default).ended = true;
                    return this.take_run();
                }
                Poll::Pending if run_len == 0 => return Poll::Pending,
                Poll::Pending => return this.take_run(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Ack, PacketId, Publish, TopicName};
    use futures::StreamExt;

    fn puback(id: u16) -> Result<Packet, CodecError> {
        Ok(Packet::PubAck(Ack::new(PacketId::new(id).unwrap())))
    }

    /// A PUBLISH whose payload is its number, so runs can be told apart.
    fn publish(n: u16, qos: QoS) -> Result<Packet, CodecError> {
        Ok(Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: TopicName::new("t").unwrap(),
            packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(n).unwrap()),
            payload: n.to_be_bytes().to_vec().into(),
            properties: None,
        }))
    }

    /// What one item of a stream of runs is: a run of acknowledgements or
    /// of publishes (their numbers), or a packet alone.
    #[derive(Debug, PartialEq)]
    enum Got {
        Acks(Vec<u16>),
        Publishes(Vec<u16>),
        One,
    }

    fn numbers(run: &[Packet]) -> Vec<u16> {
        run.iter()
            .map(|p| match p {
                Packet::PubAck(a) => a.packet_id.get(),
                Packet::Publish(p) => u16::from_be_bytes([p.payload[0], p.payload[1]]),
                _ => 0,
            })
            .collect()
    }

    /// A reader for the tests, with room for `room` more publishes.
    struct Reader<S> {
        inner: S,
        room: usize,
    }

    impl<S: Stream + Unpin> Stream for Reader<S> {
        type Item = S::Item;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
            Pin::new(&mut self.inner).poll_next(cx)
        }
    }

    impl<S> Room for Reader<S> {
        fn room(&self) -> usize {
            self.room
        }
    }

    /// What a stream of reads gives; `None` marks where the reader had
    /// nothing more.
    fn runs(items: Vec<Option<Result<Packet, CodecError>>>) -> Vec<Got> {
        runs_with_room(items, usize::MAX)
    }

    fn runs_with_room(items: Vec<Option<Result<Packet, CodecError>>>, room: usize) -> Vec<Got> {
        let mut items = items.into_iter();
        let inner = futures::stream::poll_fn(move |_| match items.next() {
            Some(Some(item)) => Poll::Ready(Some(item)),
            Some(None) => Poll::Pending,
            None => Poll::Ready(None),
        });
        let mut runs = Runs::new(Reader { inner, room });
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        for _ in 0..1000 {
            match runs.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(Read::Acks(run))) => out.push(Got::Acks(numbers(&run))),
                Poll::Ready(Some(Read::Publishes(run))) => out.push(Got::Publishes(numbers(&run))),
                Poll::Ready(Some(Read::One(_))) => out.push(Got::One),
                Poll::Ready(None) => break,
                Poll::Pending => {}
            }
        }
        out
    }

    #[test]
    fn acknowledgements_read_together_make_one_run_and_keep_their_order() {
        let got = runs(vec![
            Some(puback(1)),
            Some(puback(2)),
            Some(Ok(Packet::PingReq)),
            Some(puback(3)),
            None,
            Some(puback(4)),
            Some(puback(5)),
        ]);
        assert_eq!(
            got,
            vec![
                Got::Acks(vec![1, 2]),
                Got::One,
                Got::Acks(vec![3]),
                Got::Acks(vec![4, 5])
            ]
        );
    }

    /// Publishes at QoS 0 and 1 make runs of their own; a run ends at a
    /// packet of another kind, which begins the next run if it can, and
    /// QoS 2 (handled by the session) stays alone, in its place.
    #[test]
    fn publishes_make_runs_and_every_packet_keeps_its_place() {
        let got = runs(vec![
            Some(publish(1, QoS::AtMostOnce)),
            Some(publish(2, QoS::AtLeastOnce)),
            Some(puback(3)),
            Some(puback(4)),
            Some(publish(5, QoS::AtLeastOnce)),
            Some(publish(6, QoS::ExactlyOnce)),
            Some(publish(7, QoS::AtMostOnce)),
            None,
            Some(publish(8, QoS::AtMostOnce)),
        ]);
        assert_eq!(
            got,
            vec![
                Got::Publishes(vec![1, 2]),
                Got::Acks(vec![3, 4]),
                Got::Publishes(vec![5]),
                Got::One,
                Got::Publishes(vec![7]),
                Got::Publishes(vec![8]),
            ]
        );
    }

    /// After a run, the stream lets the other tasks of its thread (the
    /// session) run before it reads on: `Pending` once, having woken itself.
    #[test]
    fn after_a_run_the_stream_lets_others_run_once() {
        struct Wakes(std::sync::atomic::AtomicUsize);
        impl futures::task::ArcWake for Wakes {
            fn wake_by_ref(arc_self: &std::sync::Arc<Self>) {
                arc_self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let wakes = std::sync::Arc::new(Wakes(Default::default()));
        let waker = futures::task::waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut runs = Runs::new(Reader {
            inner: futures::stream::iter(vec![puback(1), puback(2)]),
            room: usize::MAX,
        });
        let first = runs.poll_next_unpin(&mut cx);
        assert!(matches!(first, Poll::Ready(Some(Read::Acks(run))) if run.len() == 2));
        assert!(runs.poll_next_unpin(&mut cx).is_pending());
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(matches!(runs.poll_next_unpin(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn runs_are_bounded() {
        for (kind, packet) in [
            (Kind::Acks, puback as fn(u16) -> Result<Packet, CodecError>),
            (Kind::Publishes, |n| publish(n, QoS::AtLeastOnce)),
        ] {
            let max = kind.max_run() as u16;
            let got = runs((1..=max + 1).map(|n| Some(packet(n))).collect());
            let expected = match kind {
                Kind::Acks => vec![Got::Acks((1..=max).collect()), Got::Acks(vec![max + 1])],
                Kind::Publishes => vec![
                    Got::Publishes((1..=max).collect()),
                    Got::Publishes(vec![max + 1]),
                ],
            };
            assert_eq!(got, expected, "{kind:?}");
        }
    }

    /// A run of publishes is no longer than the room left in the routing
    /// backlog (each publish takes a piece of it once handled), so the
    /// reader stops at the backlog's bound as it did handling each alone.
    /// Acknowledgements take one piece per run, whatever its length.
    #[test]
    fn a_run_of_publishes_fits_the_room_left() {
        let got = runs_with_room(
            (1..=5).map(|n| Some(publish(n, QoS::AtMostOnce))).collect(),
            2,
        );
        assert_eq!(got[0], Got::Publishes(vec![1, 2]));
        let got = runs_with_room((1..=5).map(|n| Some(puback(n))).collect(), 2);
        assert_eq!(got, vec![Got::Acks(vec![1, 2, 3, 4, 5])]);
    }
}
