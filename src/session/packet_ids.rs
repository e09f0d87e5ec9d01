//! Packet ids for the messages a session sends: unique among those in
//! flight [MQTT-2.3.1-2], handed out in turn, and cheap to hand out.

use crate::protocol::PacketId;

/// The next packet id to hand out, and how many from it on are known free.
///
/// Ids go out in turn, so after one look at the window every id up to the
/// nearest one in flight ahead is free: the window is looked at again only
/// when those run out (about every 65,535 ids when messages leave the
/// window in turn), not for every message.
#[derive(Debug)]
pub(super) struct PacketIds {
    next: PacketId,
    /// Ids from `next` on known not to be in flight; 0: not known.
    free: u16,
}

impl Default for PacketIds {
    fn default() -> Self {
        PacketIds::starting_at(PacketId::new(1).expect("1 is non-zero"))
    }
}

impl PacketIds {
    pub(super) fn starting_at(next: PacketId) -> PacketIds {
        PacketIds { next, free: 0 }
    }

    /// The next id that is not among `in_flight` (the ids in use now).
    pub(super) fn allocate<I>(&mut self, in_flight: impl Fn() -> I) -> PacketId
    where
        I: Iterator<Item = PacketId>,
    {
        if self.free == 0 {
            // Each id's distance ahead of the cursor, going forward through
            // the 65,535 ids: the nearest bounds the run of free ones.
            let distance = |from: PacketId, to: PacketId| {
                (u32::from(to.get()) + 65_535 - u32::from(from.get())) % 65_535
            };
            loop {
                let cursor = self.next;
                let nearest = in_flight()
                    .map(|id| distance(cursor, id))
                    .min()
                    .unwrap_or(65_535);
                if nearest > 0 {
                    self.free = nearest as u16;
                    break;
                }
                self.next = cursor.next();
            }
        }
        self.free -= 1;
        let id = self.next;
        self.next = id.next();
        id
    }

    /// An id was put in flight that did not come from [`PacketIds::allocate`]
    /// (a message read back from the store with the id it was sent with).
    pub(super) fn taken_elsewhere(&mut self) {
        self.free = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(v: u16) -> PacketId {
        PacketId::new(v).unwrap()
    }

    #[test]
    fn ids_in_flight_are_skipped_and_the_window_looked_at_once_per_run() {
        let mut ids = PacketIds::starting_at(pid(65_534));
        let in_flight = [pid(65_535), pid(2)];
        let looks = std::cell::Cell::new(0);
        let allocate = |ids: &mut PacketIds| {
            ids.allocate(|| {
                looks.set(looks.get() + 1);
                in_flight.iter().copied()
            })
        };
        assert_eq!(allocate(&mut ids), pid(65_534));
        assert_eq!(allocate(&mut ids), pid(1), "65,535 is in flight");
        assert_eq!(allocate(&mut ids), pid(3), "2 is in flight");
        let before = looks.get();
        for want in 4..1000 {
            assert_eq!(allocate(&mut ids), pid(want));
        }
        assert_eq!(looks.get(), before, "no look while the run lasts");
    }

    #[test]
    fn an_id_taken_elsewhere_makes_it_look_again() {
        let mut ids = PacketIds::default();
        assert_eq!(ids.allocate(std::iter::empty), pid(1));
        ids.taken_elsewhere();
        assert_eq!(ids.allocate(|| [pid(2), pid(3)].into_iter()), pid(4));
    }
}
