//! A crash-check publisher: numbered QoS 1/2 messages, resent across
//! broker restarts as a persistent-session client must.

use super::conn::{pid, Conn};
use super::{ID_SPACE, WINDOW};
use bytes::Bytes;
use roost::protocol::Ack;
use roost::protocol::{Packet, PacketId, Publish, QoS, TopicName};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A message a publisher sent and has not finished.
pub(super) struct Outgoing {
    pub(super) id: PacketId,
    pub(super) seq: u64,
    /// QoS 2: PUBREC received (the message is acknowledged), PUBREL sent.
    pub(super) released: bool,
}

/// A persistent-session publisher's state, kept across broker restarts.
pub(super) struct Publisher {
    pub(super) client_id: String,
    pub(super) topic: TopicName,
    pub(super) qos: QoS,
    pub(super) next_seq: u64,
    pub(super) last_id: u16,
    /// Sent and unfinished, in the order first sent.
    pub(super) inflight: VecDeque<Outgoing>,
    /// Sequence numbers whose PUBACK / PUBREC arrived.
    pub(super) acked: BTreeSet<u64>,
    pub(super) connected_before: bool,
    pub(super) sessions_lost: u32,
    pub(super) errors: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum PubMode {
    /// Resend what is unfinished, then publish a new message every tick.
    Traffic(Duration),
    /// Resend what is unfinished, publish nothing new; DISCONNECT when done.
    Finish,
}

impl Publisher {
    pub(super) fn new(client_id: &str, topic: &str, qos: QoS) -> Publisher {
        Publisher {
            client_id: client_id.to_string(),
            topic: TopicName::new(topic.to_string()).expect("valid topic"),
            qos,
            next_seq: 0,
            last_id: 0,
            inflight: VecDeque::new(),
            acked: BTreeSet::new(),
            connected_before: false,
            sessions_lost: 0,
            errors: Vec::new(),
        }
    }

    pub(super) fn next_id(&mut self) -> PacketId {
        loop {
            self.last_id = self.last_id % ID_SPACE + 1;
            let id = pid(self.last_id);
            if !self.inflight.iter().any(|o| o.id == id) {
                return id;
            }
        }
    }

    pub(super) fn publish_packet(&self, o: &Outgoing, dup: bool) -> Packet {
        Packet::Publish(Publish {
            dup,
            qos: self.qos,
            retain: false,
            topic: self.topic.clone(),
            packet_id: Some(o.id),
            payload: Bytes::from(o.seq.to_string()),
            properties: None,
        })
    }

    /// One connection, until the broker goes away, `stop`, or (Finish) all
    /// handshakes are complete. `ready` fires after the CONNACK.
    pub(super) async fn run(
        mut self,
        addr: SocketAddr,
        mode: PubMode,
        ready: oneshot::Sender<()>,
        stop: CancellationToken,
    ) -> Self {
        let (mut conn, present) = match Conn::open(addr, &self.client_id).await {
            Ok(c) => c,
            Err(e) => {
                self.errors.push(e);
                return self;
            }
        };
        if self.connected_before && !present {
            self.sessions_lost += 1;
        }
        self.connected_before = true;
        let _ = ready.send(());
        // [MQTT-4.4.0-1]: unacknowledged PUBLISH and PUBREL packets again,
        // with their original packet ids, in the original order.
        for i in 0..self.inflight.len() {
            let o = &self.inflight[i];
            let packet = if o.released {
                Packet::PubRel(Ack::new(o.id))
            } else {
                self.publish_packet(o, true)
            };
            if conn.send(packet).await.is_err() {
                return self;
            }
        }
        let mut tick = match mode {
            PubMode::Traffic(every) => {
                let mut t = tokio::time::interval(every);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Some(t)
            }
            PubMode::Finish => None,
        };
        loop {
            if mode == PubMode::Finish && self.inflight.is_empty() {
                let _ = conn.send(Packet::disconnect()).await;
                return self;
            }
            let room = self.inflight.len() < WINDOW;
            tokio::select! {
                _ = stop.cancelled() => return self,
                _ = async { tick.as_mut().expect("ticking").tick().await }, if tick.is_some() && room => {
                    let o = Outgoing { id: self.next_id(), seq: self.next_seq, released: false };
                    self.next_seq += 1;
                    let packet = self.publish_packet(&o, false);
                    // Sent as far as the client knows, whatever happens to the write.
                    self.inflight.push_back(o);
                    if conn.send(packet).await.is_err() {
                        return self;
                    }
                }
                packet = conn.next() => {
                    let Some(packet) = packet else { return self };
                    if let Some(reply) = self.on_packet(packet) {
                        if conn.send(reply).await.is_err() {
                            return self;
                        }
                    }
                }
            }
        }
    }

    pub(super) fn on_packet(&mut self, packet: Packet) -> Option<Packet> {
        let position =
            |inflight: &VecDeque<Outgoing>, id: PacketId| inflight.iter().position(|o| o.id == id);
        match packet {
            Packet::PubAck(Ack { packet_id: id, .. }) if self.qos == QoS::AtLeastOnce => {
                if let Some(i) = position(&self.inflight, id) {
                    let o = self.inflight.remove(i).expect("present");
                    self.acked.insert(o.seq);
                }
                None
            }
            Packet::PubRec(Ack { packet_id: id, .. }) if self.qos == QoS::ExactlyOnce => {
                if let Some(i) = position(&self.inflight, id) {
                    let o = &mut self.inflight[i];
                    if !o.released {
                        o.released = true;
                        self.acked.insert(o.seq);
                    }
                }
                // Also for an id we do not know: releasing it is harmless.
                Some(Packet::PubRel(Ack::new(id)))
            }
            Packet::PubComp(Ack { packet_id: id, .. }) if self.qos == QoS::ExactlyOnce => {
                if let Some(i) = position(&self.inflight, id) {
                    if self.inflight[i].released {
                        self.inflight.remove(i);
                    }
                }
                None
            }
            other => {
                self.errors
                    .push(format!("{}: unexpected {other:?}", self.client_id));
                None
            }
        }
    }
}
