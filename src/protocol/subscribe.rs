//! SUBSCRIBE (section 3.8): one or more topic filters, each with a
//! requested QoS; in 5.0 also subscription options (section 3.8.3.1) and a
//! block of properties (a Subscription Identifier, User Properties).

use super::properties::{Properties, PropertiesOf};
use super::reader::Reader;
use super::{put_remaining_length, put_str, PacketId, ProtocolError, QoS, TopicFilter};
use bytes::{BufMut, BytesMut};

/// When retained messages are sent for a new subscription (section
/// 3.8.3.1, bits 4 and 5 of the options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// Send them at the time of the subscribe (3.1.1's only behaviour).
    #[default]
    Always = 0,
    /// Send them only if the subscription did not already exist.
    IfNew = 1,
    /// Do not send them.
    Never = 2,
}

/// The options of one filter; 3.1.1 has only the QoS, and the defaults
/// here are what 3.1.1 does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Messages are not forwarded to the connection that published them.
    pub no_local: bool,
    /// Forwarded messages keep the RETAIN flag they were published with.
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeTopic {
    pub filter: TopicFilter,
    pub qos: QoS,
    pub options: SubscriptionOptions,
}

impl SubscribeTopic {
    /// A 3.1.1 request: a filter and a QoS.
    pub fn new(filter: TopicFilter, qos: QoS) -> SubscribeTopic {
        SubscribeTopic {
            filter,
            qos,
            options: SubscriptionOptions::default(),
        }
    }

    /// The options byte of 5.0 (the QoS byte of 3.1.1 when the options
    /// are the defaults).
    fn options_byte(&self) -> u8 {
        let o = &self.options;
        self.qos as u8
            | (o.no_local as u8) << 2
            | (o.retain_as_published as u8) << 3
            | (o.retain_handling as u8) << 4
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    pub topics: Vec<SubscribeTopic>,
    /// 5.0 only: `None` when there are none.
    pub properties: Option<Box<Properties>>,
}

impl Subscribe {
    pub(crate) fn decode(mut r: Reader, v5: bool) -> Result<Subscribe, ProtocolError> {
        let packet_id = r.packet_id()?;
        let properties = if v5 {
            Properties::decode_boxed(&mut r, PropertiesOf::Subscribe)?
        } else {
            None
        };
        let mut topics = Vec::new();
        while r.has_remaining() {
            let filter = TopicFilter::new(r.string()?)?;
            let byte = r.u8()?;
            topics.push(if v5 {
                decode_options(filter, byte)?
            } else {
                // [MQTT-3.8.3-4]: reserved bits are 0, QoS is 0, 1 or 2.
                let qos = if byte & 0b1111_1100 == 0 {
                    QoS::from_u8(byte)
                } else {
                    None
                };
                let qos = qos.ok_or(ProtocolError::InvalidRequestedQoS(byte))?;
                SubscribeTopic::new(filter, qos)
            });
        }
        if topics.is_empty() {
            return Err(ProtocolError::EmptySubscribe);
        }
        Ok(Subscribe {
            packet_id,
            topics,
            properties,
        })
    }

    /// The properties; none for 3.1.1.
    pub fn properties(&self) -> &Properties {
        Properties::or_none(&self.properties)
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut, v5: bool) {
        let props = if v5 {
            Properties::boxed_len(&self.properties)
        } else {
            0
        };
        let len = 2
            + props
            + self
                .topics
                .iter()
                .map(|t| 2 + t.filter.as_str().len() + 1)
                .sum::<usize>();
        buf.put_u8(0x82);
        put_remaining_length(buf, len);
        buf.put_u16(self.packet_id.get());
        if v5 {
            Properties::encode_boxed(&self.properties, buf);
        }
        for t in &self.topics {
            put_str(buf, t.filter.as_str());
            buf.put_u8(if v5 { t.options_byte() } else { t.qos as u8 });
        }
    }
}

/// A 5.0 options byte: QoS in bits 0-1, No Local bit 2, Retain As
/// Published bit 3, Retain Handling bits 4-5, bits 6-7 reserved.
fn decode_options(filter: TopicFilter, byte: u8) -> Result<SubscribeTopic, ProtocolError> {
    let invalid = || ProtocolError::InvalidSubscriptionOptions(byte);
    if byte & 0b1100_0000 != 0 {
        return Err(invalid());
    }
    let qos = QoS::from_u8(byte & 0b11).ok_or(ProtocolError::InvalidRequestedQoS(byte))?;
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::Always,
        1 => RetainHandling::IfNew,
        2 => RetainHandling::Never,
        _ => return Err(invalid()),
    };
    Ok(SubscribeTopic {
        filter,
        qos,
        options: SubscriptionOptions {
            no_local: byte & 0b0100 != 0,
            retain_as_published: byte & 0b1000 != 0,
            retain_handling,
        },
    })
}
