//! "Do this once the write has committed": a reference-counted callback.
//!
//! A PUBACK waits for every row that holds its message. Each holder keeps a
//! clone of the same [`Completion`]; when the last clone is dropped (the
//! shard routed the message, each session handled it, the store committed
//! each row) the callback runs. If a commit fails, the store abandons the
//! completions it holds instead: the callback never runs and the client,
//! which got no acknowledgement, sends the message again.

use std::sync::{Arc, Mutex, MutexGuard, Weak};

type Callback = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct Completion(Arc<Inner>);

/// A completion dropped by a handler that is panicking never runs: the
/// panic may have cut the work short (a message routed to some sessions but
/// not all), so nothing may be acknowledged for it.
impl Drop for Completion {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.abandon();
        }
    }
}

struct Inner {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    callback: Option<Callback>,
    /// The next completion of an [`InOrder`] chain: held until this one has
    /// run, so it cannot run first.
    next: Option<Arc<Inner>>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Completion {
    pub fn new(callback: impl FnOnce() + Send + 'static) -> Completion {
        Completion(Arc::new(Inner {
            state: Mutex::new(State {
                callback: Some(Box::new(callback)),
                next: None,
            }),
        }))
    }

    /// One completion that finishes when both `a` and `b` would.
    pub fn both(a: Option<Completion>, b: Option<Completion>) -> Option<Completion> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Completion::new(move || drop((a, b)))),
            (a, b) => a.or(b),
        }
    }

    /// Makes sure the callback never runs, whoever holds the other clones.
    /// A completion chained after it (see [`InOrder`]) still runs.
    pub fn abandon(&self) {
        self.0.state().callback.take();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut state = std::mem::take(self.state.get_mut().unwrap_or_else(|p| p.into_inner()));
        // Run this callback, then the chained ones this was the last holder
        // of, in a loop: a long chain released at once must not recurse.
        loop {
            if let Some(callback) = state.callback.take() {
                callback();
            }
            let Some(next) = state.next.take() else {
                return;
            };
            match Arc::into_inner(next) {
                Some(mut inner) => {
                    state =
                        std::mem::take(inner.state.get_mut().unwrap_or_else(|p| p.into_inner()));
                }
                // Someone else still holds it: it runs when they let go.
                None => return,
            }
        }
    }
}

/// Makes completions run in the order they were pushed, whatever order
/// their holders let go in: a client's PUBACKs follow the order of its
/// PUBLISHes even when one waits for a commit and a later one is routed to
/// no durable subscriber, or through another shard. The spec states this
/// rule for the receiver of PUBLISHes in section 4.6 [MQTT-4.6.0-2]
/// [MQTT-4.6.0-3] (written for the client); Mosquitto follows it as a
/// server too, and clients that keep their in-flight messages in a queue
/// rely on it.
///
/// Each completion pushed is held by the one before it until that one has
/// run. Only a weak reference to the last is kept here, so an idle client's
/// chain holds nothing.
#[derive(Default)]
pub struct InOrder {
    last: Option<Weak<Inner>>,
}

impl InOrder {
    pub fn push(&mut self, completion: &Completion) {
        if let Some(previous) = self.last.take().and_then(|w| w.upgrade()) {
            previous.state().next = Some(completion.0.clone());
            // If the previous one's holders have all let go meanwhile, it
            // runs here, as this reference drops.
        }
        self.last = Some(Arc::downgrade(&completion.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_once_when_the_last_clone_drops() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let a = Completion::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let b = a.clone();
        drop(a);
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        drop(b);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn abandoned_never_runs() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let a = Completion::new(move || {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let b = a.clone();
        b.abandon();
        drop((a, b));
        assert_eq!(runs.load(Ordering::SeqCst), 0);
    }

    fn recording(log: &Arc<Mutex<Vec<usize>>>, n: usize) -> Completion {
        let log = log.clone();
        Completion::new(move || log.lock().unwrap().push(n))
    }

    /// Completions let go in the opposite order run in the order pushed,
    /// each as soon as the ones before it have run.
    #[test]
    fn in_order_runs_in_push_order_whatever_order_they_are_released() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut order = InOrder::default();
        let all: Vec<Completion> = (0..4).map(|n| recording(&log, n)).collect();
        for c in &all {
            order.push(c);
        }
        let mut all: Vec<Option<Completion>> = all.into_iter().map(Some).collect();
        all[3].take();
        all[2].take();
        assert!(
            log.lock().unwrap().is_empty(),
            "3 and 2 must wait for 0 and 1"
        );
        all[0].take();
        assert_eq!(*log.lock().unwrap(), [0]);
        all[1].take();
        assert_eq!(*log.lock().unwrap(), [0, 1, 2, 3]);
        // A completion pushed after the others have run runs on its own.
        let late = recording(&log, 4);
        order.push(&late);
        drop(late);
        assert_eq!(*log.lock().unwrap(), [0, 1, 2, 3, 4]);
    }

    /// An abandoned completion does not hold up the ones after it; a long
    /// chain released at once runs without recursing (no stack overflow).
    #[test]
    fn in_order_skips_an_abandoned_one_and_releases_long_chains_in_a_loop() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut order = InOrder::default();
        let first = recording(&log, 0);
        order.push(&first);
        let rest: Vec<Completion> = (1..200_000).map(|n| recording(&log, n)).collect();
        for c in &rest {
            order.push(c);
        }
        drop(rest);
        first.abandon();
        drop(first);
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 199_999);
        assert!(log.iter().copied().eq(1..200_000));
    }
}
