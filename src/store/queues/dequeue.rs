//! Messages leaving a queue: acknowledged, or dropped. One at a time, or
//! a row of them at once (a session's acknowledgements come in order).

use super::{ClientQueue, MessageId, Queues, Run};
use bytestring::ByteString;

impl Queues {
    /// Message `id` leaves `client_id`'s queue (acknowledged, or dropped);
    /// `size` is its topic and payload bytes. False if it was not queued.
    pub fn dequeue(&mut self, client_id: &ByteString, id: MessageId, size: u32) -> bool {
        self.dequeue_range(client_id, id, &[size]) > 0
    }

    /// Messages `first`, `first + 1`, ... leave `client_id`'s queue at once
    /// (a session's acknowledgements in a row), `sizes` giving each one's
    /// topic and payload bytes. The same as one [`Queues::dequeue`] per id,
    /// but each run they touch is cut once and the log's coverage lowered
    /// once per run, not once per message. Ids that are not queued are
    /// skipped, their sizes with them. Returns how many were queued.
    pub fn dequeue_range(
        &mut self,
        client_id: &ByteString,
        first: MessageId,
        sizes: &[u32],
    ) -> u64 {
        let Some(last) = (sizes.len() as u64).checked_sub(1).map(|n| first + n) else {
            return 0;
        };
        let Some(queue) = self.clients.get_mut(client_id) else {
            return 0;
        };
        if queue.touch() {
            self.dirty.push(client_id.clone());
        }
        for id in first..=last {
            queue.held.remove(id);
            if let Some(sent) = queue.sent.remove(&id) {
                if sent.stored {
                    queue.gone_sent.push(id);
                }
            }
        }
        // The runs that overlap the range, from the last back, so that a
        // removed or split run does not move the ones still to cut.
        let start = queue.runs.partition_point(|r| r.last < first);
        let end = queue.runs.partition_point(|r| r.first <= last);
        let mut dequeued = 0;
        for i in (start..end).rev() {
            let (a, b) = (queue.runs[i].first.max(first), queue.runs[i].last.min(last));
            let bytes: u64 = sizes[(a - first) as usize..=(b - first) as usize]
                .iter()
                .map(|&s| u64::from(s))
                .sum();
            let gone = b - a + 1;
            dequeued += gone;
            queue.count -= gone;
            self.total -= gone;
            queue.bytes = queue.bytes.saturating_sub(bytes);
            queue.cut(i, a, b, bytes);
            self.coverage.sub(a, b, 1, &mut self.freed);
        }
        dequeued
    }
}

impl ClientQueue {
    /// Takes messages `a..=b` (all inside run `i`) out of the run, with
    /// `bytes` of its bytes: the run shrinks from an end, goes, or splits
    /// in two around them. The runs changed are listed for the next write.
    fn cut(&mut self, i: usize, a: MessageId, b: MessageId, bytes: u64) {
        let dirty = &mut self.changed_runs;
        let run = &mut self.runs[i];
        dirty.push(run.first);
        run.bytes = run.bytes.saturating_sub(bytes);
        if a == run.first && b == run.last {
            self.runs.remove(i);
        } else if a == run.first {
            run.first = b + 1;
            dirty.push(run.first);
        } else if b == run.last {
            run.last = a - 1;
        } else {
            // Out of order: the run splits in two around `a..=b`, its
            // bytes shared in proportion.
            let right = Run {
                first: b + 1,
                last: run.last,
                qos: run.qos,
                retain: run.retain,
                bytes: 0,
            };
            run.last = a - 1;
            let total = run.bytes;
            let left_len = run.messages();
            let share = total * left_len / (left_len + right.messages());
            run.bytes = share;
            dirty.push(right.first);
            self.runs.insert(
                i + 1,
                Run {
                    bytes: total - share,
                    ..right
                },
            );
        }
    }
}
