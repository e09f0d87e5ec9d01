//! Acknowledgements read together go to the session together.
//!
//! A subscriber draining its queue sends a PUBACK (or PUBREC, PUBCOMP) for
//! every message, and one read of its socket holds hundreds of them. Handed
//! to the session one actix message each, every acknowledgement cost an
//! envelope, a mailbox hand-off, a run of the session's state machine, a
//! write to the client's outbound queue with a wake-up of its writer, and a
//! write to the store's inbox. [`AckRuns`] groups the acknowledgements that
//! the framed reader yields one after another into one [`Read::Acks`], which
//! the session handles as one event: one message, one run, one wake-up.
//!
//! Order is kept: a run ends before any other packet, which is yielded
//! after it, and when the reader has nothing more for now.

use crate::protocol::codec::CodecError;
use crate::protocol::Packet;
use futures::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Most acknowledgements in one run (the session handles a run in one go).
const MAX_RUN: usize = 256;

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
    run: Vec<Packet>,
    /// The item read after a run, yielded after it.
    next: Option<Result<Packet, CodecError>>,
    /// The inner stream has ended.
    ended: bool,
}

impl<S> AckRuns<S> {
    pub fn new(inner: S) -> AckRuns<S> {
        AckRuns {
            inner,
            run: Vec::new(),
            next: None,
            ended: false,
        }
    }

    fn take_run(&mut self) -> Poll<Option<Read>> {
        Poll::Ready(Some(Read::Acks(std::mem::take(&mut self.run))))
    }
}

impl<S: Stream<Item = Result<Packet, CodecError>> + Unpin> Stream for AckRuns<S> {
    type Item = Read;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Read>> {
        if let Some(item) = self.next.take() {
            return Poll::Ready(Some(Read::One(item)));
        }
        while !self.ended && self.run.len() < MAX_RUN {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(packet))) if is_ack(&packet) => self.run.push(packet),
                Poll::Ready(Some(item)) if self.run.is_empty() => {
                    return Poll::Ready(Some(Read::One(item)))
                }
                Poll::Ready(Some(item)) => {
                    self.next = Some(item);
                    return self.take_run();
                }
                Poll::Ready(None) => self.ended = true,
                Poll::Pending if self.run.is_empty() => return Poll::Pending,
                Poll::Pending => return self.take_run(),
            }
        }
        match self.run.is_empty() {
            true => Poll::Ready(None),
            false => self.take_run(),
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
        assert_eq!(got, vec![Ok(vec![1, 2]), Err(()), Ok(vec![3]), Ok(vec![4, 5])]);
    }

    #[test]
    fn a_run_is_bounded() {
        let got = runs((1..=(MAX_RUN as u16 + 1)).map(|id| Some(puback(id))).collect());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().len(), MAX_RUN);
        assert_eq!(got[1], Ok(vec![MAX_RUN as u16 + 1]));
    }
}
