//! The bounded path from the broker to one socket.
//!
//! Sessions and the connection push packets into an [`Outbound`]; a writer
//! task owns the socket's write half, takes everything waiting and writes
//! it with one `write_all` per wake-up. actix's own
//! mailboxes and `FramedWrite` are unbounded in practice, so the bound lives
//! here: the bytes waiting are counted, QoS 0 deliveries are dropped (and
//! counted) while they exceed `max_outbound_bytes`, QoS 1/2 deliveries are
//! bounded by the session's in-flight window, and the connection stops
//! reading from its socket ([`ReadGate`]) until the writer has drained, so a
//! client that sends faster than it reads is slowed by TCP, not buffered.

use super::backlog::RoutingBacklog;
use crate::broker::held_back::{self, HeldBack};
use crate::broker::ops::metrics::Metrics;
use crate::protocol::OutboundAliases;
use crate::protocol::{Packet, ProtocolVersion};
use bytes::BytesMut;
use futures::task::AtomicWaker;
use futures::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use tokio::io::AsyncWriteExt;

/// Bytes gathered before one `write_all`: big enough to amortise the system
/// call over many small publishes, small enough to keep latency low.
const WRITE_BATCH: usize = 64 * 1024;

/// Queue capacity a busy writer keeps; beyond it, memory is given back.
const IDLE_QUEUE_CAPACITY: usize = 64;

/// Packets per wake-up from which a writer counts as busy: it keeps its
/// buffers between wake-ups and lets producers run before it writes;
/// below it, it keeps nothing and writes at once.
const BUSY_BATCH: usize = 4;

/// Times a writer with only acknowledgements to write lets the other tasks
/// on its arbiter run first: the subscriber's session, then its writer.
const ACK_YIELDS: usize = 2;

/// Packets per wake-up from which a writer lets producers run twice.
/// Measured (fan-out 1 → 100, pinned): one yield 1.76M → 2.35M
/// deliveries/s, two 2.66M; yielding for as long as the queue grows was
/// slower than either.
const VERY_BUSY_BATCH: usize = 32;

/// One client's outbound queue, queue by its `Outbound` handles, its
/// writer task and its `ReadGate`.
struct Queue {
    /// Packets waiting for the writer. A plain queue behind a mutex: it
    /// allocates nothing until the first packet (an idle connection costs
    /// no channel block), and the writer takes everything waiting in one
    /// swap, which is also its batch.
    packets: std::sync::Mutex<VecDeque<Packet>>,
    writer: AtomicWaker,
    queued_bytes: AtomicUsize,
    limit: usize,
    /// No more packets are accepted; the writer flushes and shuts down.
    closed: AtomicBool,
    reader: AtomicWaker,
    /// The client's protocol version ([`ProtocolVersion::index`]), which
    /// packets are written in: set once its CONNECT is read, before any
    /// packet is queued.
    version: AtomicU8,
    /// 5.0: the client's Maximum Packet Size (`u32::MAX` when it set none).
    max_packet_size: AtomicU32,
    /// 5.0: topic aliases the writer may assign to this client (its Topic
    /// Alias Maximum, within `limits.topic_alias_maximum`); 0: none.
    topic_alias_maximum: AtomicU16,
    /// Where the bytes topic aliases saved are counted.
    metrics: Option<Arc<Metrics>>,
    /// The client's publishes not yet routed: the read gate stays shut
    /// while it is full. Here rather than in the gate, which every
    /// connection's read stream holds (see `the_read_stream_fits_its_size_class`).
    backlog: Option<Arc<RoutingBacklog>>,
}

