//! "Do this once the write has committed": a reference-counted callback.
//!
//! A PUBACK waits for every row that holds its message. Each holder keeps a
//! clone of the same [`Completion`]; when the last clone is dropped (the
//! shard routed the message, each session handled it, the store committed
//! each row) the callback runs. A commit that fails does not drop them:
//! the store keeps the batch and commits it again (see `store`).
//!
//! A completion can be abandoned: the work it waited for was cut short (a
//! handler panicked, the store restarted during a commit), and its
//! callback is dropped without running. Nothing is acknowledged for such
//! work; the client resends it when it reconnects. On a connection that
//! stays open, a client's later acknowledgements still go out (see
//! [`InOrder`]).

use std::sync::{Arc, Mutex, MutexGuard};

/// What runs when the last holder lets go.
enum Pending {
    Run(Box<dyn FnOnce() + Send>),
    /// Finishes when both would: dropping them runs each whose last holder
    /// this was. Abandoning it abandons both.
    Both(Completion, Completion),
}

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
    callback: Option<Pending>,
    /// Its place in an [`InOrder`] chain.
    link: Option<Arc<Link>>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Completion {
    /// A completion whose callback runs once every holder has let go.
    pub fn new(callback: impl FnOnce() + Send + 'static) -> Completion {
        Completion::with(Pending::Run(Box::new(callback)))
    }

    fn with(callback: Pending) -> Completion {
        Completion(Arc::new(Inner {
            state: Mutex::new(State {
                callback: Some(callback),
                link: None,
            }),
        }))
    }

    /// One completion that finishes when both `a` and `b` would.
    pub fn both(a: Option<Completion>, b: Option<Completion>) -> Option<Completion> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Completion::with(Pending::Both(a, b))),
            (a, b) => a.or(b),
        }
    }

    /// Makes sure the callback never runs, whoever holds the other clones;
    /// the parts of a [`Completion::both`] are abandoned too. A completion
    /// chained after it (see [`InOrder`]) still runs, once every holder of
    /// this one has let go.
    pub fn abandon(&self) {
        let callback = self.0.state().callback.take();
        if let Some(Pending::Both(a, b)) = callback {
            a.abandon();
            b.abandon();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut state = std::mem::take(self.state.get_mut().unwrap_or_else(|p| p.into_inner()));
        // Run this callback, then the chained ones this was the last holder
        // of, in a loop: a long chain released at once must not recurse.
        loop {
            match state.callback.take() {
                Some(Pending::Run(callback)) => callback(),
                Some(Pending::Both(a, b)) => drop((a, b)),
                None => {}
            }
            // Only now, with the callback finished, may a later completion
            // of the chain run without waiting for this one.
            let next = state.link.take().and_then(|link| {
                let mut link = lock(&link.state);
                link.ran = true;
                link.next.take()
            });
            let Some(next) = next else {
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

/// The store's batch holds a completion with each write: it drops it once
/// the commit succeeded, and abandons it when the commit was cut short.
impl crate::store::Waiter for Completion {
    fn cut_short(&self) {
        self.abandon();
    }
}

/// One completion's place in an [`InOrder`] chain.
#[derive(Default)]
struct Link {
    state: Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    /// Its completion is gone: the callback has finished, or was abandoned
    /// and every holder has let go.
    ran: bool,
    /// The completion pushed after it, held until this one has run.
    next: Option<Arc<Inner>>,
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
/// Each completion pushed is held by the one before it until that one's
/// callback has finished. "Finished" is recorded in a small link of its
/// own, not read from the completion's reference count: the count reaches
/// zero before the callback has run, and a completion pushed in between
/// would overtake it. Only the last link is kept here.
#[derive(Default)]
pub struct InOrder {
    last: Option<Arc<Link>>,
}

impl InOrder {
    pub fn push(&mut self, completion: &Completion) {
        let link = Arc::new(Link::default());
        {
            let mut state = completion.0.state();
            // A `both` would count as run once its parts were dropped, not
            // once they had run: only plain callbacks are chained.
            debug_assert!(!matches!(state.callback, Some(Pending::Both(..))));
            state.link = Some(link.clone());
        }
        if let Some(previous) = self.last.replace(link) {
            let mut previous = lock(&previous.state);
            if !previous.ran {
                previous.next = Some(completion.0.clone());
            }
        }
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

    /// A completion whose holders have all let go but whose callback is
    /// still running (on another thread) holds up one pushed meanwhile:
    /// its reference count is already zero then, so the chain must not
    /// read "has run" from the count.
    #[test]
    fn in_order_waits_for_a_callback_still_running() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let first = {
            let log = log.clone();
            Completion::new(move || {
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                log.lock().unwrap().push(0);
            })
        };
        let mut order = InOrder::default();
        order.push(&first);
        let runner = std::thread::spawn(move || drop(first));
        started_rx.recv().unwrap();
        let second = recording(&log, 1);
        order.push(&second);
        drop(second);
        assert!(
            log.lock().unwrap().is_empty(),
            "the second ran before the first finished"
        );
        go_tx.send(()).unwrap();
        runner.join().unwrap();
        assert_eq!(*log.lock().unwrap(), [0, 1]);
    }

    /// Abandoning a completion made by `both` abandons its two parts: after
    /// work cut short neither the packet sent later nor the publisher's
    /// acknowledgement goes out.
    #[test]
    fn abandoning_both_abandons_its_parts() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let both = Completion::both(Some(recording(&log, 0)), Some(recording(&log, 1))).unwrap();
        both.abandon();
        drop(both);
        assert!(log.lock().unwrap().is_empty());
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
