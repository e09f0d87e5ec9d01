//! Warnings that clients can cause again and again (a refused CONNECT, a
//! protocol violation, refused subscriptions, a PUBLISH the ACL refuses)
//! are limited broker-wide: at most `BURST` lines of a kind per `WINDOW`.
//! The rest are counted, and the count is logged with the first warning of
//! that kind after the window, so a client reconnecting in a loop, or many
//! clients at once, cannot flood the log, and nothing goes unmentioned.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines of one kind per window.
const BURST: u32 = 20;
const WINDOW: Duration = Duration::from_secs(10);

pub struct LogLimit {
    /// What the warnings are, for the line that counts the silenced ones.
    what: &'static str,
    state: Mutex<State>,
}

struct State {
    window_start: Option<Instant>,
    logged: u32,
    silenced: u64,
}

pub static CONNECT_REFUSALS: LogLimit = LogLimit::new("CONNECT refusals");
pub static PROTOCOL_ERRORS: LogLimit = LogLimit::new("protocol violations");
pub static SUBSCRIBE_REFUSALS: LogLimit = LogLimit::new("refused subscriptions");
pub static PUBLISH_REFUSALS: LogLimit = LogLimit::new("PUBLISHes refused by the ACL");
pub static OVERSIZED_DROPS: LogLimit =
    LogLimit::new("messages above a client's Maximum Packet Size");
pub static RETAINED_REFUSALS: LogLimit = LogLimit::new("retained messages not kept at a bound");

impl LogLimit {
    pub const fn new(what: &'static str) -> LogLimit {
        LogLimit {
            what,
            state: Mutex::new(State {
                window_start: None,
                logged: 0,
                silenced: 0,
            }),
        }
    }

    /// Whether a warning of this kind may be logged now.
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state
            .window_start
            .is_none_or(|start| now.duration_since(start) >= WINDOW)
        {
            if state.silenced > 0 {
                log::warn!(
                    "{} more {} were not logged in the {WINDOW:?} before",
                    state.silenced,
                    self.what
                );
            }
            *state = State {
                window_start: Some(now),
                logged: 0,
                silenced: 0,
            };
        }
        match state.logged < BURST {
            true => {
                state.logged += 1;
                true
            }
            false => {
                state.silenced += 1;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_window_then_silence_until_the_next_window() {
        let limit = LogLimit::new("test warnings");
        let start = Instant::now();
        let allowed = (0..100).filter(|_| limit.allow_at(start)).count();
        assert_eq!(allowed, BURST as usize);
        assert!(!limit.allow_at(start + WINDOW / 2));
        assert!(limit.allow_at(start + WINDOW));
        let state = limit.state.lock().unwrap();
        assert_eq!((state.logged, state.silenced), (1, 0));
    }
}