impl Queue {
    fn new(
        limit: usize,
        backlog: Option<Arc<RoutingBacklog>>,
        metrics: Option<Arc<Metrics>>,
    ) -> Arc<Queue> {
        Arc::new(Queue {
            packets: std::sync::Mutex::new(VecDeque::new()),
            writer: AtomicWaker::new(),
            queued_bytes: AtomicUsize::new(0),
            limit,
            closed: AtomicBool::new(false),
            reader: AtomicWaker::new(),
            version: AtomicU8::new(ProtocolVersion::V311.index() as u8),
            max_packet_size: AtomicU32::new(u32::MAX),
            topic_alias_maximum: AtomicU16::new(0),
            metrics,
            backlog,
        })
    }

    fn version(&self) -> ProtocolVersion {
        ProtocolVersion::ALL[usize::from(self.version.load(Ordering::Relaxed))]
    }

    fn packets(&self) -> std::sync::MutexGuard<'_, VecDeque<Packet>> {
        self.packets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A handle to push packets to one client; cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    queue: Arc<Queue>,
}

impl Outbound {
    /// Packets are written in `version` from now on: called when the
    /// client's CONNECT is read, before anything is sent to it.
    pub fn set_version(&self, version: ProtocolVersion) {
        self.queue
            .version
            .store(version.index() as u8, Ordering::Relaxed);
    }

    /// The version packets are written in.
    pub fn version(&self) -> ProtocolVersion {
        self.queue.version()
    }

    /// Topic aliases the writer may assign (5.0): the client's Topic Alias
    /// Maximum, within roost's own bound.
    pub fn set_topic_alias_maximum(&self, max: u16) {
        self.queue.topic_alias_maximum.store(max, Ordering::Relaxed);
    }

    /// The client's Maximum Packet Size (5.0), from its CONNECT.
    pub fn set_max_packet_size(&self, max: u32) {
        self.queue.max_packet_size.store(max, Ordering::Relaxed);
    }

    /// Whether `publish` is within the client's Maximum Packet Size: roost
    /// never sends it a larger one [MQTT-3.1.2-24].
    pub fn fits(&self, publish: &crate::protocol::Publish) -> bool {
        let max = self.queue.max_packet_size.load(Ordering::Relaxed);
        max == u32::MAX || publish.wire_len(self.queue.version().is_v5()) <= max as usize
    }

    /// The bytes `packet` takes on this client's wire.
    pub fn wire_len(&self, packet: &Packet) -> usize {
        packet.wire_len(self.queue.version())
    }

    /// Queues a packet. Callers bound what they push: QoS 0 deliveries check
    /// [`Outbound::is_writable`] first, QoS 1/2 are bounded by the in-flight
    /// window, and replies are bounded by the read gate.
    pub fn send(&self, packet: Packet) {
        if self.queue.closed.load(Ordering::Relaxed) {
            return;
        }
        self.queue
            .queued_bytes
            .fetch_add(packet.wire_len(self.queue.version()), Ordering::Relaxed);
        self.queue.packets().push_back(packet);
        wake_writer(&self.queue);
    }

    /// Queues packets gathered by the caller, `bytes` their wire length,
    /// with one lock and one wake-up for all of them. Into an empty queue
    /// the caller's vector goes as it is, without copying.
    pub fn send_all(&self, packets: Vec<Packet>, bytes: usize) {
        if packets.is_empty() || self.queue.closed.load(Ordering::Relaxed) {
            return;
        }
        self.queue.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        {
            let mut waiting = self.queue.packets();
            if waiting.is_empty() {
                *waiting = VecDeque::from(packets);
            } else {
                waiting.extend(packets);
            }
        }
        wake_writer(&self.queue);
    }

    /// False while more than `max_outbound_bytes` wait to be written,
    /// counting `gathered` bytes the caller holds to send.
    pub fn is_writable(&self, gathered: usize) -> bool {
        self.queue.queued_bytes.load(Ordering::Relaxed) + gathered < self.queue.limit
    }

    /// Writes what is queued, then shuts the socket down. False if it was
    /// closed already.
    pub fn close(&self) -> bool {
        let closing = !self.queue.closed.swap(true, Ordering::Relaxed);
        if closing {
            self.queue.writer.wake();
        }
        closing
    }
}

