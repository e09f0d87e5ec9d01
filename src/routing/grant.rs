//! What one subscription was granted, as the subscription index keeps it:
//! its QoS and the MQTT 5.0 options routing applies, in one byte, so that
//! a 3.1.1 subscription costs the index no more than its QoS did.

use crate::protocol::{QoS, SubscriptionOptions};

/// QoS in bits 0-1, No Local bit 2, Retain As Published bit 3 (the
/// layout of the options byte of section 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Grant(u8);

const NO_LOCAL: u8 = 0b0100;
const RETAIN_AS_PUBLISHED: u8 = 0b1000;

impl Grant {
    /// A subscription with 3.1.1's behaviour.
    pub fn of(qos: QoS) -> Grant {
        Grant(qos as u8)
    }

    pub fn new(qos: QoS, options: &SubscriptionOptions) -> Grant {
        let mut g = qos as u8;
        if options.no_local {
            g |= NO_LOCAL;
        }
        if options.retain_as_published {
            g |= RETAIN_AS_PUBLISHED;
        }
        Grant(g)
    }

    pub fn qos(self) -> QoS {
        QoS::from_u8(self.0 & 0b11).unwrap_or(QoS::AtMostOnce)
    }

    /// Not delivered to the session that published it [MQTT-3.8.3-3].
    pub fn no_local(self) -> bool {
        self.0 & NO_LOCAL != 0
    }

    /// Delivered with the RETAIN flag it was published with
    /// [MQTT-3.3.1-13], not cleared [MQTT-3.3.1-12].
    pub fn retain_as_published(self) -> bool {
        self.0 & RETAIN_AS_PUBLISHED != 0
    }

    /// One delivery for several matching subscriptions of a session: the
    /// highest QoS (section 3.3.4), and the RETAIN flag kept if any of
    /// them keeps it.
    pub fn merged(self, other: Grant) -> Grant {
        let qos = self.qos().max(other.qos()) as u8;
        Grant(qos | ((self.0 | other.0) & RETAIN_AS_PUBLISHED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_keeps_its_qos_and_options_in_one_byte() {
        assert_eq!(std::mem::size_of::<Grant>(), 1);
        let opts = SubscriptionOptions {
            no_local: true,
            retain_as_published: true,
            ..SubscriptionOptions::default()
        };
        let g = Grant::new(QoS::ExactlyOnce, &opts);
        assert_eq!(
            (g.qos(), g.no_local(), g.retain_as_published()),
            (QoS::ExactlyOnce, true, true)
        );
        let plain = Grant::of(QoS::AtLeastOnce);
        assert_eq!(
            (plain.qos(), plain.no_local(), plain.retain_as_published()),
            (QoS::AtLeastOnce, false, false)
        );
        let m = plain.merged(g);
        assert_eq!((m.qos(), m.retain_as_published()), (QoS::ExactlyOnce, true));
    }
}
