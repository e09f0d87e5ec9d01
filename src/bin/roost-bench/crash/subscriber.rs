//! A crash-check subscriber: delivers each QoS 2 message once per packet
//! id, counts losses and duplicates.

use super::conn::{pid, Conn};
use super::{CONNECT_TIMEOUT, FILTER, IDLE, TOPICS};
use roost::protocol::Ack;
use roost::protocol::{Packet, QoS, ReasonCode, Subscribe, SubscribeTopic, TopicFilter};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A persistent-session subscriber's state, kept across broker restarts.
pub(super) struct Subscriber {
    pub(super) client_id: String,
    pub(super) qos: QoS,
    pub(super) subscribed: bool,
    /// QoS 2 packet ids whose PUBLISH was delivered and whose PUBREL has not come.
    pub(super) awaiting_rel: HashSet<u16>,
    /// Deliveries per topic (index in TOPICS) and sequence number.
    pub(super) delivered: [HashMap<u64, u32>; 2],
    pub(super) qos2_duplicates: u64,
    pub(super) qos1_duplicates: u64,
    pub(super) duplicate_examples: Vec<String>,
    pub(super) connected_before: bool,
    pub(super) sessions_lost: u32,
    pub(super) errors: Vec<String>,
}

#[derive(Clone)]
pub(super) enum SubMode {
    /// Subscribe if not yet subscribed, then DISCONNECT.
    SubscribeOnly,
    /// Receive until the broker goes away or `stop`.
    Online,
    /// Receive until `publishers_done` and nothing came for IDLE; then DISCONNECT.
    Drain(CancellationToken),
}

impl Subscriber {
    pub(super) fn new(client_id: &str, qos: QoS) -> Subscriber {
        Subscriber {
            client_id: client_id.to_string(),
            qos,
            subscribed: false,
            awaiting_rel: HashSet::new(),
            delivered: [HashMap::new(), HashMap::new()],
            qos2_duplicates: 0,
            qos1_duplicates: 0,
            duplicate_examples: Vec::new(),
            connected_before: false,
            sessions_lost: 0,
            errors: Vec::new(),
        }
    }

    /// `ready` fires once subscribed (immediately after the CONNACK when the
    /// session already holds the subscription).
    pub(super) async fn run(
        mut self,
        addr: SocketAddr,
        mode: SubMode,
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
            // The session (and its subscription) is gone: subscribe again to go on measuring.
            self.subscribed = false;
            self.awaiting_rel.clear();
        }
        self.connected_before = true;
        if !self.subscribed {
            let subscribe = Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                topics: vec![SubscribeTopic {
                    filter: TopicFilter::new(FILTER.to_string()).expect("valid"),
                    qos: self.qos,
                    options: Default::default(),
                }],
                properties: None,
            });
            if conn.send(subscribe).await.is_err() {
                return self;
            }
            loop {
                let packet = tokio::select! {
                    _ = stop.cancelled() => return self,
                    p = conn.next() => p,
                };
                match packet {
                    None => return self,
                    Some(Packet::SubAck(ack)) => {
                        if ack.codes != [ReasonCode::granted(self.qos)] {
                            self.errors
                                .push(format!("{}: SUBACK {:?}", self.client_id, ack.codes));
                        }
                        self.subscribed = true;
                        break;
                    }
                    Some(other) => {
                        if let Some(reply) = self.on_packet(other) {
                            if conn.send(reply).await.is_err() {
                                return self;
                            }
                        }
                    }
                }
            }
        }
        let _ = ready.send(());
        let mut idle_check = tokio::time::interval(Duration::from_millis(100));
        let mut last_packet = Instant::now();
        loop {
            match &mode {
                SubMode::SubscribeOnly => {
                    let _ = conn.send(Packet::disconnect()).await;
                    // Until the broker closes: what it sends meanwhile stays unacknowledged.
                    let _ = tokio::time::timeout(CONNECT_TIMEOUT, async {
                        while conn.next().await.is_some() {}
                    })
                    .await;
                    return self;
                }
                SubMode::Drain(publishers_done)
                    if publishers_done.is_cancelled() && last_packet.elapsed() >= IDLE =>
                {
                    let _ = conn.send(Packet::disconnect()).await;
                    return self;
                }
                _ => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return self,
                _ = idle_check.tick() => {}
                packet = conn.next() => {
                    let Some(packet) = packet else { return self };
                    last_packet = Instant::now();
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
        match packet {
            Packet::Publish(p) => {
                let key = TOPICS.iter().position(|t| *t == p.topic.as_str()).zip(
                    std::str::from_utf8(&p.payload)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok()),
                );
                let (reply, deliver) = match (p.qos, p.packet_id) {
                    (QoS::AtMostOnce, _) => (None, true),
                    (QoS::AtLeastOnce, Some(id)) => (Some(Packet::PubAck(Ack::new(id))), true),
                    // Delivered on the first PUBLISH of a packet id; the id is
                    // kept until PUBREL, so a resent PUBLISH is not delivered again.
                    (QoS::ExactlyOnce, Some(id)) => (
                        Some(Packet::PubRec(Ack::new(id))),
                        self.awaiting_rel.insert(id.get()),
                    ),
                    _ => (None, false),
                };
                if deliver {
                    match key {
                        Some((topic, seq)) => {
                            let n = self.delivered[topic].entry(seq).or_insert(0);
                            *n += 1;
                            if *n > 1 {
                                if p.qos == QoS::ExactlyOnce && self.duplicate_examples.len() < 10 {
                                    self.duplicate_examples.push(format!(
                                        "{} {seq} (delivery {n}: id {} dup {})",
                                        TOPICS[topic],
                                        p.packet_id.map_or(0, |i| i.get()),
                                        p.dup as u8
                                    ));
                                }
                                match p.qos {
                                    QoS::ExactlyOnce => self.qos2_duplicates += 1,
                                    _ => self.qos1_duplicates += 1,
                                }
                            }
                        }
                        None => self
                            .errors
                            .push(format!("{}: unexpected message {p:?}", self.client_id)),
                    }
                }
                reply
            }
            Packet::PubRel(Ack { packet_id: id, .. }) => {
                self.awaiting_rel.remove(&id.get());
                Some(Packet::PubComp(Ack::new(id)))
            }
            other => {
                self.errors
                    .push(format!("{}: unexpected {other:?}", self.client_id));
                None
            }
        }
    }
}