thread_local! {
    /// The writers to wake when this thread's outermost [`WakesHeldBack`]
    /// ends; `None` while there is none.
    static HELD_WAKES: std::cell::RefCell<Option<Vec<Arc<Queue>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Writers already listed that a wake-up is checked against (the last
/// ones): a writer listed twice is only woken twice, which costs nothing
/// once it has been woken.
const HELD_WAKES_CHECKED: usize = 8;

/// While one lives, packets sent on this thread are queued at once, but
/// their writers are woken only when it ends, each once (see `held_back`).
///
/// For the store's thread, which runs a commit's completions one after
/// another, most of them one PUBACK to a publisher: woken per packet, a
/// writer on a worker that shares the core preempts the store, writes that
/// one packet and sleeps again, once per completion (measured: 37 context
/// switches per round of a publisher with 64 messages in flight). And for
/// a shard's run of routes, each of which may complete a PUBACK.
pub struct WakesHeldBack {
    _scope: HeldBack<Arc<Queue>>,
}

impl WakesHeldBack {
    #[allow(clippy::new_without_default)] // made for a scope, not a value
    pub fn new() -> WakesHeldBack {
        WakesHeldBack {
            _scope: HeldBack::new(&HELD_WAKES, |queue| queue.writer.wake()),
        }
    }
}

/// Wakes `queue`'s writer now, or when the thread's [`WakesHeldBack`] ends.
fn wake_writer(queue: &Arc<Queue>) {
    let held = held_back::hold(&HELD_WAKES, |list| {
        let listed = list
            .iter()
            .rev()
            .take(HELD_WAKES_CHECKED)
            .any(|q| Arc::ptr_eq(q, queue));
        if !listed {
            list.push(queue.clone());
        }
    });
    if held.is_none() {
        queue.writer.wake();
    }
}

/// Creates the outbound queue for a socket and spawns its writer on the
/// current arbiter. Returns the handle, the gate for the read side, and the
/// writer task (to abort it if the peer stops reading while we close).
pub fn spawn_writer<W: AsyncWrite + Unpin + Send + 'static>(
    write: W,
    limit: usize,
    backlog: Option<Arc<RoutingBacklog>>,
    metrics: Option<Arc<Metrics>>,
) -> (Outbound, ReadGate, tokio::task::JoinHandle<()>) {
    let queue = Queue::new(limit, backlog, metrics);
    let task = actix_rt::spawn(writer(write, queue.clone()));
    (
        Outbound {
            queue: queue.clone(),
        },
        ReadGate { queue },
        task,
    )
}

async fn writer<W: AsyncWrite + Unpin>(mut write: W, queue: Arc<Queue>) {
    let mut batch: VecDeque<Packet> = VecDeque::new();
    let mut buf = BytesMut::new();
    // Made at the first PUBLISH to a client that accepts aliases.
    let mut aliases: Option<Box<OutboundAliases>> = None;
    let mut yields = 0;
    loop {
        // Wait for packets, or for the close.
        std::future::poll_fn(|cx| {
            queue.writer.register(cx.waker());
            if !queue.packets().is_empty() || queue.closed.load(Ordering::Relaxed) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        // Before taking the queue, let other tasks on this arbiter run:
        // - on a busy connection (the last wake-up carried several
        //   packets) once or twice, so that one write carries more packets:
        //   actix hands a connection's packets to its handler 16 at a time,
        //   and without this each write would carry about that many;
        // - when only acknowledgements wait, twice, so that the deliveries
        //   of the same turn go first: a PUBACK is released as soon as its
        //   PUBLISH is routed, before the subscribers' sessions have run,
        //   and writing it first would delay every delivery by a system
        //   call (Mosquitto also writes to the subscribers first).
        // An idle connection's other packets are written at once.
        let acks_only = yields == 0 && {
            let waiting = queue.packets();
            !waiting.is_empty() && waiting.iter().all(Packet::is_acknowledgement)
        };
        for _ in 0..if acks_only { ACK_YIELDS } else { yields } {
            tokio::task::yield_now().await;
        }
        std::mem::swap(&mut *queue.packets(), &mut batch);
        if batch.is_empty() {
            break; // closed, and everything before the close is written
        }
        let mut bytes = 0;
        let written = batch.len();
        yields = match written {
            n if n >= VERY_BUSY_BATCH => 2,
            n if n >= BUSY_BATCH => 1,
            _ => 0,
        };
        while !batch.is_empty() {
            bytes += encode_some(&mut batch, &mut buf, &queue, &mut aliases);
            // flush: a TLS stream may hold records back until asked (a
            // no-op on plain TCP).
            let written = match write.write_all(&buf).await {
                Ok(()) => write.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                log::debug!("write failed: {e}");
                queue.closed.store(true, Ordering::Relaxed);
                queue.reader.wake();
                return;
            }
            buf.clear();
        }
        let left = queue.queued_bytes.fetch_sub(bytes, Ordering::Relaxed) - bytes;
        if left <= queue.limit / 2 {
            queue.reader.wake();
        }
        // A connection that is idle, or nearly (a few packets per wake-up,
        // like the CONNACK after which most clients go quiet), keeps no
        // buffers; a busy one keeps them, up to a bound.
        if written < BUSY_BATCH || batch.capacity() > IDLE_QUEUE_CAPACITY {
            batch = VecDeque::new();
        }
        if written < BUSY_BATCH || buf.capacity() > WRITE_BATCH {
            buf = BytesMut::new();
        }
    }
    queue.closed.store(true, Ordering::Relaxed);
    queue.reader.wake();
    let _ = write.shutdown().await;
}

/// Encodes packets from the front of `batch` into `buf` until it holds
/// `WRITE_BATCH` bytes or `batch` is empty; returns the bytes added. Apart
/// from the writer's loop so that no packet is held across its awaits: the
/// room for one would be in every writer task, idle ones included.
///
/// Returns the bytes the packets were counted as when queued (their
/// length without topic aliases), which is what leaves the queue's count.
/// A 5.0 client that accepts topic aliases gets its PUBLISHes with them
/// (see `OutboundAliases`); the bytes saved are counted.
fn encode_some(
    batch: &mut VecDeque<Packet>,
    buf: &mut BytesMut,
    queue: &Queue,
    aliases: &mut Option<Box<OutboundAliases>>,
) -> usize {
    let version = queue.version();
    let max = queue.topic_alias_maximum.load(Ordering::Relaxed);
    let (mut counted, mut saved) = (0, 0);
    while let Some(p) = batch.pop_front() {
        let len = p.wire_len(version);
        counted += len;
        match (&p, max) {
            (Packet::Publish(publish), 1..) if version.is_v5() => {
                let aliases = aliases.get_or_insert_with(|| Box::new(OutboundAliases::new(max)));
                match aliases.alias_for(&publish.topic) {
                    Some((alias, with_topic)) => {
                        let written = publish.encode_with_alias(buf, alias, with_topic);
                        saved += len.saturating_sub(written);
                    }
                    None => p.encode(buf, version),
                }
            }
            _ => p.encode(buf, version),
        }
        if buf.len() >= WRITE_BATCH {
            break;
        }
    }
    if let (Some(m), 1..) = (&queue.metrics, saved) {
        m.topic_alias_bytes_saved
            .fetch_add(saved as u64, Ordering::Relaxed);
    }
    counted
}

/// Pauses the read side of a connection while its outbound queue is over
/// the bound (TCP backpressure on a client that does not read), or while
/// too many of its publishes wait to be routed (see `backlog`).
pub struct ReadGate {
    queue: Arc<Queue>,
}

impl ReadGate {
    pub fn wrap<S>(self, inner: S) -> Gated<S> {
        Gated { inner, gate: self }
    }

    fn open(&self) -> bool {
        self.queue.queued_bytes.load(Ordering::Relaxed) < self.queue.limit
            && self.queue.backlog.as_ref().is_none_or(|b| b.is_open())
    }

    fn closed(&self) -> bool {
        self.queue.closed.load(Ordering::Relaxed)
    }

    fn register(&self, waker: &std::task::Waker) {
        self.queue.reader.register(waker);
        if let Some(b) = &self.queue.backlog {
            b.reader.register(waker);
        }
    }
}

pub struct Gated<S> {
    inner: S,
    gate: ReadGate,
}

impl<S> Gated<S> {
    /// How many more PUBLISHes may be read before the gate shuts for the
    /// routing backlog: each takes a piece of it once handled, so a reader
    /// that gathers packets before handing them on reads no more than this.
    pub fn room(&self) -> usize {
        self.gate
            .queue
            .backlog
            .as_ref()
            .map_or(usize::MAX, |b| b.room())
    }
}

impl<S: Stream + Unpin> Stream for Gated<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        // The write side is closed (a failed write, or a reply abandoned by
        // a failed commit): the connection ends, and reads nothing more.
        if self.gate.closed() {
            return Poll::Ready(None);
        }
        if !self.gate.open() {
            self.gate.register(cx.waker());
            if !self.gate.open() {
                return Poll::Pending;
            }
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            // Before sleeping on the socket, also on the close: a client
            // that sends nothing more must not keep the connection open.
            Poll::Pending => {
                self.gate.register(cx.waker());
                match self.gate.closed() {
                    true => Poll::Ready(None),
                    false => Poll::Pending,
                }
            }
            ready => ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its wake-ups.
    struct Counter(AtomicUsize);

    impl futures::task::ArcWake for Counter {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Sends under a `WakesHeldBack` queue their packets at once and wake
    /// each writer once, when the outermost one ends; without one, a send
    /// wakes its writer at once.
    #[test]
    fn held_back_wakes_come_once_per_writer_at_the_end() {
        let queues = [
            Queue::new(1 << 20, None, None),
            Queue::new(1 << 20, None, None),
        ];
        let counters: Vec<Arc<Counter>> = (0..2)
            .map(|_| Arc::new(Counter(AtomicUsize::new(0))))
            .collect();
        let register = || {
            for (q, c) in queues.iter().zip(&counters) {
                q.writer.register(&futures::task::waker(c.clone()));
            }
        };
        let woken = || -> Vec<usize> {
            counters
                .iter()
                .map(|c| c.0.load(Ordering::SeqCst))
                .collect()
        };
        let outbounds: Vec<Outbound> = queues
            .iter()
            .map(|q| Outbound { queue: q.clone() })
            .collect();
        register();
        {
            let _held = WakesHeldBack::new();
            for _ in 0..3 {
                outbounds[0].send(Packet::PingResp);
                outbounds[1].send_all(vec![Packet::PingResp], 2);
            }
            {
                let _inner = WakesHeldBack::new();
                outbounds[0].send(Packet::PingResp);
            }
            assert_eq!(woken(), [0, 0], "nothing woken while held back");
            assert_eq!(queues[0].packets().len(), 4, "queued at once");
        }
        assert_eq!(woken(), [1, 1]);
        register();
        outbounds[1].send(Packet::PingResp);
        assert_eq!(woken(), [1, 2], "not held back: woken at once");
    }

    /// Every client has a writer task: with its future at 280 bytes or
    /// less the task is 384 bytes, not 512 (tokio rounds a task up to 128
    /// bytes). Keep packets and other large values out of what the writer
    /// holds across an await.
    #[tokio::test]
    async fn an_idle_writer_fits_its_task_size_class() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (_read, write) = stream.into_split();
        let writer = super::writer(write, super::Queue::new(1024, None, None));
        assert!(std::mem::size_of_val(&writer) <= 280);
    }
}
