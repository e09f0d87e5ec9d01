//! Acknowledgements read together go to the session together.
//!
//! A subscriber draining its queue sends a PUBACK (or PUBREC, PUBCOMP) for
//! every message, and one read of its socket holds hundreds of them. Handed
//! to the session one actix message each, every acknowledgement cost an
//! envelope, a mailbox hand-off, a run of the session's state machine, a
//! write to the client's outbound queue with a wake-up of its writer, and a
//! write to the store's inbox. [`AckRuns`] groups up to `MAX_RUN`
//! acknowledgements that the framed reader yields one after another into
//! one [`Read::Acks`], which the session handles as one event.
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
//! Order is kept: a run ends before any other packet, which is yielded
//! after it, and when the reader has nothing more for now.

use crate::protocol::codec::CodecError;
use crate::protocol::Packet;
use futures::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Most acknowledgements in one run. Big drain (10 × 100,000 QoS 1,
/// pinned): 1.0–1.1M deliveries/s handed on one by one, 1.44–1.51M in runs
/// of 16, 1.52–1.60M in runs of 32; live fan-in at QoS 1 was as fast with
/// runs of 16 as one by one.
const MAX_RUN: usize = 16;

/// What the connection reads.
pub enum Read {
    /// A packet, or why the bytes are not one.
    One(Result<Packet, CodecError>),
    /// Acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP) read one after
    /// another, in order; never empty.
    Acks(Vec<Packet>),
}

fn is_ack(packet: &Packet) -> bool {
    matches!(
        packet,
        Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_)
    )
}

/// Groups the acknowledgements of a stream of packets (see the module's doc).
pub struct AckRuns<S> {
    inner: S,
    /// Boxed, and made at the first acknowledgement: every connection holds
    /// this stream (boxed by actix), most never acknowledge anything, and a
    /// packet is large.
    state: Option<Box<RunState>>,
}

#[derive(Default)]
struct RunState {
    run: Vec<Packet>,
    /// The item read after a run, yielded after it.
    next: Option<Result<Packet, CodecError>>,
    /// The inner stream ended after the run.
    ended: bool,
    /// A run was just handed on: the next poll lets the other tasks of the
    /// thread run first (it wakes itself and returns `Pending`).
    handed: bool,
}

impl<S> AckRuns<S> {
    pub fn new(inner: S) -> AckRuns<S> {
        AckRuns { inner, state: None }
    }

    /// The run so far (not empty), as one item.
    fn take_run(&mut self) -> Poll<Option<Read>> {
        let state = self.state.get_or_insert_with(Box::default);
        state.handed = true;
        Poll::Ready(Some(Read::Acks(std::mem::take(&mut state.run))))
    }
}

impl<S: Stream<Item = Result<Packet, CodecError>> + Unpin> Stream for AckRuns<S> {
    type Item = Read;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Read>> {
        let this = &mut *self;
        if let Some(state) = &mut this.state {
            if std::mem::take(&mut state.handed) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if let Some(item) = state.next.take() {
                return Poll::Ready(Some(Read::One(item)));
            }
            if state.ended {
                return Poll::Ready(None);
            }
        }
        loop {
            let run_len = this.state.as_ref().map_or(0, |s| s.run.len());
            if run_len >= MAX_RUN {
                return this.take_run();
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(packet))) if is_ack(&packet) => {
                    this.state.get_or_insert_with(Box::default).run.push(packet)
                }
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
    use crate::protocol::PacketId;
    use futures::StreamExt;

    fn puback(id: u16) -> Result<Packet, CodecError> {
        Ok(Packet::PubAck(PacketId::new(id).unwrap()))
    }

    /// What a stream of reads gives, as ack runs (their ids) and other
    /// packets (`None`); `Pending` marks where the reader had nothing more.
    fn runs(items: Vec<Option<Result<Packet, CodecError>>>) -> Vec<Result<Vec<u16>, ()>> {
        let mut items = items.into_iter();
        let inner = futures::stream::poll_fn(move |_| match items.next() {
            Some(Some(item)) => Poll::Ready(Some(item)),
            Some(None) => Poll::Pending,
            None => Poll::Ready(None),
        });
        let mut runs = AckRuns::new(inner);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        for _ in 0..100 {
            match runs.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(Read::Acks(acks))) => out.push(Ok(acks
                    .iter()
                    .map(|p| match p {
                        Packet::PubAck(id) => id.get(),
                        _ => 0,
                    })
                    .collect())),
                Poll::Ready(Some(Read::One(_))) => out.push(Err(())),
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
            vec![Ok(vec![1, 2]), Err(()), Ok(vec![3]), Ok(vec![4, 5])]
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
        let mut runs = AckRuns::new(futures::stream::iter(vec![puback(1), puback(2)]));
        let first = runs.poll_next_unpin(&mut cx);
        assert!(matches!(first, Poll::Ready(Some(Read::Acks(run))) if run.len() == 2));
        assert!(runs.poll_next_unpin(&mut cx).is_pending());
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(matches!(runs.poll_next_unpin(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn a_run_is_bounded() {
        let got = runs(
            (1..=(MAX_RUN as u16 + 1))
                .map(|id| Some(puback(id)))
                .collect(),
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().len(), MAX_RUN);
        assert_eq!(got[1], Ok(vec![MAX_RUN as u16 + 1]));
    }
}
